"""`ivr agi`: the hotline as a classic AGI process per call, on stdin and stdout.

Asterisk runs the script with the header and replies on its stdin; here the Asterisk
stand-in speaks to a small bridge that starts `ivr agi` for each call and relays the
bytes both ways, unchanged."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.bank.seed import DemoCustomer, seed
from ivr.config import Settings
from tests.asterisk.conftest import ROOT
from tests.asterisk.peer import AsteriskPeer, Press
from tests.asterisk.test_fastagi import CALLER, CALLS, console_call, names
from tests.bank.test_hotline import bank_snapshot


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter | None,
                stdin: asyncio.StreamWriter | None = None) -> None:
    while data := await source.read(65536):
        target = sink if sink is not None else stdin
        assert target is not None
        target.write(data)
        await target.drain()


@contextlib.asynccontextmanager
async def classic_bridge(env: dict[str, str], prompts: Path) -> AsyncIterator[tuple[int, list[int]]]:
    """A port where each connection is one `ivr agi` process; yields it and the exit codes."""
    codes: list[int] = []

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ivr.cli", "agi", str(ROOT / "flows" / "hotline.yaml"),
            "--prompts", str(prompts), env=env, cwd=ROOT,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        assert process.stdin and process.stdout and process.stderr
        to_script = asyncio.create_task(_pump(reader, process.stdin))
        await _pump(process.stdout, writer)  # until the script exits
        codes.append(await process.wait())
        stderr = (await process.stderr.read()).decode()
        if codes[-1]:
            print(stderr)
        to_script.cancel()
        writer.close()

    server = await asyncio.start_server(one, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], codes
    finally:
        server.close()


async def test_a_classic_agi_call_is_the_console_call(
        engine: AsyncEngine, settings: Settings, demo: dict[str, DemoCustomer],
        prompt_folder: Path) -> None:
    zhang = demo["C0001"]
    keys = CALLS[0](zhang)
    console, console_bank = await console_call(engine, settings, prompt_folder, keys)
    await seed(engine, settings, reset=True)
    env = {**os.environ, "DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "IVR_LOOKUP_KEY": "test-lookup-key", "IVR_PIN_HASH_COST": "10"}
    async with classic_bridge(env, prompt_folder) as (port, codes):
        record = await AsteriskPeer("127.0.0.1", port, time_scale=0.02).call(
            "hotline", caller=CALLER, actions=[Press(k) for k in keys], timeout=60)
    assert codes == [0]
    assert names(record.played) == console.prompts
    assert record.variables["IVR_RESULT"] == "hangup"
    assert await bank_snapshot(engine) == console_bank
    assert not any(zhang.pin in line or zhang.card in line for line in record.commands)
