"""`ivr serve fastagi` as it runs in production: its own process, on uvloop, stopped by
SIGTERM after the calls in progress finish."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.bank.seed import DemoCustomer
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
    import logging

    from ivr.channels.asterisk.serve import _LogFormat

    ours, standard = _LogFormat(), logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    start = 1796665558.0
    for offset in (0.001, 0.5, 0.999, 1.0, 1.0004, 61.25, 3600.75):
        record = logging.LogRecord("ivr.fastagi", logging.INFO, __file__, 1, "call %s: %s", ("c1", "hangup"),
                                   None)
        record.created, record.msecs = start + offset, (start + offset) % 1 * 1000
        assert ours.format(record) == standard.format(record)
