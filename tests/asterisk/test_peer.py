"""The Asterisk stand-in itself, against the recorded transcripts
(/work/shared/asterisk-agi-transcripts.md): a tiny scripted FastAGI server sends
commands one at a time, and the answers, their timing and the call's outcome must be
what Asterisk 22 gave."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import wave
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.asterisk.peer import (
    DEAD,
    UNKNOWN,
    USAGE,
    Action,
    AsteriskPeer,
    CallRecord,
    HangUp,
    Press,
    app_args,
    header_bytes,
    parse_header,
    split_args,
)

#: real seconds per Asterisk second: a 5 s prompt takes 50 ms
SCALE = 0.01
#: a wait for something that must not come, in real seconds
QUIET = 0.15
BEEP, THANKS, CONGRATS = 3404, 44140, 242400
HEADER_KEYS = [
    "agi_network", "agi_network_script", "agi_request", "agi_channel", "agi_language", "agi_type",
    "agi_uniqueid", "agi_version", "agi_callerid", "agi_calleridname", "agi_callingpres",
    "agi_callingani2", "agi_callington", "agi_callingtns", "agi_dnid", "agi_rdnis", "agi_context",
    "agi_extension", "agi_priority", "agi_enhanced", "agi_accountcode", "agi_threadid",
]

T = TypeVar("T")


def write_wav(path: Path, frames: int, rate: int = 8000, width: int = 2, channels: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(b"\0" * (frames * width * channels))


@pytest.fixture(scope="module")
def sounds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sounds")
    write_wav(folder / "beep.wav", BEEP)
    write_wav(folder / "demo-thanks.wav", THANKS)
    write_wav(folder / "demo-congrats.wav", CONGRATS)
    write_wav(folder / "wideband.wav", 16000, rate=16000)
    return folder


class Agi:
    """The server's end of one call, for a test to drive."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.loop = asyncio.get_running_loop()
        self.start = self.loop.time()
        self.header: list[bytes] = []

    def now(self) -> float:
        """Asterisk seconds since the connection came."""
        return (self.loop.time() - self.start) / SCALE

    async def read_header(self) -> None:
        while True:
            line = await self.reader.readline()
            self.header.append(line)
            if line in (b"\n", b""):
                return

    def send(self, raw: bytes) -> None:
        self.writer.write(raw)

    async def line(self, within: float = 2.0) -> bytes:
        """The next line (b"" at EOF); TimeoutError if none comes `within` real seconds."""
        return await asyncio.wait_for(self.reader.readline(), within)

    async def nothing(self, within: float = QUIET) -> bool:
        """True if nothing at all arrives (not even EOF) for `within` real seconds."""
        try:
            await asyncio.wait_for(self.reader.read(1), within)
        except TimeoutError:
            return True
        return False

    async def ask(self, command: bytes, within: float = 2.0) -> bytes:
        """Send one command and return its whole reply (a 520- block joined)."""
        self.send(command)
        reply = await self.line(within)
        if reply.startswith(b"520-"):
            while True:
                more = await self.line(within)
                reply += more
                if re.match(rb"\d{3} ", more) or not more:
                    break
        return reply

    async def timed(self, command: bytes, within: float = 2.0) -> tuple[bytes, float]:
        """The reply, and how many Asterisk seconds it took."""
        sent = self.now()
        reply = await self.ask(command, within)
        return reply, self.now() - sent

    async def sleep(self, seconds: float) -> None:
        """Idle for `seconds` Asterisk seconds."""
        await asyncio.sleep(seconds * SCALE)


async def converse(talk: Callable[[Agi], Awaitable[T]], sounds: Path, actions: Sequence[Action] = (),
                   *, timeout: float = 10.0, call: dict[str, Any] | None = None,
                   **options: Any) -> tuple[T, CallRecord]:
    """One call from the peer to a scripted server running `talk`; the server closes the
    connection when `talk` returns. Returns what `talk` returned and the call's record."""
    outcome: asyncio.Future[T] = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        agi = Agi(reader, writer)
        try:
            # a header without its empty line (a fault test) is all there is
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(agi.read_header(), 0.2)
            result = await talk(agi)
        except Exception as error:
            if not outcome.done():
                outcome.set_exception(error)
        else:
            if not outcome.done():
                outcome.set_result(result)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        peer = AsteriskPeer("127.0.0.1", port, time_scale=SCALE, sounds=sounds, **options)
        record = await peer.call("hotline", actions=actions, timeout=timeout, **(call or {}))
    finally:
        server.close()
    return await asyncio.wait_for(outcome, 5), record


#: how late (Asterisk seconds) an answer may leave: the double decides on exact times,
#: but an answer goes when the event loop wakes up, a few ms late on a coarse timer and
#: more on a loaded machine (25 ms here)
LATE = 2.5


def near(value: float, expected: float, slack: float = LATE) -> bool:
    """Never early, and not much late: the lower bound is what tells behaviours apart."""
    return expected - 0.05 <= value <= expected + slack


# --- the header (§1) ----------------------------------------------------------------------


async def test_the_header_is_the_22_lines_of_asterisk_22_then_the_arguments(sounds: Path) -> None:
    async def talk(agi: Agi) -> list[bytes]:
        return agi.header

    header, record = await converse(talk, sounds, call={"args": ("first", "two words", "x,y")})
    fields = [line.decode().rstrip("\n").split(": ", 1) for line in header[:-1]]
    assert [key for key, _ in fields] == [*HEADER_KEYS, "agi_arg_1", "agi_arg_2", "agi_arg_3"]
    values = dict(fields)
    port = int(re.fullmatch(r"agi://127\.0\.0\.1:(\d+)/hotline", values["agi_request"])[1])  # type: ignore[index]
    assert port > 0
    assert re.fullmatch(r"Local/ctl@caller-[0-9a-f]{8};1", values["agi_channel"])
    assert re.fullmatch(r"\d{10}\.\d+", values["agi_uniqueid"])
    assert re.fullmatch(r"\d{15}", values["agi_threadid"])
    assert {key: values[key] for key in HEADER_KEYS if key not in (
        "agi_request", "agi_channel", "agi_uniqueid", "agi_threadid")} == {
        "agi_network": "yes", "agi_network_script": "hotline", "agi_language": "en", "agi_type": "Local",
        "agi_version": "22.10.1", "agi_callerid": "13800138000", "agi_calleridname": "Test Caller",
        "agi_callingpres": "0", "agi_callingani2": "0", "agi_callington": "0", "agi_callingtns": "0",
        "agi_dnid": "unknown", "agi_rdnis": "unknown", "agi_context": "hotline", "agi_extension": "95558",
        "agi_priority": "4", "agi_enhanced": "0.0", "agi_accountcode": ""}
    assert b"agi_accountcode: \n" in header  # one space after the colon even when empty
    assert values["agi_arg_2"] == "two words" and values["agi_arg_3"] == "x,y"
    assert header[-1] == b"\n"
    # sent at once, in one write
    sent = [entry for entry in record.transcript if entry[1] == "<-"][: len(header)]
    assert b"".join(data for _, _, data in sent) == record.header == b"".join(header)
    assert len({at for at, _, _ in sent}) == 1


def test_each_header_names_a_new_channel_and_thread() -> None:
    first, second = parse_header(header_bytes()), parse_header(header_bytes(tech="SIP"))
    assert first["agi_channel"] != second["agi_channel"]
    assert first["agi_threadid"] != second["agi_threadid"]
    assert re.fullmatch(r"SIP/trunk-[0-9a-f]{8}", second["agi_channel"]) and second["agi_type"] == "SIP"
    assert b"agi_arg_" not in header_bytes()


async def test_a_custom_header_is_sent_as_it_is_and_its_bytes_come_back(sounds: Path) -> None:
    header = header_bytes(caller_name=b"\xff\xfe", extension="95559")
    assert b"agi_calleridname: \xff\xfe\n" in header

    async def talk(agi: Agi) -> tuple[list[bytes], bytes]:
        return agi.header, await agi.ask(b"GET VARIABLE CALLERID(name)\n")

    (got, name), record = await converse(talk, sounds, call={"header": header})
    assert b"".join(got) == header and record.header == header
    assert name == b"200 result=1 (\xff\xfe)\n"

    async def half(agi: Agi) -> list[bytes]:
        return agi.header  # EOF came before the empty line

    got, record = await converse(half, sounds, call={"header": header[:120]})
    assert b"".join(got) == header[:120].rsplit(b"\n", 1)[0] + b"\n"  # then a cut line, then nothing
    assert record.closed_by_server and record.commands == []


# --- commands on a live channel (§2) ------------------------------------------------------


async def test_answer_and_stream_file(sounds: Path) -> None:
    async def talk(agi: Agi) -> list[tuple[bytes, float]]:
        return [await agi.timed(b"ANSWER\n"),
                await agi.timed(b'STREAM FILE beep ""\n'),
                await agi.timed(b'STREAM FILE demo-congrats "0123456789*#"\n'),
                await agi.timed(b'STREAM FILE nosuchfile ""\n'),
                await agi.timed(f'STREAM FILE {sounds}/beep ""\n'.encode()),
                await agi.timed(b'STREAM FILE beep "" 3000\n'),
                await agi.timed(b'STREAM FILE wideband ""\n'),
                await agi.timed(b"GET VARIABLE PLAYBACKSTATUS\n")]

    replies, record = await converse(talk, sounds, [Press("5", on="demo-congrats", after=1.5)])
    (answer, quick), (beep, beep_time), (cut, cut_time), (missing, missing_time) = replies[:4]
    assert answer == b"200 result=0\n" and quick < LATE
    assert beep == b"200 result=0 endpos=3404\n" and near(beep_time, BEEP / 8000)
    # '5' ends 1.7 s in: its ASCII code, and where playback was in whole 160-sample frames,
    # the one being played included (13600 samples played: 13760, as recorded)
    assert cut == b"200 result=53 endpos=13760\n" and near(cut_time, 1.7)
    assert missing == b"200 result=-1 endpos=0\n" and missing_time < LATE
    assert replies[4][0] == b"200 result=0 endpos=3404\n"  # an absolute name, without .wav
    assert replies[5][0] == b"200 result=0 endpos=3404\n" and near(replies[5][1], (BEEP - 3000) / 8000)
    assert replies[6][0] == b"200 result=-1 endpos=0\n"  # a 16 kHz file is no file for Asterisk
    assert replies[7][0] == b"200 result=1 (SUCCESS)\n"
    assert [name.rsplit("/", 1)[-1] for name in record.played] == ["beep", "demo-congrats", "beep", "beep"]
    assert record.missing == ["nosuchfile", "wideband"]
    assert record.agistatus == "FAILURE"
    assert record.failures == ['STREAM FILE nosuchfile ""', 'STREAM FILE wideband ""']
    assert not record.dropped and not record.pipelined and record.closed_by_server


async def test_get_data(sounds: Path) -> None:
    async def talk(agi: Agi) -> list[tuple[bytes, float]]:
        return [await agi.timed(b"GET DATA beep 3000 4\n") for _ in range(4)] + [
            await agi.timed(b"GET DATA demo-thanks 3000 4\n"),
            await agi.timed(b"GET DATA beep 1000\n"),
        ]

    replies, record = await converse(talk, sounds, [
        Press("1234"), Press("56#"), Press("78"), Press("12#", on="demo-thanks", after=1.0)])
    prompt = BEEP / 8000
    (full, full_time), (ended, ended_time), (some, some_time), (none, none_time) = replies[:4]
    assert full == b"200 result=1234\n" and near(full_time, prompt + 0.2 + 3 * 0.35)  # at the 4th key
    assert ended == b"200 result=56\n" and near(ended_time, prompt + 0.2 + 2 * 0.35)  # '#' not returned
    # 3 s after the last key: the timeout is also the gap allowed between keys
    assert some == b"200 result=78 (timeout)\n" and near(some_time, prompt + 0.2 + 0.35 + 3.0)
    assert none == b"200 result= (timeout)\n" and near(none_time, prompt + 3.0)
    typed, typed_time = replies[4]
    assert typed == b"200 result=12\n" and near(typed_time, 1.0 + 0.2 + 2 * 0.35)  # over the prompt
    assert replies[5][0] == b"200 result= (timeout)\n" and near(replies[5][1], prompt + 1.0)
    assert not record.dropped and record.agistatus == "SUCCESS"


async def test_get_data_of_a_missing_file_fails_at_once_but_not_the_session(sounds: Path) -> None:
    async def talk(agi: Agi) -> tuple[bytes, float]:
        return await agi.timed(b"GET DATA nosuchfile 3000 4\n")

    (reply, took), record = await converse(talk, sounds)
    assert reply == b"200 result=-1\n" and took < LATE
    assert record.agistatus == "SUCCESS" and record.missing == ["nosuchfile"] and not record.failures


async def test_wait_for_digit_and_get_option(sounds: Path) -> None:
    async def talk(agi: Agi) -> list[tuple[bytes, float]]:
        return [await agi.timed(b"WAIT FOR DIGIT 3000\n"),
                await agi.timed(b'GET OPTION beep "12" 3000\n'),
                await agi.timed(b'GET OPTION beep "12" 3000\n'),
                await agi.timed(b'GET OPTION demo-thanks "12" 3000\n'),
                await agi.timed(b"WAIT FOR DIGIT 3000\n"),
                await agi.timed(b'GET OPTION beep "12" 3000\n'),
                await agi.timed(b"WAIT FOR DIGIT -1\n")]

    replies, record = await converse(talk, sounds, [
        Press("9"), Press("2"), Press("3"),
        Press("5", on="demo-thanks", after=0.3), Press("1", on="", after=0.5),
        Press("7", on="beep", after=25.0)])
    prompt = BEEP / 8000
    assert replies[0][0] == b"200 result=57\n" and near(replies[0][1], 0.2)  # '9' as its ASCII code
    assert replies[1][0] == b"200 result=50 endpos=3404\n" and near(replies[1][1], prompt + 0.2)
    # a key that is not an escape digit ends the wait at once, as if it had timed out
    assert replies[2][0] == b"200 result=0 endpos=3404\n" and near(replies[2][1], prompt + 0.2)
    # during the prompt, '5' (no escape) is lost; '1' stops it 1.2 s in
    assert replies[3][0] == b"200 result=49 endpos=9760\n"
    assert replies[4][0] == b"200 result=0\n" and near(replies[4][1], 3.0)  # no endpos
    assert replies[5][0] == b"200 result=0 endpos=3404\n" and near(replies[5][1], prompt + 3.0)
    assert replies[6][0] == b"200 result=55\n"  # -1 waits for ever: 25 s here
    assert record.dropped == "5"


async def test_variables_quoting_and_the_quick_commands(sounds: Path) -> None:
    commands = [
        (b"noop\n", b"200 result=0\n"),
        (b"NOOP   extra words\n", b"200 result=0\n"),
        (b'VERBOSE "x" 1\n', b"200 result=1\n"),
        (b"GET VARIABLE CALLERID(num)\n", b"200 result=1 (13800138000)\n"),
        (b'SET VARIABLE FOO "bar baz"\n', b"200 result=1\n"),
        (b"GET VARIABLE FOO\n", b"200 result=1 (bar baz)\n"),
        (b"GET VARIABLE NOSUCHVAR\n", b"200 result=0\n"),
        (b'SET VARIABLE FOO "with \\"quotes\\" and spaces"\n', b"200 result=1\n"),
        (b"GET VARIABLE FOO\n", b'200 result=1 (with "quotes" and spaces)\n'),
        (b'GET VARIABLE "FOO"\n', b'200 result=1 (with "quotes" and spaces)\n'),
        (b"EXEC NoSuchApp x\n", b"200 result=-2\n"),
        (b'EXEC Set "A=1,2"\n', b"200 result=0\n"),
        (b"GET VARIABLE A\n", b"200 result=1 (1,2)\n"),
        (b"GET FULL VARIABLE ${CALLERID(name)}\n", b"200 result=1 (Test Caller)\n"),
        (b'GET FULL VARIABLE "${A}|${NOPE}|${CALLERID(num):0:3}"\n', b"200 result=1 (1,2||138)\n"),
        (b"CHANNEL STATUS\n", b"200 result=6\n"),
        (b"SET VARIABLE TIMEOUT(digit) 3\n", b"200 result=1\n"),
        (b"GET VARIABLE TIMEOUT(digit)\n", b"200 result=1 (3.000)\n"),
        (b"GET VARIABLE TIMEOUT(response)\n", b"200 result=1 (10.000)\n"),
        (b"DATABASE PUT ivr last 42\n", b"200 result=1\n"),
        (b"DATABASE GET ivr last\n", b"200 result=1 (42)\n"),
        (b"SET VARIABLE\n", USAGE),
    ]

    async def talk(agi: Agi) -> list[tuple[bytes, float]]:
        return [await agi.timed(command) for command, _ in commands] + [
            await agi.timed(b'SAY DIGITS 1234 ""\n'), await agi.timed(b'SAY NUMBER 12345 ""\n')]

    replies, record = await converse(talk, sounds)
    assert [reply for reply, _ in replies[: len(commands)]] == [want for _, want in commands]
    assert all(took < LATE for _, took in replies[: len(commands)])  # no audio: at once
    assert replies[-2][0] == b"200 result=0\n" and near(replies[-2][1], 3.29)
    assert replies[-1][0] == b"200 result=0\n" and near(replies[-1][1], 5.14)
    assert record.variables == {"FOO": 'with "quotes" and spaces', "A": "1,2", "AGISTATUS": "SUCCESS"}
    assert record.commands[1] == "NOOP   extra words" and record.agistatus == "SUCCESS"


# --- EXEC Read (§2.5) ---------------------------------------------------------------------


async def test_read_over_two_prompts(sounds: Path) -> None:
    read = b'EXEC Read "R,beep&beep,4,,1,3"\n'
    result = b'GET FULL VARIABLE "${R}|${READSTATUS}"\n'

    async def talk(agi: Agi) -> list[tuple[bytes, float]]:
        replies = [await agi.timed(read), await agi.timed(result), await agi.timed(read),
                   await agi.timed(result), await agi.timed(b"EXEC Read R,beep,2\n"),
                   await agi.timed(result)]
        await agi.sleep(1.0)  # the caller's third key comes meanwhile
        return replies

    # 0.5 s after the first beep starts: inside the second one (the first lasts 0.4255 s,
    # then a key has 50 ms)
    replies, record = await converse(talk, sounds, [
        Press("42", on="beep", after=0.3), Press("42#", on="beep", after=0.3), Press("123")])
    assert replies[0][0] == b"200 result=0\n" and near(replies[0][1], 0.3 + 0.2 + 0.35 + 3.0)
    assert replies[1][0] == b"200 result=1 (42|TIMEOUT)\n"  # the keys, but no # nor maximum
    assert replies[2][0] == b"200 result=0\n" and near(replies[2][1], 0.3 + 0.2 + 2 * 0.35)
    assert replies[3][0] == b"200 result=1 (42|OK)\n"
    assert replies[4][0] == b"200 result=0\n" and replies[5][0] == b"200 result=1 (12|OK)\n"
    assert [name for name in record.played] == ["beep"] * 5
    assert record.dropped == "3"  # after the maximum, between commands
    assert record.variables["R"] == "12" and record.variables["READSTATUS"] == "OK"


async def test_read_timeouts(sounds: Path) -> None:
    result = b'GET FULL VARIABLE "${R}|${READSTATUS}"\n'

    async def talk(agi: Agi) -> list[tuple[bytes, float]]:
        return [await agi.timed(b"EXEC Read R,beep&beep,4,,1,3\n"), await agi.timed(result),
                await agi.timed(b"SET VARIABLE TIMEOUT(response) 2\n"),
                await agi.timed(b"EXEC Read R,beep,4\n"), await agi.timed(result),
                await agi.timed(b"EXEC Read R,,4,,2,1.5\n"), await agi.timed(result)]

    # the key ends 0.43 s after the first beep starts: after it (0.4255 s), inside the
    # 50 ms a key is given before the next prompt
    replies, record = await converse(talk, sounds, [Press("4", on="beep", after=0.23)])
    prompt = BEEP / 8000
    # it counts, the second beep is not played, and the wait for more keys is then
    # TIMEOUT(digit) (5 s), not the 3 s given, as ast_app_getdata does
    assert near(replies[0][1], 0.23 + 0.2 + 5.0) and replies[1][0] == b"200 result=1 (4|TIMEOUT)\n"
    # no timeout given: TIMEOUT(response) for the first key
    assert replies[3][0] == b"200 result=0\n" and near(replies[3][1], prompt + 2.0)
    assert replies[4][0] == b"200 result=1 (|TIMEOUT)\n"
    assert record.played == ["beep", "beep"]
    # no prompt, two attempts of 1.5 s each
    assert near(replies[5][1], 3.0) and replies[6][0] == b"200 result=1 (|TIMEOUT)\n"


# --- usage errors and the parser (§2.6, §2.7, §2.8) ---------------------------------------


async def test_unknown_commands_usage_errors_and_line_ends(sounds: Path) -> None:
    async def talk(agi: Agi) -> list[bytes]:
        return [await agi.ask(command) for command in (
            b"FOO BAR\n", b"GET DATA\n", b"STREAM FILE beep\n", b"WAIT FOR DIGIT soon\n",
            b"NOOP\r\n", b"\n", b"GET\n", b"NOOP\n")]

    replies, record = await converse(talk, sounds)
    assert replies == [UNKNOWN, USAGE, USAGE, USAGE, UNKNOWN, UNKNOWN, UNKNOWN, b"200 result=0\n"]
    assert USAGE == b"520 Invalid command syntax.  Proper usage not available.\n"
    assert record.commands[4] == "NOOP\r"
    assert record.agistatus == "SUCCESS"  # 510 and 520 are no failures


async def test_the_multi_line_520_of_a_build_with_xml_docs(sounds: Path) -> None:
    async def talk(agi: Agi) -> list[bytes]:
        return [await agi.ask(b"GET DATA\n"), await agi.ask(b"STREAM FILE beep\n"), await agi.ask(b"NOOP\n")]

    replies, record = await converse(talk, sounds, xml_docs=True)
    for reply in replies[:2]:
        lines = reply.splitlines(keepends=True)
        assert lines[0] == b"520-Invalid command syntax.  Proper usage follows:\n"
        assert lines[-1] == b"520 End of proper usage.\n"
        assert len(lines) >= 3 and not any(re.match(rb"\d{3}[ -]", line) for line in lines[1:-1])
    assert b"    <value>" in replies[1]  # usage lines may be indented and hold markup
    assert replies[2] == b"200 result=0\n"
    # the usage left in a later write than the first line, with the end line
    sent = [(at, data) for at, way, data in record.transcript if way == "<-"]
    first = next(i for i, (_, data) in enumerate(sent) if data.startswith(b"520-"))
    assert sent[first + 1][0] > sent[first][0]
    end = next(i for i, (_, data) in enumerate(sent) if data == b"520 End of proper usage.\n")
    assert sent[end][0] == sent[first + 1][0]


def test_arguments_are_split_as_res_agi_does() -> None:
    assert split_args('STREAM FILE beep ""') == ["STREAM", "FILE", "beep", ""]
    assert split_args('SET VARIABLE FOO "with \\"quotes\\" and spaces"') == [
        "SET", "VARIABLE", "FOO", 'with "quotes" and spaces']
    assert split_args("NOOP   extra\twords") == ["NOOP", "extra", "words"]
    assert split_args('a"b c"d \\ e') == ["ab cd", " e"]
    assert split_args("NOOP\r") == ["NOOP\r"] and split_args("") == []
    assert app_args("R,beep&beep,4,,1,3", 6) == ["R", "beep&beep", "4", "", "1", "3"]
    assert app_args('A="1,2",b(c,d)', 6) == ["A=1,2", "b(c,d)", "", "", "", ""]
    assert app_args("a,b,c,d", 2) == ["a", "b,c,d"]


# --- pipelining (§2.7) --------------------------------------------------------------------


async def test_a_second_command_in_the_same_write_stalls_until_more_bytes_come(sounds: Path) -> None:
    async def talk(agi: Agi) -> list[bytes | bool]:
        await agi.ask(b"SET VARIABLE FOO bar\n")
        agi.send(b"NOOP\nGET VARIABLE FOO\n")
        first = await agi.line()
        stalled = await agi.nothing()
        agi.send(b"FAILURE\n")
        return [first, stalled, await agi.line(), await agi.line(), await agi.line()]

    (first, stalled, late, hangup, eof), record = await converse(talk, sounds)
    assert first == b"200 result=0\n" and stalled
    assert late == b"200 result=1 (bar)\n"  # answered only when more bytes came
    assert hangup == b"HANGUP\n" and eof == b""
    assert record.pipelined and record.agistatus == "FAILURE" and record.failures == ["FAILURE"]
    assert not record.closed_by_server


async def test_a_command_sent_while_another_plays_stops_it_without_an_answer(sounds: Path) -> None:
    async def talk(agi: Agi) -> list[bytes | bool]:
        agi.send(b"GET DATA demo-thanks 3000 4\n")
        await agi.sleep(1.0)
        return [await agi.ask(b"NOOP\n"), await agi.nothing()]

    (reply, quiet), record = await converse(talk, sounds)
    assert reply == b"200 result=0\n" and quiet
    assert record.pipelined and record.played == ["demo-thanks"]

    async def waiting(agi: Agi) -> list[bytes]:
        agi.send(b"WAIT FOR DIGIT 5000\n")
        await agi.sleep(1.0)
        agi.send(b"NOOP\n")
        return [await agi.line(), await agi.line()]

    replies, record = await converse(waiting, sounds)
    assert replies == [b"200 result=1\n", b"200 result=0\n"]  # res_agi's "1: a new command"


# --- the caller hangs up (§3) -------------------------------------------------------------


async def test_a_hang_up_during_get_data_then_a_dead_channel(sounds: Path) -> None:
    async def talk(agi: Agi) -> list[Any]:
        answers: list[Any] = [await agi.ask(b"ANSWER\n"), await agi.timed(b"GET DATA beep 10000 4\n")]
        answered = agi.now()
        answers += [await agi.line(), agi.now() - answered]
        await agi.sleep(0.5)
        for command in (b"NOOP\n", b"GET VARIABLE CALLERID(num)\n", b'STREAM FILE beep ""\n',
                        b"GET DATA beep 1000 1\n", b'SET VARIABLE X "1"\n', b'VERBOSE "after hangup" 1\n',
                        b"EXEC Wait 1\n", b"ANSWER\n", b"FOO BAR\n", b"CHANNEL STATUS\n", b"HANGUP\n",
                        b'SAY DIGITS 12 ""\n', b"EXEC Read R,beep,4\n",
                        b'GET FULL VARIABLE "${R}|${READSTATUS}"\n'):
            answers.append(await agi.timed(command))
        answers.append(await agi.nothing(0.3))  # Asterisk keeps the socket open
        return answers

    answers, record = await converse(talk, sounds, [HangUp(after=1.0)])
    assert answers[0] == b"200 result=0\n"
    assert answers[1][0] == b"200 result=-1\n" and near(answers[1][1], BEEP / 8000 + 1.0)
    assert answers[2] == b"HANGUP\n" and 0.02 <= answers[3] < LATE  # a separate, later write
    replies = [reply for reply, _ in answers[4:-1]]
    assert replies == [b"200 result=0\n", b"200 result=1 (13800138000)\n", DEAD, DEAD, b"200 result=1\n",
                       b"200 result=1\n", b"200 result=0\n", DEAD, UNKNOWN, DEAD, DEAD, DEAD,
                       b"200 result=0\n", b"200 result=1 (|HANGUP)\n"]
    assert near(answers[10][1], 1.0)  # EXEC Wait 1 really waits on a dead channel
    assert answers[-1] is True
    assert record.agistatus == "HANGUP" and record.hung_up_by_caller and not record.hung_up_by_server
    assert record.closed_by_server and record.variables["X"] == "1"
    assert record.transcript[-1] == (record.transcript[-1][0], "<-", b"HANGUP\n")  # the goodbye


async def test_a_hang_up_after_some_keys_loses_them(sounds: Path) -> None:
    async def talk(agi: Agi) -> list[bytes]:
        return [await agi.ask(b"GET DATA beep 10000 4\n"), await agi.line()]

    replies, record = await converse(talk, sounds, [Press("12"), HangUp(on="", after=0.5)])
    assert replies == [b"200 result=-1\n", b"HANGUP\n"]  # no keys, no (timeout)
    assert record.agistatus == "HANGUP"


async def test_a_hang_up_during_stream_file_and_during_read(sounds: Path) -> None:
    async def stream(agi: Agi) -> tuple[bytes, bytes]:
        return await agi.ask(b'STREAM FILE demo-congrats ""\n'), await agi.line()

    (reply, hangup), _ = await converse(stream, sounds, [HangUp(on="demo-congrats", after=1.0)])
    assert reply == b"200 result=-1 endpos=8160\n" and hangup == b"HANGUP\n"  # as recorded

    async def read(agi: Agi) -> list[bytes]:
        return [await agi.ask(b"EXEC Read R,demo-thanks,4\n"), await agi.line(),
                await agi.ask(b'GET FULL VARIABLE "${R}|${READSTATUS}"\n')]

    replies, _ = await converse(read, sounds, [Press("1", on="demo-thanks", after=0.5),
                                               HangUp(on="", after=0.5)])
    assert replies == [b"200 result=0\n", b"HANGUP\n", b"200 result=1 (1|HANGUP)\n"]

    async def option(agi: Agi) -> list[bytes]:
        return [await agi.ask(b'GET OPTION beep "12" 5000\n'), await agi.line()]

    # in GET OPTION's wait, a hang-up reads as 0 (res_agi checks it against the escapes)
    replies, _ = await converse(option, sounds, [HangUp(after=1.0)])
    assert replies == [b"200 result=0 endpos=3404\n", b"HANGUP\n"]


async def test_a_hang_up_between_commands_is_sent_at_once(sounds: Path) -> None:
    async def talk(agi: Agi) -> list[Any]:
        answers: list[Any] = [await agi.ask(b"NOOP\n")]
        sent = agi.now()
        answers += [await agi.ask(b'STREAM FILE beep ""\n'), await agi.line(), agi.now() - sent]
        answers += [await agi.ask(b"NOOP\n"), await agi.ask(b'STREAM FILE beep ""\n'), await agi.nothing()]
        return answers

    answers, record = await converse(talk, sounds, [HangUp(on="beep", after=1.0)])
    assert answers[:3] == [b"200 result=0\n", b"200 result=0 endpos=3404\n", b"HANGUP\n"]
    assert near(answers[3], 1.0)  # 1 s after the beep started, 0.57 s after it ended: at once
    assert answers[4:] == [b"200 result=0\n", DEAD, True]
    assert record.agistatus == "HANGUP" and record.closed_by_server


async def test_agiexitonhangup_closes_after_two_hangup_lines(sounds: Path) -> None:
    async def talk(agi: Agi) -> list[bytes]:
        return [await agi.ask(b"GET DATA beep 10000 4\n"), await agi.line(), await agi.line(),
                await agi.line()]

    replies, record = await converse(talk, sounds, [HangUp(after=1.0)], exit_on_hangup=True)
    assert replies == [b"200 result=-1\n", b"HANGUP\n", b"HANGUP\n", b""]
    assert record.agistatus == "HANGUP" and not record.closed_by_server


async def test_agisighup_no_sends_no_hangup_line(sounds: Path) -> None:
    async def talk(agi: Agi) -> list[bytes | bool]:
        return [await agi.ask(b"GET DATA beep 10000 4\n"), await agi.nothing(),
                await agi.ask(b"NOOP\n"), await agi.ask(b'STREAM FILE beep ""\n')]

    for options in ({"sighup": False}, {"call": {"variables": {"AGISIGHUP": "no"}}}):
        replies, record = await converse(talk, sounds, [HangUp(after=1.0)], **options)
        assert replies == [b"200 result=-1\n", True, b"200 result=0\n", DEAD]
        assert record.agistatus == "HANGUP" and record.closed_by_server
        assert all(data != b"HANGUP\n" for _, _, data in record.transcript)
        if "call" in options:  # the channel variable, as Asterisk reads it
            assert record.variables["AGISIGHUP"] == "no"


# --- the server ends the call (§4) --------------------------------------------------------


async def test_the_server_hangs_up(sounds: Path) -> None:
    async def talk(agi: Agi) -> list[Any]:
        answers: list[Any] = [await agi.ask(b"NOOP\n"), await agi.ask(b"HANGUP\n")]
        answered = agi.now()
        answers += [await agi.line(), agi.now() - answered]
        for command in (b"NOOP\n", b"GET VARIABLE CALLERID(num)\n", b'STREAM FILE beep ""\n', b"HANGUP\n"):
            answers.append(await agi.ask(command))
        answers.append(await agi.nothing())
        return answers

    # the caller would key 20 s in, long after the server has hung up: the key never comes
    answers, record = await converse(talk, sounds, [Press("1", on="", after=20.0)])
    assert answers[:3] == [b"200 result=0\n", b"200 result=1\n", b"HANGUP\n"]
    assert 0.02 <= answers[3] < LATE  # about 45 ms later
    assert answers[4:] == [b"200 result=0\n", b"200 result=1 (13800138000)\n", DEAD, DEAD, True]
    assert record.agistatus == "HANGUP" and record.hung_up_by_server and not record.hung_up_by_caller
    assert record.closed_by_server and record.dropped == ""  # the caller was gone


async def test_agistatus_when_the_server_closes(sounds: Path) -> None:
    async def fine(agi: Agi) -> None:
        for command in (b"FOO BAR\n", b"GET DATA\n", b"EXEC NoSuchApp x\n", b"NOOP\n"):
            await agi.ask(command)

    async def failed(agi: Agi) -> None:
        await agi.ask(b'STREAM FILE nosuchfile ""\n')
        await agi.ask(b"NOOP\n")  # a later success does not clear it

    _, record = await converse(fine, sounds)
    assert record.agistatus == "SUCCESS" and record.closed_by_server and not record.failures
    _, record = await converse(failed, sounds)
    assert record.agistatus == "FAILURE" and record.failures == ['STREAM FILE nosuchfile ""']


async def test_after_a_half_close_the_goodbye_hangup_can_be_read(sounds: Path) -> None:
    async def talk(agi: Agi) -> list[bytes]:
        await agi.ask(b"NOOP\n")
        agi.writer.write_eof()
        return [await agi.line(), await agi.line()]

    replies, record = await converse(talk, sounds)
    assert replies == [b"HANGUP\n", b""]
    assert record.agistatus == "SUCCESS" and record.closed_by_server


# --- keys and timing (§5) -----------------------------------------------------------------


async def test_keys_between_commands_or_during_a_deaf_prompt_are_lost(sounds: Path) -> None:
    async def talk(agi: Agi) -> list[bytes]:
        replies = [await agi.ask(b'STREAM FILE demo-thanks ""\n'), await agi.ask(b"NOOP\n")]
        await agi.sleep(2.0)
        return [*replies, await agi.ask(b"GET DATA beep 3000 4\n")]

    replies, record = await converse(talk, sounds, [Press("8", on="demo-thanks", after=1.0),
                                                    Press("9", on="", after=5.0)])
    assert replies == [b"200 result=0 endpos=44140\n", b"200 result=0\n", b"200 result= (timeout)\n"]
    assert record.dropped == "89"


async def test_senddtmf_pacing(sounds: Path) -> None:
    async def talk(agi: Agi) -> list[tuple[bytes, float]]:
        return [await agi.timed(b"WAIT FOR DIGIT 5000\n"), await agi.timed(b'GET DATA "" 5000 4\n'),
                await agi.timed(b'GET DATA "" 5000 2\n')]

    replies, _ = await converse(talk, sounds, [Press("7"), Press("12#"), Press("1w2")])
    assert replies[0][0] == b"200 result=55\n" and near(replies[0][1], 0.2)
    assert replies[1][0] == b"200 result=12\n" and near(replies[1][1], 0.9)
    assert replies[2][0] == b"200 result=12\n" and near(replies[2][1], 0.2 + 0.5 + 0.35)


# --- many calls, and the safety limit -----------------------------------------------------


async def test_fifty_calls_at_once(sounds: Path) -> None:
    async def talk(agi: Agi) -> bytes:
        name = (await agi.ask(b"GET VARIABLE CALLERID(num)\n"))[14:-2]
        await agi.ask(b"SET VARIABLE WHO " + name + b"\n")
        return await agi.ask(b"GET DATA beep 3000 4\n")

    started = time.monotonic()
    calls = [converse(talk, sounds, [Press(f"{n % 10}#")], call={"caller": f"1380000{n:04d}"})
             for n in range(50)]
    results = await asyncio.gather(*calls)
    assert time.monotonic() - started < 5
    for n, (reply, record) in enumerate(results):
        assert reply == f"200 result={n % 10}\n".encode()
        assert record.variables["WHO"] == f"1380000{n:04d}" and record.agistatus == "SUCCESS"


async def test_a_call_the_server_never_ends_times_out(sounds: Path) -> None:
    async def talk(agi: Agi) -> bytes:
        await agi.ask(b"NOOP\n")
        return await agi.line(5)  # until the peer gives up

    eof, record = await converse(talk, sounds, timeout=0.3)
    assert eof == b"" and record.timed_out and not record.closed_by_server and record.agistatus == ""
