"""SMS and outbound calls against a local HTTP server standing in for Twilio's REST API
(`client.api.base_url`), including its error answers."""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ivr.channels.twilio.outbound import TwilioOutbound
from ivr.engine.interpreter import Interpreter
from ivr.engine.services import OutboundError, Services
from ivr.engine.turn import Hangup
from ivr.flow.loader import load_flows
from ivr.speech.catalog import Catalog
from tests.twilio.conftest import ACCOUNT, free_port

TOKEN = "rest-token"
FROM = "+864008888888"


class TwilioApi(ThreadingHTTPServer):
    """Answers Messages.json and Calls.json as Twilio's API does; `script` lists the
    status codes to give, in order (then 201)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, dict[str, str], str]] = []
        self.script: list[int] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: TwilioApi

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
        self.server.requests.append((self.path, form, self.headers.get("Authorization", "")))
        status = self.server.script.pop(0) if self.server.script else 201
        if status == 201:
            kind = "SM" if self.path.endswith("Messages.json") else "CA"
            body = {"sid": kind + "f" * 32, "status": "queued", "account_sid": ACCOUNT,
                    "to": form.get("To"), "from": form.get("From"), "body": form.get("Body")}
        elif status == 400:
            body = {"code": 21211, "message": f"The 'To' number {form.get('To')} is not a valid "
                    "phone number.", "more_info": "https://www.twilio.com/docs/errors/21211",
                    "status": 400}
        else:
            body = {"code": 20500, "message": "Internal Server Error", "status": status}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def api() -> Iterator[TwilioApi]:
    server = TwilioApi()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def outbound(base_url: str) -> TwilioOutbound:
    return TwilioOutbound(ACCOUNT, TOKEN, FROM, base_url=base_url, pause=0.01, timeout=5)


async def test_an_sms_is_posted_as_twilio_expects(api: TwilioApi) -> None:
    sid = await outbound(api.url).send_sms("+8613800000001", "您的转账已完成。")
    assert sid == "SM" + "f" * 32
    (path, form, auth), = api.requests
    assert path == f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    assert form == {"To": "+8613800000001", "From": FROM, "Body": "您的转账已完成。"}
    assert auth == "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()


async def test_a_refusal_is_reported_at_once_with_twilio_code(api: TwilioApi) -> None:
    api.script = [400]
    with pytest.raises(OutboundError) as refused:
        await outbound(api.url).send_sms("+86123", "x")
    assert "error 21211 (400)" in str(refused.value)
    assert "is not a valid phone number" in str(refused.value)


async def test_numbers_twilio_echoes_are_masked(api: TwilioApi) -> None:
    api.script = [400]
    with pytest.raises(OutboundError) as refused:
        await outbound(api.url).send_sms("+8613812345678", "x")
    assert "13812345678" not in str(refused.value)
    assert "+86138****5678" in str(refused.value)
    assert len(api.requests) == 1


async def test_throttling_and_unavailability_are_tried_again_then_reported(api: TwilioApi) -> None:
    api.script = [429, 503]
    assert await outbound(api.url).send_sms("+8613800000001", "x") == "SM" + "f" * 32
    assert len(api.requests) == 3
    api.requests.clear()
    api.script = [503, 429, 503]
    with pytest.raises(OutboundError, match="failed 3 times: Twilio answered 503"):
        await outbound(api.url).send_sms("+8613800000001", "x")
    assert len(api.requests) == 3


async def test_a_fault_after_the_request_arrived_is_not_sent_twice(api: TwilioApi) -> None:
    api.script = [500]
    with pytest.raises(OutboundError, match="may have been sent, so it is not sent again"):
        await outbound(api.url).send_sms("+8613800000001", "x")
    assert len(api.requests) == 1


async def test_no_twilio_at_all_is_a_clear_error() -> None:
    with pytest.raises(OutboundError, match="cannot reach Twilio") as unreachable:
        await outbound(f"http://127.0.0.1:{free_port()}").send_sms("+8613800000001", "x")
    assert "13800000001" not in str(unreachable.value)  # the number is masked
    with pytest.raises(OutboundError, match="TWILIO_ACCOUNT_SID"):
        TwilioOutbound("", TOKEN, FROM)


async def test_an_outbound_call_points_twilio_at_our_voice_webhook(api: TwilioApi) -> None:
    placed = await outbound(api.url).place_call(
        "+8613800000001", "https://ivr.bank.example/twilio/voice",
        status_callback="https://ivr.bank.example/twilio/status")
    assert placed.sid == "CA" + "f" * 32 and placed.status == "queued"
    (path, form, _), = api.requests
    assert path == f"/2010-04-01/Accounts/{ACCOUNT}/Calls.json"
    assert form["Url"] == "https://ivr.bank.example/twilio/voice"
    assert form["StatusCallback"] == "https://ivr.bank.example/twilio/status"


FLOW = """
flow: notify
version: 1
language: en-US
start: send
nodes:
  send:
    sms: {text: goodbye}
    on: {next: sent, failed: not_sent}
  sent:
    hangup: goodbye
  not_sent:
    hangup: transferring
"""


async def test_the_sms_verb_sends_the_prompt_to_the_caller(api: TwilioApi, tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    catalog = Catalog.load(root / "prompts")
    (tmp_path / "notify.yaml").write_text(FLOW)
    flows = load_flows(tmp_path / "notify.yaml", catalog)
    sending = Interpreter(flows, catalog, Services(None, None, outbound(api.url)))  # type: ignore[arg-type]
    state = sending.start("CA1", caller="+8613800000001", language="en-US")
    turn = await sending.advance_async(state)
    assert isinstance(turn.wait, Hangup)
    assert [s.prompt for s in turn.media] == ["goodbye"]
    assert api.requests[0][1]["Body"] == "Thank you for calling. Goodbye."
    api.script = [400]
    failing = await sending.advance_async(sending.start("CA2", caller="+86123", language="en-US"))
    assert [s.prompt for s in failing.media] == ["transferring"]
