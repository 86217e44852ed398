"""The switch server as a process of its own: a console call through it, and the
process killed in the middle of a transfer."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from ivr.bank.db import make_engine
from ivr.switch import api
from ivr.switch.iso8583 import messages as m
from ivr.switch.iso8583.client import Iso8583Switch
from tests.bank.wire import WireProxy
from tests.conftest import ROOT

IVR = [sys.executable, "-m", "ivr.cli"]
HOTLINE = str(ROOT / "flows" / "hotline.yaml")


def ivr(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*IVR, *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=120, check=False)


def seeded_bank(folder: Path) -> tuple[dict[str, str], dict[str, str]]:
    """A migrated, seeded demo bank: its environment and 张伟's identities."""
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{folder / 'bank.db'}", IVR_PIN_HASH_COST="10")
    env.pop("SWITCH_URL", None)
    assert ivr("db", "upgrade", env=env).returncode == 0
    listing = ivr("bank", "seed", env=env).stdout.splitlines()
    header = listing[1].split("\t")
    return env, dict(zip(header, listing[2].split("\t"), strict=True))


class SwitchProcess:
    def __init__(self, env: dict[str, str], port: int = 0) -> None:
        self.process = subprocess.Popen(
            [*IVR, "switch", "serve", "--port", str(port)], cwd=ROOT, env=env,
            stderr=subprocess.PIPE, text=True)
        assert self.process.stderr is not None
        line = self.process.stderr.readline()
        found = re.search(r"listening on [\d.]+:(\d+)", line)
        assert found, f"the switch did not start: {line}{self.process.stderr.read()}"
        self.port = int(found.group(1))

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=30)


@pytest.fixture
def bank(tmp_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    return seeded_bank(tmp_path)


@pytest.fixture
def switch_process(bank: tuple[dict[str, str], dict[str, str]]) -> Iterator[SwitchProcess]:
    process = SwitchProcess(bank[0])
    yield process
    process.stop()


def test_a_console_call_through_the_switch_process_is_the_same_call(
    tmp_path: Path, bank: tuple[dict[str, str], dict[str, str]], switch_process: SwitchProcess,
) -> None:
    env, zhang = bank
    keys = f"1,1,1,{zhang['card']}#,{zhang['PIN']},1,2,1,100*5#,1,2"
    remote = ivr("call", HOTLINE, "--keys", keys,
                 env=dict(env, SWITCH_URL=f"iso8583://127.0.0.1:{switch_process.port}"))
    assert remote.returncode == 0, remote.stderr
    other_env, _ = seeded_bank(tmp_path / "embedded")
    embedded = ivr("call", HOTLINE, "--keys", keys, env=other_env)
    assert embedded.returncode == 0, embedded.stderr
    assert remote.stdout == embedded.stdout
    assert "IVR: 您的可用余额合计一万八千五百一十八元五角。" in remote.stdout
    assert any("转账成功，金额一百元五角" in line for line in remote.stdout.splitlines())
    # SIGTERM stops it cleanly.
    assert switch_process.stop() == 0


def test_a_switch_url_that_does_not_parse_is_refused(bank: tuple[dict[str, str], dict[str, str]]) -> None:
    env, _ = bank
    done = ivr("call", HOTLINE, "--keys", "1", env=dict(env, SWITCH_URL="iso8583://nowhere"))
    assert done.returncode == 1
    assert "SWITCH_URL 'iso8583://nowhere' is not iso8583://host:port" in done.stderr


async def test_switch_killed_mid_transfer_moves_nothing_in_the_end(
    bank: tuple[dict[str, str], dict[str, str]],
) -> None:
    env, _ = bank
    first = SwitchProcess(env)
    proxy = WireProxy("127.0.0.1", first.port)

    def kill_on_transfer(message: m.Message) -> None:
        if message["t"] == m.FINANCIAL:
            first.process.kill()

    proxy.on_request = kill_on_transfer
    client = Iso8583Switch("127.0.0.1", await proxy.start(), timeout=1.0, backoff=(0.05, 0.2))
    engine = make_engine(env["DATABASE_URL"])
    second: SwitchProcess | None = None
    try:
        async with engine.connect() as conn:
            zhang, before = (await conn.execute(text(
                "SELECT c.id, a.balance FROM customers c JOIN accounts a ON a.customer_id = c.id "
                "WHERE c.number = 'C0001' AND a.kind = 'current'"))).one()
        with pytest.raises(api.OutcomeUnknown) as unknown:
            await client.execute(api.TransferToPayee(zhang, "killed-1", 1, 50_000))
        assert unknown.value.reversed is False  # nobody there to acknowledge it
        assert first.stop() == -signal.SIGKILL
        proxy.on_request = None
        second = SwitchProcess(env, first.port)  # the switch comes back on its port
        for _ in range(200):
            if client.pending_reversals == 0:
                break
            await asyncio.sleep(0.05)
        assert client.pending_reversals == 0
        async with engine.connect() as conn:
            after = (await conn.execute(text(
                "SELECT balance FROM accounts WHERE customer_id = :c AND kind = 'current'"),
                {"c": zhang})).scalar_one()
            status = (await conn.execute(text(
                "SELECT status FROM transactions WHERE idempotency_key = 'killed-1'"))).scalar_one()
            unbalanced = (await conn.execute(text(
                "SELECT transaction_id FROM journal_lines GROUP BY transaction_id "
                "HAVING sum(amount) != 0"))).all()
        assert (after, status, unbalanced) == (before, "reversed", [])
        # Either way round (killed before or after it committed) the money is where it was.
    finally:
        await client.close(deadline=1)
        await proxy.stop()
        await engine.dispose()
        first.stop()
        if second is not None:
            second.stop()
