"""Two worker processes (`ivr serve twilio`), one database: a call's webhooks go to
each in turn, as a load balancer would send them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.bank.models import Transaction, TwilioCall
from ivr.bank.seed import DemoCustomer
from tests.conftest import ROOT
from tests.twilio.conftest import TOKEN, Phone, free_port


class Worker:
    def __init__(self, database_url: str) -> None:
        self.port = free_port()
        env = dict(os.environ, DATABASE_URL=database_url, TWILIO_AUTH_TOKEN=TOKEN,
                   IVR_LOOKUP_KEY="test-lookup-key", IVR_PIN_HASH_COST="10")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ivr.cli", "serve", "twilio", "--port", str(self.port)],
            cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
            if self.process.poll() is not None:
                break
        self.stop()
        raise AssertionError(f"the worker did not start: {self.process.stderr.read()}")  # type: ignore[union-attr]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)


@pytest.fixture
def workers(engine: AsyncEngine, demo: dict[str, DemoCustomer]) -> Iterator[list[Worker]]:
    if engine.dialect.name != "postgresql":
        pytest.skip("workers share the call state through PostgreSQL")
    url = engine.url.render_as_string(hide_password=False)
    started = [Worker(url), Worker(url)]
    yield started
    for worker in started:
        worker.stop()


async def test_two_workers_serve_alternate_webhooks_of_one_call(
    workers: list[Worker], engine: AsyncEngine, demo: dict[str, DemoCustomer],
) -> None:
    zhang = demo["C0001"]
    keys = ["1", "1", "1", f"{zhang.card}#", zhang.pin, "1", "2", "1", "100*5#", "1", "2"]
    async with httpx.AsyncClient(timeout=30) as http:
        phone = Phone(http, workers[0].base, "CA" + "c" * 32)
        await phone.start()
        served_by = []
        for turn, entry in enumerate(keys):
            phone.base = workers[(turn + 1) % 2].base  # the next webhook goes to the other one
            served_by.append(phone.base)
            await phone.press(entry)
        # The same step asked of the other worker: the same TwiML, nothing run again.
        last = phone.documents[-1]
        phone.base = workers[0].base if phone.base == workers[1].base else workers[1].base
        step = len(keys)
        again = await phone.post(f"/twilio/gather?step={step}", phone.params(Digits="2"))
        assert again.text == last
    assert len(set(served_by)) == 2
    assert "IVR: 您的可用余额合计一万八千五百一十八元五角。" in phone.lines
    assert any("转账成功" in line for line in phone.lines)
    assert phone.lines[-1] == "END: hung up"
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(Transaction))).scalar_one() == 1
        finished = (await conn.execute(select(TwilioCall.finished)
                                       .where(TwilioCall.call_sid == phone.sid))).scalar_one()
    assert finished


def test_serving_without_an_auth_token_says_what_to_set(tmp_path: object) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TWILIO_AUTH_TOKEN"}
    env["DATABASE_URL"] = "sqlite:///unused.db"
    done = subprocess.run([sys.executable, "-m", "ivr.cli", "serve", "twilio", "--port", "1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "TWILIO_AUTH_TOKEN is not set" in done.stderr
    broken = tmp_path / "broken.yaml"  # type: ignore[operator]
    broken.write_text("flow: x\nversion: 1\nstart: nowhere\nnodes: {}\n")
    flawed = subprocess.run([sys.executable, "-m", "ivr.cli", "serve", "twilio", "--flow", str(broken)],
                            cwd=ROOT, env=dict(env, TWILIO_AUTH_TOKEN="t"), capture_output=True,
                            text=True, timeout=60, check=False)
    assert flawed.returncode == 1 and "the flow has errors" in flawed.stderr
