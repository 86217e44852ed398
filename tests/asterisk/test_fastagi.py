"""The hotline through the FastAGI server, with a stand-in for Asterisk on the other end
of a real socket: the same calls as the console, callers who type ahead, and every
fault DESIGN.md lists for panoramisk and a real Asterisk."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.bank.seed import DemoCustomer, seed
from ivr.bank.service import Bank
from ivr.channels.asterisk.fastagi import FastAgiServer
from ivr.channels.console import play_call_async
from ivr.clock import FixedClock
from ivr.config import Settings
from ivr.engine.interpreter import Interpreter
from ivr.engine.services import Services
from ivr.engine.state import CallState
from ivr.engine.turn import Event, Transfer, Turn
from ivr.flow.loader import load_flows
from ivr.speech.catalog import Catalog
from ivr.speech.say import compose
from ivr.switch.ledger import LedgerSwitch
from tests.asterisk.conftest import NOON, ROOT, fastagi
from tests.asterisk.peer import DEAD, AsteriskPeer, HangUp, Press, header_bytes
from tests.bank.test_hotline import bank_snapshot

CALLER = "13800000099"  # not a customer's phone: the caller is asked for the language

CALLS = [
    # card, PIN, balance, then a transfer of 100.50 to payee 1, confirmed
    lambda c: ["1", "1", "1", f"{c.card}#", c.pin, "1", "2", "1", "100*5#", "1", "2"],
    # English; resident ID; wrong PIN three times: locked
    lambda c: ["2", "1", "2", f"{c.resident_id}#", "000000", "111111", "222222"],
    # report a card lost, no PIN needed
    lambda c: ["1", "2", f"{c.card}#", "1", "2"],
    # nothing pressed at the menus: to an agent
    lambda c: [],
]


def customer_for(script: int, demo: dict[str, DemoCustomer]) -> DemoCustomer:
    return demo["C0001"] if script != 1 else demo["C0003"]


class Recording(Interpreter):
    """The console's interpreter, noting the audio of every turn (prompt ids, and a
    template prompt's pieces and composed words)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.prompts: list[str] = []
        self.last: Turn | None = None

    async def advance_async(self, state: CallState, event: Event | None = None) -> Turn:
        turn = await super().advance_async(state, event)
        self.prompts.extend(part for segment in turn.media for part in segment.audio)
        self.last = turn
        return turn


async def console_call(engine: AsyncEngine, settings: Settings, prompts: Path,
                       keys: list[str]) -> tuple[Recording, list[object]]:
    catalog = Catalog.load(prompts)
    clock = FixedClock(NOON)
    ledger = LedgerSwitch(engine, settings, clock)
    interpreter = Recording(load_flows(ROOT / "flows" / "hotline.yaml", catalog), catalog,
                            Services(Bank(engine, settings, clock), ledger))
    await play_call_async(interpreter, iter([*keys, "", "", "", ""]) if not keys else iter(keys),
                          caller=f"+86{CALLER}")
    ledger.close()
    return interpreter, await bank_snapshot(engine)


def names(played: list[str]) -> list[str]:
    """Audio ids: what follows build/<language>/ in each path played."""
    return [path.split("/build/", 1)[-1].split("/", 1)[-1] for path in played]


@pytest.mark.parametrize("script", range(len(CALLS)))
async def test_the_same_calls_as_on_the_console(
        script: int, engine: AsyncEngine, settings: Settings, demo: dict[str, DemoCustomer],
        prompt_folder: Path) -> None:
    customer = customer_for(script, demo)
    keys = CALLS[script](customer)
    console, console_bank = await console_call(engine, settings, prompt_folder, keys)

    await seed(engine, settings, reset=True)
    async with fastagi(engine, settings, prompt_folder) as server:
        # Keys a wait does not take (the `#` after an 18-character ID in script 1) reach
        # the next prompt 0.35 s later, as they do the console's next wait: the scale
        # keeps that gap (35 ms) well above the server's turn-around on a busy machine.
        peer = AsteriskPeer("127.0.0.1", server.port, time_scale=0.1 if script == 1 else 0.05)
        record = await peer.call("hotline", caller=CALLER, actions=[Press(k) for k in keys])
    assert names(record.played) == console.prompts
    if script == 0:
        # The balance is heard as words played from files, not rendered during the call.
        played = names(record.played)
        at = played.index("balance_is/1") + 1
        words = compose("amount", "18518.50", "zh-CN").parts
        assert played[at:at + len(words)] == [f"_say/{word}" for word in words]
    assert await bank_snapshot(engine) == console_bank
    assert record.closed_by_server and not record.pipelined and not record.dropped
    end = console.last
    assert end is not None
    if isinstance(end.wait, Transfer):
        # The dialplan goes on to the queue.
        assert record.agistatus == "SUCCESS"
        assert record.variables["IVR_RESULT"] == "transfer"
        assert record.variables["IVR_QUEUE"] == end.wait.queue
    else:
        # The server hung up the channel itself: only the h extension runs.
        assert record.agistatus == "HANGUP" and not record.hung_up_by_caller
        assert record.variables["IVR_RESULT"] == "hangup"
    # Nothing the caller keyed is in a channel variable or a command.
    for secret in (customer.card, customer.resident_id, customer.pin):
        assert not any(secret in value for value in record.variables.values())
        assert not any(secret in line for line in record.commands)


async def test_a_caller_who_types_ahead_gets_what_one_who_waits_gets(
        engine: AsyncEngine, settings: Settings, demo: dict[str, DemoCustomer],
        prompt_folder: Path) -> None:
    zhang = demo["C0001"]
    waiting = [Press(k) for k in CALLS[0](zhang)]
    # Keys pressed half a second into the prompts: the card number typed straight after
    # the choice that asks for it, over the next prompt; the next menu choice pressed
    # during the balance, before the menu is even read out.
    hurried = [Press("1", on="choose_language", after=0.5), Press("1", on="main_menu", after=0.5),
               Press(f"1{zhang.card}#", on="identify_how", after=0.5),
               Press(zhang.pin, on="enter_pin", after=0.5), Press("1", on="account_menu", after=0.5),
               Press("2", on="balance_is/1", after=0.5), Press("1", on="enter_payee_number", after=0.5),
               Press("100*5#", on="enter_amount", after=0.5),
               Press("1", on="confirm_transfer/1", after=0.5),
               Press("2", on="anything_else", after=0.5)]
    outcomes = []
    for actions in (waiting, hurried):
        await seed(engine, settings, reset=True)
        async with fastagi(engine, settings, prompt_folder) as server:
            peer = AsteriskPeer("127.0.0.1", server.port, time_scale=0.06)
            record = await peer.call("hotline", caller=CALLER, actions=actions)
        assert not record.dropped, "a key was lost between two commands"
        outcomes.append((record.variables.get("IVR_RESULT"), await bank_snapshot(engine)))
        interrupted = [data for _, way, data in record.transcript
                       if way == "<-" and re.match(rb"200 result=(4[89]|5[0-7]|35|42) endpos=", data)]
        if actions is hurried:
            # The caller's keys cut the prompts short, and were kept.
            assert len(interrupted) >= 8
        else:
            assert interrupted == []
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == "hangup"


async def test_transfer_hands_the_agent_screen_data_and_no_secrets(
        server: FastAgiServer, demo: dict[str, DemoCustomer]) -> None:
    zhang = demo["C0001"]
    # card, PIN, then 0 for an agent at the account menu (at a twentieth of real time:
    # a hundredth left the PIN's digit timeouts shorter than a busy machine's delays)
    record = await AsteriskPeer("127.0.0.1", server.port, time_scale=0.05).call(
        "hotline", caller=CALLER, actions=[Press("1"), Press("1"), Press("1"),
                                           Press(f"{zhang.card}#"), Press(zhang.pin), Press("0")])
    variables = record.variables
    assert variables["IVR_RESULT"] == "transfer"
    assert variables["IVR_AUTH"] == "pin"
    assert variables["IVR_CUSTOMER"].isdigit()
    assert variables["IVR_NODE"].startswith("hotline:")
    assert variables["IVR_LANGUAGE"] == "zh-CN"
    assert all(zhang.card not in v and zhang.pin not in v for v in variables.values())


async def test_language_comes_from_the_dialplan_or_the_channel(server: FastAgiServer) -> None:
    english = await AsteriskPeer("127.0.0.1", server.port, time_scale=0.01).call(
        "hotline", caller=CALLER, args=("language=en-US",), actions=[HangUp(on="welcome")])
    assert "/en-US/" in english.played[0]
    by_channel = await AsteriskPeer("127.0.0.1", server.port, time_scale=0.01, ).call(
        "hotline", caller=CALLER, language="en_US", actions=[HangUp(on="welcome")])
    assert "/en-US/" in by_channel.played[0]
    default = await AsteriskPeer("127.0.0.1", server.port, time_scale=0.01).call(
        "hotline", caller=CALLER, language="en", actions=[HangUp(on="welcome")])
    assert "/zh-CN/" in default.played[0]


async def test_an_unknown_script_gets_the_default_flow(server: FastAgiServer) -> None:
    record = await AsteriskPeer("127.0.0.1", server.port, time_scale=0.01).call(
        "nosuchflow", caller=CALLER, actions=[HangUp(on="welcome")])
    assert names(record.played)[:1] == ["welcome"]


# --- hang-ups: the caller leaves, in every way Asterisk tells it ----------------------------


@pytest.mark.parametrize("variant", ["default", "sighup_off", "exit_on_hangup"])
@pytest.mark.parametrize("when", ["welcome", None])  # during a prompt; while waiting for keys
async def test_the_caller_hangs_up(variant: str, when: str | None, server: FastAgiServer,
                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    peer = AsteriskPeer("127.0.0.1", server.port, time_scale=0.01,
                        sighup=variant != "sighup_off", exit_on_hangup=variant == "exit_on_hangup")
    record = await peer.call("hotline", caller=CALLER, actions=[HangUp(on=when, after=0.2)])
    assert record.hung_up_by_caller
    assert record.agistatus == "HANGUP"
    assert "IVR_RESULT" not in record.variables  # the dialplan runs only the h extension
    if variant != "exit_on_hangup":
        # Asterisk keeps the channel until the server closes the socket.
        assert record.closed_by_server and not record.timed_out
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    await wait_until_idle(server)


async def wait_until_idle(server: FastAgiServer) -> None:
    for _ in range(200):
        if not server.calls:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(server.calls)} call(s) still open")


# --- faults: the call ends cleanly and the server serves the others -------------------------


async def a_normal_call(server: FastAgiServer) -> None:
    record = await AsteriskPeer("127.0.0.1", server.port, time_scale=0.01).call(
        "hotline", caller=CALLER, actions=[Press("1"), HangUp(on="main_menu")])
    assert record.hung_up_by_caller and record.closed_by_server


async def raw(server: FastAgiServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def test_a_half_sent_header_does_not_stop_the_server(
        engine: AsyncEngine, settings: Settings, demo: dict[str, DemoCustomer],
        prompt_folder: Path) -> None:
    async with fastagi(engine, settings, prompt_folder, header_timeout=0.5) as server:
        whole = header_bytes("hotline", caller=CALLER)
        stalled_reader, stalled = await raw(server)
        stalled.write(whole[:120])  # and then nothing
        _gone_reader, gone = await raw(server)
        gone.write(whole[:200])
        gone.close()  # hangs up half-way through the header
        await a_normal_call(server)  # served meanwhile
        # The stalled one is closed when its header is late.
        assert await asyncio.wait_for(stalled_reader.read(), 3) == b""
        await wait_until_idle(server)


async def test_deadlines_are_checked_only_while_something_waits(
        engine: AsyncEngine, settings: Settings, demo: dict[str, DemoCustomer],
        prompt_folder: Path) -> None:
    async with fastagi(engine, settings, prompt_folder, header_timeout=0.4,
                       command_timeout=0.4) as server:
        assert server.sweep_at == float("inf")  # nothing to check: no wake-ups at all
        reader, writer = await raw(server)
        writer.write(header_bytes("hotline", caller=CALLER))
        await reader.readline()  # a prompt is out: its deadline is watched
        assert server.sweep_at < float("inf")
        writer.close()
        await wait_until_idle(server)
        await a_normal_call(server)
        # Once the last deadline has passed with nobody waiting, the server stops checking.
        for _ in range(100):
            if server.sweep_at == float("inf"):
                break
            await asyncio.sleep(0.05)
        assert server.sweep_at == float("inf")


async def test_non_utf8_bytes_in_the_header_are_kept_not_fatal(server: FastAgiServer) -> None:
    header = header_bytes("hotline", caller=CALLER, caller_name="\ufffd").replace(
        "\ufffd".encode(), b"\xff\xfe")
    record = await AsteriskPeer("127.0.0.1", server.port, time_scale=0.01).call(
        "hotline", header=header, actions=[HangUp(on="choose_language")])
    assert names(record.played)[:2] == ["welcome", "choose_language"]


async def test_a_disconnect_mid_call_ends_that_call_only(server: FastAgiServer,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    reader, writer = await raw(server)
    writer.write(header_bytes("hotline", caller=CALLER))
    first = await reader.readline()
    assert first.startswith(b"STREAM FILE ")
    writer.close()  # gone without a word
    await a_normal_call(server)
    await wait_until_idle(server)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_garbled_reply_closes_that_call_only(server: FastAgiServer) -> None:
    reader, writer = await raw(server)
    writer.write(header_bytes("hotline", caller=CALLER))
    await reader.readline()
    writer.write(b"this is not AGI\n")
    assert await asyncio.wait_for(reader.read(), 3) == b""  # closed: the dialplan takes over
    await a_normal_call(server)


async def test_a_multi_line_520_is_read_whole(server: FastAgiServer) -> None:
    reader, writer = await raw(server)
    writer.write(header_bytes("hotline", caller=CALLER))
    first = await reader.readline()
    assert first.startswith(b"STREAM FILE ")
    # As a build with XML documentation answers, the usage lines in a later segment.
    writer.write(b"520-Invalid command syntax.  Proper usage follows:\n")
    await asyncio.sleep(0.04)
    writer.write(b"Send the given file, allowing playback to be interrupted by the given digits.\n"
                 b"    <value>SUCCESS</value>\n520 End of proper usage.\n")
    # The server asks whether the channel is still up (the prompt failed), in step.
    assert await reader.readline() == b"CHANNEL STATUS\n"
    writer.write(b"200 result=6\n")
    assert (await reader.readline()).startswith(b"STREAM FILE ")  # the next prompt
    writer.close()


async def test_an_unsolicited_hangup_is_not_taken_as_an_answer(server: FastAgiServer) -> None:
    reader, writer = await raw(server)
    writer.write(header_bytes("hotline", caller=CALLER))
    await reader.readline()
    # The caller hangs up while the prompt plays: the command's failure, then HANGUP
    # 40 ms later, in a segment of its own.
    writer.write(b"200 result=-1 endpos=8160\n")
    # The server asks whether the line is up (a missing file also gives -1) ...
    assert await reader.readline() == b"CHANNEL STATUS\n"
    writer.write(b"HANGUP\n")  # ... and the news comes before the answer
    await asyncio.sleep(0.04)
    writer.write(DEAD)
    # No further media: the server ends the call and closes the socket.
    rest = await asyncio.wait_for(reader.read(), 3)
    assert rest == b""
    await wait_until_idle(server)


async def test_a_command_that_gets_no_answer_times_out(
        engine: AsyncEngine, settings: Settings, demo: dict[str, DemoCustomer],
        prompt_folder: Path) -> None:
    async with fastagi(engine, settings, prompt_folder, command_timeout=0.3) as server:
        reader, writer = await raw(server)
        writer.write(header_bytes("hotline", caller=CALLER))
        await reader.readline()
        writer.write(b"200 result=-1 endpos=0\n")  # a failed prompt: the server probes the line
        assert await reader.readline() == b"CHANNEL STATUS\n"
        # ... and gets no answer: closed after the command timeout.
        assert await asyncio.wait_for(reader.read(), 3) == b""
        await a_normal_call(server)


async def test_a_failing_handler_hands_the_call_back_and_the_server_goes_on(
        server: FastAgiServer, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    hotline = server.routes["hotline"]
    calls = {"n": 0}

    def a_bug_in_the_second_turn() -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("a bug")

    class Buggy(Interpreter):
        # Turns that need no bank run inside the exchange, through advance.
        def advance(self, state: CallState, event: Event | None = None) -> Turn:
            a_bug_in_the_second_turn()
            return super().advance(state, event)

        async def advance_async(self, state: CallState, event: Event | None = None) -> Turn:
            a_bug_in_the_second_turn()
            return await super().advance_async(state, event)

    routes = cast(dict[str, Interpreter], server.routes)
    monkeypatch.setitem(routes, "hotline", Buggy(hotline.flows, hotline.catalog, hotline.services))
    record = await AsteriskPeer("127.0.0.1", server.port, time_scale=0.01).call(
        "hotline", caller=CALLER, actions=[Press("1")])
    assert calls["n"] >= 2
    assert record.closed_by_server
    assert record.agistatus == "SUCCESS" and not record.variables.get("IVR_RESULT")  # to agents
    assert any("a bug" in (r.exc_text or "") or r.exc_info for r in caplog.records)
    monkeypatch.setitem(routes, "hotline", hotline)
    await a_normal_call(server)


async def test_calls_beyond_the_limit_go_back_to_the_dialplan_at_once(
        engine: AsyncEngine, settings: Settings, demo: dict[str, DemoCustomer],
        prompt_folder: Path) -> None:
    async with fastagi(engine, settings, prompt_folder, max_calls=1) as server:
        peer = AsteriskPeer("127.0.0.1", server.port, time_scale=0.01)
        first = asyncio.create_task(peer.call("hotline", caller=CALLER,
                                              actions=[HangUp(on="main_menu")]))
        while not server.calls:
            await asyncio.sleep(0.005)
        second = await peer.call("hotline", caller=CALLER)
        assert second.closed_by_server and second.commands == []
        assert second.agistatus == "SUCCESS" and not second.variables.get("IVR_RESULT")
        assert (await first).hung_up_by_caller


async def test_shutdown_lets_calls_finish_then_cuts_the_rest(
        engine: AsyncEngine, settings: Settings, demo: dict[str, DemoCustomer],
        prompt_folder: Path) -> None:
    async with fastagi(engine, settings, prompt_folder) as server:
        peer = AsteriskPeer("127.0.0.1", server.port, time_scale=0.01)
        quick = asyncio.create_task(peer.call("hotline", caller=CALLER,
                                              actions=[HangUp(on="choose_language", after=0.5)]))
        # In real time: its first prompts alone outlast the drain.
        slow = asyncio.create_task(AsteriskPeer("127.0.0.1", server.port, time_scale=1.0).call(
            "hotline", caller=CALLER))
        while len(server.calls) < 2:
            await asyncio.sleep(0.005)
        cut = await server.drain(0.3)
        assert cut == 1
        assert (await quick).hung_up_by_caller
        lingering = await slow
        assert lingering.closed_by_server and not lingering.variables.get("IVR_RESULT")
        # No new calls once draining.
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", server.port)
