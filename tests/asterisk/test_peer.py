"""The Asterisk stand-in itself, against the recorded transcripts: a small scripted
server sends commands one at a time and the answers must be Asterisk 22's."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.asterisk.conftest import write_tone
from tests.asterisk.peer import AsteriskPeer, CallRecord, HangUp, Press, header_bytes


@pytest.fixture(scope="module")
def sounds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sounds")
    write_tone(folder / "beep.wav", 3404 / 8000)
    write_tone(folder / "demo-thanks.wav", 44140 / 8000)
    return folder


async def script(commands: list[bytes], sounds: Path, actions: list[Press | HangUp] | None = None,
                 together: bool = False, **options: object) -> tuple[list[bytes], CallRecord]:
    """Send `commands` one by one (or all in one write), collect the answers, then close."""
    answers: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.readline() != b"\n":
            pass
        if together:
            writer.write(b"".join(commands))
            answers.append(await reader.readline())
            await asyncio.sleep(0.1)
        else:
            for command in commands:
                writer.write(command)
                line = await reader.readline()
                while line == b"HANGUP\n" or (line[:4] == b"520-"):
                    answers.append(line)
                    line = await reader.readline()
                    while line[:4] not in (b"520 ", b"200 ", b"510 ", b"511 ") and line != b"HANGUP\n":
                        line = await reader.readline()
                answers.append(line)
                await asyncio.sleep(0.02)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    peer = AsteriskPeer("127.0.0.1", port, time_scale=0.01, sounds=sounds, **options)  # type: ignore[arg-type]
    record = await peer.call("hotline", actions=actions or [], timeout=10)
    server.close()
    return answers, record


def test_the_header_is_asterisk_22s() -> None:
    lines = header_bytes("hotline", args=("first", "two words")).split(b"\n")
    assert lines[:3] == [b"agi_network: yes", b"agi_network_script: hotline",
                         b"agi_request: agi://127.0.0.1:4573/hotline"]
    assert b"agi_accountcode: " in lines and b"agi_dnid: unknown" in lines
    assert lines[22:] == [b"agi_arg_1: first", b"agi_arg_2: two words", b"", b""]


async def test_stream_file_and_get_data(sounds: Path) -> None:
    answers, record = await script([b'STREAM FILE beep ""\n', b"STREAM FILE nosuchfile \"\"\n",
                                    b"GET DATA beep 3000 4\n", b"GET DATA beep 3000 4\n",
                                    b"GET DATA beep 3000 4\n"], sounds,
                                   actions=[Press("1234"), Press("56#")])
    assert answers == [b"200 result=0 endpos=3404\n", b"200 result=-1 endpos=0\n",
                       b"200 result=1234\n", b"200 result=56\n", b"200 result= (timeout)\n"]
    assert record.agistatus == "FAILURE" and record.failures == ["nosuchfile"]


async def test_an_escape_digit_comes_back_as_its_code(sounds: Path) -> None:
    answers, _ = await script([b'STREAM FILE demo-thanks "0123456789*#"\n', b"WAIT FOR DIGIT 3000\n"],
                              sounds, actions=[Press("5", on="demo-thanks", after=1.5)])
    code, _, endpos = answers[0].decode().partition(" endpos=")
    assert code == "200 result=53" and int(endpos) % 160 == 0 and 0 < int(endpos) < 44140
    assert answers[1] == b"200 result=0\n"


async def test_keys_between_commands_and_during_a_deaf_prompt_are_lost(sounds: Path) -> None:
    answers, record = await script([b'STREAM FILE demo-thanks ""\n', b"GET DATA beep 1000 4\n"], sounds,
                                   actions=[Press("8", on="demo-thanks", after=1)])
    assert answers == [b"200 result=0 endpos=44140\n", b"200 result= (timeout)\n"]
    assert record.dropped == "8"


async def test_read_and_variables(sounds: Path) -> None:
    answers, _ = await script([b'EXEC Read "R,beep&beep,4,,1,3"\n', b"GET VARIABLE R\n",
                               b"GET VARIABLE READSTATUS\n",
                               b'SET VARIABLE FOO "with \\"quotes\\" and spaces"\n', b"GET VARIABLE FOO\n",
                               b"GET VARIABLE NOSUCHVAR\n", b"EXEC NoSuchApp x\n", b"FOO BAR\n",
                               b"NOOP\r\n", b"GET DATA\n"], sounds, actions=[Press("42")])
    assert answers == [b"200 result=0\n", b"200 result=1 (42)\n", b"200 result=1 (TIMEOUT)\n",
                       b"200 result=1\n", b'200 result=1 (with "quotes" and spaces)\n', b"200 result=0\n",
                       b"200 result=-2\n", b"510 Invalid or unknown command\n",
                       b"510 Invalid or unknown command\n",
                       b"520 Invalid command syntax.  Proper usage not available.\n"]


async def test_the_multi_line_520(sounds: Path) -> None:
    answers, _ = await script([b"WAIT FOR DIGIT\n"], sounds, xml_docs=True)
    assert answers[0].startswith(b"520-Invalid command syntax.  Proper usage follows:")
    assert answers[-1] == b"520 End of proper usage.\n"


async def test_a_hang_up_during_get_data(sounds: Path) -> None:
    answers, record = await script([b"GET DATA demo-thanks 10000 4\n", b"NOOP\n",
                                    b'STREAM FILE beep ""\n', b"CHANNEL STATUS\n"], sounds,
                                   actions=[HangUp(on="demo-thanks", after=1)])
    assert answers[0] == b"200 result=-1\n"
    assert b"HANGUP\n" in answers
    assert answers[-3:] == [b"200 result=0\n",
                            b"511 Command Not Permitted on a dead channel or intercept routine\n",
                            b"511 Command Not Permitted on a dead channel or intercept routine\n"]
    assert record.agistatus == "HANGUP" and record.closed_by_server


async def test_pipelined_commands_are_flagged_and_stall(sounds: Path) -> None:
    answers, record = await script([b"NOOP\n", b"GET VARIABLE FOO\n"], sounds, together=True)
    assert answers == [b"200 result=0\n"] and record.pipelined
