"""`ivr serve fastagi` as it runs in production: its own process, on uvloop, stopped by
SIGTERM after the calls in progress finish."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import signal
import sys
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.bank.seed import DemoCustomer
from ivr.channels.asterisk.fastagi import CALL_LOGGER
from ivr.channels.asterisk.serve import CallLines, _LogFormat
from tests.asterisk.conftest import ROOT
from tests.asterisk.peer import AsteriskPeer, HangUp, Press
from tests.asterisk.test_fastagi import CALLER
from tests.twilio.conftest import free_port


async def listening(port: int) -> None:
    """Wait until the server process accepts connections on `port`."""
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}")


async def test_the_server_process_serves_calls_and_drains_on_sigterm(
        engine: AsyncEngine, demo: dict[str, DemoCustomer], prompt_folder: Path) -> None:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "IVR_LOOKUP_KEY": "test-lookup-key", "IVR_PIN_HASH_COST": "10"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ivr.cli", "serve", "fastagi", "--port", str(port),
        "--prompts", str(prompt_folder), "--drain", "10", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        await listening(port)
        peer = AsteriskPeer("127.0.0.1", port, time_scale=0.01)
        record = await peer.call("hotline", caller=CALLER, actions=[Press("1"), HangUp(on="main_menu")])
        assert record.closed_by_server and record.played[0].endswith("/zh-CN/welcome")
        # A call in progress when SIGTERM comes is let finish.
        lingering = asyncio.create_task(peer.call("hotline", caller=CALLER,
                                                  actions=[HangUp(on="main_menu", after=2)]))
        await asyncio.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        finished = await asyncio.wait_for(lingering, 10)
        assert finished.hung_up_by_caller and finished.closed_by_server
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.stderr is not None
    log = (await process.stderr.read()).decode()
    assert "stopping: no new calls" in log and "Traceback" not in log
    # One line a call, in the log's format, the caller's number masked.
    calls = [line for line in log.splitlines() if ": call agi-" in line]
    assert len(calls) == 2, log
    for line in calls:
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO ivr\.fastagi: call agi-\S+ "
                            r"from \+86138\*{4}0099 on \S+: flow hotline, caller_hangup", line), line
    assert CALLER not in log


async def test_twilio_is_served_beside_fastagi(engine: AsyncEngine, demo: dict[str, DemoCustomer],
                                                prompt_folder: Path) -> None:
    import httpx

    port, web = free_port(), free_port()
    env = {**os.environ, "DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "IVR_LOOKUP_KEY": "test-lookup-key", "TWILIO_AUTH_TOKEN": "test-token"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ivr.cli", "serve", "fastagi", "--port", str(port),
        "--twilio-port", str(web), "--prompts", str(prompt_folder), cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(200):
                try:
                    health = await http.get(f"http://127.0.0.1:{web}/healthz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            assert health.status_code == 200
            await listening(port)  # the FastAGI port opens just after the webhooks' one
            unsigned = await http.post(f"http://127.0.0.1:{web}/twilio/voice", data={"CallSid": "CA1"})
            assert unsigned.status_code == 403
        record = await AsteriskPeer("127.0.0.1", port, time_scale=0.01).call(
            "hotline", caller=CALLER, actions=[HangUp(on="welcome")])
        assert record.closed_by_server
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_the_server_log_lines_read_as_the_standard_format_does() -> None:
    """The server's formatter makes the time's text once a second; its lines must still be
    what logging's own formatter makes of the same records, across a second's turn."""
    from ivr.channels.asterisk.serve import _LogFormat

    ours, standard = _LogFormat(), logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    start = 1796665558.0
    for offset in (0.001, 0.5, 0.999, 1.0, 1.0004, 61.25, 3600.75):
        record = logging.LogRecord("ivr.fastagi", logging.INFO, __file__, 1, "call %s: %s", ("c1", "hangup"),
                                   None)
        record.created, record.msecs = start + offset, (start + offset) % 1 * 1000
        assert ours.format(record) == standard.format(record)


def _call_lines(monkeypatch: pytest.MonkeyPatch, clock: list[float]) -> tuple[CallLines, io.StringIO]:
    """A `CallLines` as `server_logging` makes it, writing to a string, the only handler."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_LogFormat())
    monkeypatch.setattr(logging.root, "handlers", [handler])
    monkeypatch.setattr(logging.root, "level", logging.INFO)
    logger = logging.getLogger(CALL_LOGGER)
    logger.manager._clear_cache()
    return CallLines(handler, logger, clock=lambda: clock[0]), stream


def test_a_call_line_written_directly_is_the_line_logging_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1796665558.0]
    lines, stream = _call_lines(monkeypatch, clock)
    expected = []
    for offset in (0.0004, 0.999, 1.0, 61.25):
        clock[0] = 1796665558.0 + offset
        message = f"call agi-1.{offset} from +86138****0099 on PJSIP/t-1: flow hotline, hangup"
        lines(message)
        record = logging.LogRecord(CALL_LOGGER, logging.INFO, "", 0, "%s", (message,), None)
        record.created, record.msecs = clock[0], int((clock[0] - int(clock[0])) * 1000) + 0.0
        expected.append(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s").format(record))
    assert stream.getvalue() == "".join(line + "\n" for line in expected)


def test_a_call_line_goes_through_logging_once_the_log_is_set_up_otherwise(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Another handler, a filter, a level above INFO, another formatter: `logging` decides,
    as for any line (and no line is written twice or lost)."""
    lines, stream = _call_lines(monkeypatch, [1796665558.0])
    handler = lines.handler
    lines("direct")
    assert stream.getvalue().endswith(" INFO ivr.fastagi: direct\n")

    other = logging.StreamHandler(io.StringIO())
    monkeypatch.setattr(logging.root, "handlers", [handler, other])
    lines("to both")
    assert stream.getvalue().count("to both") == 1 and other.stream.getvalue() == "to both\n"

    monkeypatch.setattr(logging.root, "handlers", [handler])
    handler.addFilter(lambda record: "secret" not in record.getMessage())
    lines("a secret")
    assert "a secret" not in stream.getvalue()
    handler.filters.clear()

    handler.setLevel(logging.WARNING)
    lines("quiet")
    assert "quiet" not in stream.getvalue()
    handler.setLevel(logging.NOTSET)

    monkeypatch.setattr(logging.getLogger("ivr"), "handlers", [other])
    lines("ivr's own handler")
    assert stream.getvalue().count("ivr's own handler") == 1
    assert other.stream.getvalue().endswith("ivr's own handler\n")
    monkeypatch.setattr(logging.getLogger("ivr"), "handlers", [])

    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    lines("formatted otherwise")
    assert stream.getvalue().endswith("\nINFO formatted otherwise\n")

    stream.close()  # a broken stream: logging reports it its own way, the server goes on
    monkeypatch.setattr(logging, "raiseExceptions", False)
    handler.setFormatter(lines._format)
    lines("nowhere to go")
