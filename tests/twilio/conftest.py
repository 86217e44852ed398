"""A Twilio stand-in for the tests: the app under uvicorn on a real port, and a
phone that posts signed webhooks and follows the TwiML it gets back."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import socket
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.channels.twilio.app import create_app
from ivr.clock import FixedClock
from ivr.config import Settings
from ivr.flow.loader import load_flows
from ivr.speech.catalog import Catalog
from tests.bank.conftest import demo, engine, postgres_url, settings  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-auth-token-0123456789abcdef"
ACCOUNT = "AC" + "0" * 32
NUMBER = "+864008888888"
NOON = dt.datetime(2026, 11, 28, 4, 0, tzinfo=dt.UTC)


def sign(token: str, url: str, params: dict[str, str]) -> str:
    """X-Twilio-Signature as Twilio computes it: HMAC-SHA1 over the URL and the sorted
    parameters (written here from the documented algorithm, not with twilio's code)."""
    data = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    base: str
    settings: Settings
    server: uvicorn.Server


@contextlib.asynccontextmanager
async def serve(app_settings: Settings, prompts: Path | None = None,
                flow: Path | None = None) -> AsyncIterator[Served]:
    catalog = Catalog.load(prompts or ROOT / "prompts")
    flows = load_flows(flow or ROOT / "flows" / "hotline.yaml", catalog)
    app = create_app(app_settings, flows, catalog, prompts or ROOT / "prompts", FixedClock(NOON))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield Served(f"http://127.0.0.1:{port}", app_settings, server)
    finally:
        server.should_exit = True
        await task


@dataclass
class Phone:
    """One call as Twilio would make it: webhooks posted, TwiML followed."""

    http: httpx.AsyncClient
    base: str
    sid: str
    caller: str = "+8613800000099"
    token: str = TOKEN
    lines: list[str] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)
    action: str | None = None
    gather: ET.Element | None = None
    type_ahead: str = ""

    def params(self, **extra: str) -> dict[str, str]:
        return {"CallSid": self.sid, "AccountSid": ACCOUNT, "From": self.caller, "To": NUMBER,
                "CallStatus": "in-progress", "ApiVersion": "2010-04-01", "Direction": "inbound",
                **extra}

    async def post(self, path: str, params: dict[str, str], *, signed: bool = True,
                   signature: str | None = None) -> httpx.Response:
        url = self.base + path
        headers = {}
        if signed:
            headers["X-Twilio-Signature"] = signature or sign(self.token, url, params)
        return await self.http.post(url, data=params, headers=headers)

    def follow(self, document: str) -> None:
        self.documents.append(document)
        root = ET.fromstring(document)
        self.action, self.gather = None, None
        for verb in root:
            self._verb(verb)

    def _verb(self, verb: ET.Element) -> None:
        if verb.tag == "Say":
            self.lines.append(f"IVR: {verb.text}")
        elif verb.tag == "Play":
            self.lines.append(f"IVR: (audio) {verb.text}")
        elif verb.tag == "Gather":
            for inner in verb:
                self._verb(inner)
            self.action, self.gather = verb.get("action"), verb
        elif verb.tag == "Enqueue":
            task = verb.find("Task")
            data = json.loads(task.text or "{}") if task is not None else {}
            reason = data.pop("transfer_reason", "transfer")
            self.lines.append(end_line(verb.text or "", reason, data))
        elif verb.tag == "Hangup":
            self.lines.append("END: hung up")

    async def start(self) -> httpx.Response:
        answer = await self.post("/twilio/voice", self.params(CallStatus="ringing"))
        assert answer.status_code == 200, answer.text
        self.follow(answer.text)
        return answer

    def keyed(self, entry: str) -> tuple[str, str, str]:
        """What Twilio posts for the keys in `entry`: Digits, FinishedOnKey, and the keys
        left over, which the caller pressed into the next prompt."""
        assert self.gather is not None
        finish = self.gather.get("finishOnKey", "#")
        limit = int(self.gather.get("numDigits", "99"))
        digits = ""
        for i, key in enumerate(entry):
            if finish and key == finish:
                return digits, finish, entry[i + 1:]
            digits += key
            if len(digits) == limit:
                return digits, "", entry[i + 1:]
        return digits, "", ""

    def waits_for_more(self) -> bool:
        """Whether the keys pressed ahead do not yet answer the current Gather."""
        if not self.type_ahead or self.gather is None:
            return True
        finish = self.gather.get("finishOnKey", "")
        return not ((finish and finish in self.type_ahead)
                    or len(self.type_ahead) >= int(self.gather.get("numDigits", "99")))

    async def press(self, entry: str) -> httpx.Response:
        """The caller keys `entry` (empty: nothing, the Gather times out)."""
        assert self.action is not None, "the call is not waiting for keys"
        digits, finished_on, self.type_ahead = self.keyed(self.type_ahead + entry)
        extra = {"Digits": digits}
        if finished_on:
            extra["FinishedOnKey"] = finished_on
        answer = await self.post(self.action, self.params(**extra))
        assert answer.status_code == 200, answer.text
        self.follow(answer.text)
        return answer

    async def play(self, entries: list[str]) -> None:
        """Answer each wait with the next entry, as the console's script does."""
        for entry in entries:
            while self.action is not None and not self.waits_for_more():
                await self.press("")
            if self.action is None:
                return
            await self.press(entry)
        while self.action is not None and self.type_ahead and not self.waits_for_more():
            await self.press("")


def end_line(queue: str, reason: str, data: dict[str, str]) -> str:
    shown = ", ".join(f"{k}={v}" for k, v in sorted(data.items()))
    return f"END: transferred to queue '{queue}' ({reason})" + (f" with {shown}" if shown else "")


@pytest.fixture
def twilio_settings(engine: AsyncEngine) -> Settings:  # noqa: F811
    url = engine.url.render_as_string(hide_password=False)
    return Settings(database_url=url, pin_hash_cost=10, lookup_key="test-lookup-key",  # type: ignore[arg-type]
                    twilio_auth_token=TOKEN, twilio_workflow_sid="WW" + "1" * 32)


@pytest.fixture
async def served(twilio_settings: Settings, demo: dict[str, object]) -> AsyncIterator[Served]:  # noqa: F811
    """The app on a real port, in front of a seeded demo bank."""
    async with serve(twilio_settings) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client
