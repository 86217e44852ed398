"""The hotline over Twilio webhooks: exact TwiML, the same calls as the console,
and duplicated, replayed, out-of-order and unsigned webhooks."""

from __future__ import annotations

import asyncio
import logging
import shutil
import wave
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.bank.models import Transaction, TwilioCall, TwilioStep
from ivr.bank.seed import DemoCustomer, seed
from ivr.bank.service import Bank
from ivr.channels.console import play_call_async
from ivr.clock import FixedClock
from ivr.config import Settings
from ivr.engine.interpreter import Interpreter
from ivr.engine.services import Services
from ivr.flow.loader import load_flows
from ivr.speech.catalog import Catalog
from ivr.speech.say import compose
from ivr.switch.ledger import LedgerSwitch
from tests.bank.test_hotline import NOON, ROOT, bank_snapshot
from tests.twilio.conftest import TOKEN, Phone, Served, end_line, serve, sign

XML = '<?xml version="1.0" encoding="UTF-8"?>'
WELCOME_ZH = '<Say language="cmn-CN" voice="Polly.Zhiyu">您好，欢迎致电银行客户服务热线。</Say>'


def test_signatures_match_twilio_published_example() -> None:
    params = {"CallSid": "CA1234567890ABCDE", "Digits": "1234", "From": "+14158675309",
              "To": "+18005551212", "Caller": "+14158675309"}
    assert sign("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", params) == \
        "RSOYDt4T1cUTdK1PDd93/VVr8B8="


async def test_a_call_gets_exact_twiml_step_by_step(served: Served, http: httpx.AsyncClient,
                                                    demo: dict[str, DemoCustomer]) -> None:
    phone = Phone(http, served.base, "CA" + "1" * 32)
    first = await phone.start()
    assert first.headers["content-type"].startswith("application/xml")
    assert first.text == (
        XML + '<Response><Gather action="/twilio/gather?step=1" actionOnEmptyResult="true" '
        'finishOnKey="" input="dtmf" method="POST" numDigits="1" timeout="3">' + WELCOME_ZH
        + '<Say language="cmn-CN" voice="Polly.Zhiyu">普通话服务请按1，For English, press 2.</Say>'
        '</Gather></Response>')
    second = await phone.press("2")
    assert second.text == (
        XML + '<Response><Gather action="/twilio/gather?step=2" actionOnEmptyResult="true" '
        'finishOnKey="" input="dtmf" method="POST" numDigits="1" timeout="5">'
        '<Say language="en-US" voice="Polly.Joanna">For accounts and transfers, press 1. To report '
        'a lost card, press 2. For exchange rates, press 3. To choose the language again, press 9. '
        'To speak to an agent, press 0.</Say></Gather></Response>')
    agent = await phone.press("0")
    assert agent.text == (
        XML + '<Response><Say language="en-US" voice="Polly.Joanna">Please hold while we connect '
        'you to an agent.</Say><Enqueue workflowSid="WW11111111111111111111111111111111">agents'
        '<Task>{"customer": "", "language": "en-US", "segment": "", "transfer_reason": "transfer", '
        '"verified_by": "none"}</Task></Enqueue>'
        '</Response>')


CALLS = [
    # card, PIN, balance, then a transfer of 100.50 to payee 1, confirmed
    lambda c: ["1", "1", "1", f"{c.card}#", c.pin, "1", "2", "1", "100*5#", "1", "2"],
    # English; resident ID; wrong PIN three times: locked
    lambda c: ["2", "1", "2", f"{c.resident_id}#", "000000", "111111", "222222"],
    # report a card lost, no PIN needed
    lambda c: ["1", "2", f"{c.card}#", "1", "2"],
    # nothing pressed at the menus: to an agent
    lambda c: ["", "", "", ""],
]


def without_caller_lines(lines: list[str]) -> list[str]:
    """The console's lines as Twilio's side sees them: prompts and the end, no keys."""
    out = []
    for line in lines:
        if line.startswith("CALLER:"):
            continue
        if line.startswith("END: transferred"):
            queue = line.split("'")[1]
            reason = line.split("(")[1].split(")")[0]
            data = dict(part.split("=", 1) for part in line.partition(" with ")[2].split(", ")
                        if part)
            line = end_line(queue, reason, data)
        elif line.startswith("END: hung up"):
            line = "END: hung up"
        out.append(line)
    return out


@pytest.mark.parametrize("script", range(len(CALLS)))
async def test_the_same_calls_as_on_the_console(
    script: int, served: Served, http: httpx.AsyncClient, engine: AsyncEngine,
    settings: Settings, demo: dict[str, DemoCustomer],
) -> None:
    customer = demo["C0001"] if script != 1 else demo["C0003"]
    keys = CALLS[script](customer)
    caller = "+8613800000099"
    await seed(engine, settings, reset=True)
    catalog = Catalog.load(ROOT / "prompts")
    clock = FixedClock(NOON)
    ledger = LedgerSwitch(engine, settings, clock)
    interpreter = Interpreter(load_flows(ROOT / "flows" / "hotline.yaml", catalog), catalog,
                              Services(Bank(engine, settings, clock), ledger))
    console = await play_call_async(interpreter, iter(keys), caller=caller, call_id="CA" + "7" * 32)
    ledger.close()
    console_bank = await bank_snapshot(engine)

    await seed(engine, settings, reset=True)
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM twilio_steps"))
        await conn.execute(text("DELETE FROM twilio_calls"))
    phone = Phone(http, served.base, "CA" + "7" * 32, caller=caller)
    await phone.start()
    await phone.play(keys)
    assert phone.lines == without_caller_lines(console.lines)
    assert await bank_snapshot(engine) == console_bank


async def transactions(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(Transaction))).scalar_one())


async def call_step(engine: AsyncEngine, sid: str) -> tuple[int, dict[str, object]]:
    async with engine.connect() as conn:
        row = (await conn.execute(select(TwilioCall.step, TwilioCall.state)
                                  .where(TwilioCall.call_sid == sid))).one()
    return int(row[0]), dict(row[1])


async def to_the_transfer_confirmation(phone: Phone, zhang: DemoCustomer) -> None:
    await phone.start()
    for entry in ["1", "1", "1", f"{zhang.card}#", zhang.pin, "2", "1", "100*5#"]:
        await phone.press(entry)
    assert "确认" in phone.lines[-1] or "请按1" in phone.lines[-1]


async def test_a_repeated_webhook_gets_the_same_twiml_and_moves_money_once(
    served: Served, http: httpx.AsyncClient, engine: AsyncEngine, demo: dict[str, DemoCustomer],
) -> None:
    phone = Phone(http, served.base, "CA" + "2" * 32)
    await to_the_transfer_confirmation(phone, demo["C0001"])
    action = phone.action
    assert action is not None
    confirm = phone.params(Digits="1")
    first = await phone.post(action, confirm)
    again = await phone.post(action, confirm)
    assert first.status_code == again.status_code == 200
    assert again.text == first.text and "转账成功" in first.text
    assert await transactions(engine) == 1
    # Many copies at once, on another call: one runs, all get its answer.
    other = Phone(http, served.base, "CA" + "3" * 32)
    await to_the_transfer_confirmation(other, demo["C0001"])
    assert other.action is not None
    answers = await asyncio.gather(*(other.post(other.action, other.params(Digits="1"))
                                     for _ in range(6)))
    assert {a.status_code for a in answers} == {200}
    assert len({a.text for a in answers}) == 1
    assert await transactions(engine) == 2


async def test_unsigned_and_forged_webhooks_are_refused_and_change_nothing(
    served: Served, http: httpx.AsyncClient, engine: AsyncEngine, demo: dict[str, DemoCustomer],
) -> None:
    phone = Phone(http, served.base, "CA" + "4" * 32)
    await phone.start()
    await phone.press("1")
    before = await call_step(engine, phone.sid)
    assert phone.action is not None
    url = served.base + phone.action
    forged = [
        await phone.post(phone.action, phone.params(Digits="1"), signed=False),
        await phone.post(phone.action, phone.params(Digits="1"), signature="bm90IGEgc2lnbmF0dXJl"),
        # signed for other keys than those posted
        await phone.post(phone.action, phone.params(Digits="1"),
                         signature=sign(TOKEN, url, phone.params(Digits="2"))),
        # signed with another account's token
        await phone.post(phone.action, phone.params(Digits="1"),
                         signature=sign("other-token", url, phone.params(Digits="1"))),
        await phone.post("/twilio/voice", Phone(http, served.base, "CA" + "5" * 32).params(),
                         signed=False),
        await phone.post("/twilio/status", phone.params(CallStatus="completed"), signed=False),
    ]
    assert [answer.status_code for answer in forged] == [403] * len(forged)
    assert await call_step(engine, phone.sid) == before
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(TwilioCall))).scalar_one() == 1


async def test_out_of_order_replayed_and_malformed_webhooks(
    served: Served, http: httpx.AsyncClient, engine: AsyncEngine, demo: dict[str, DemoCustomer],
) -> None:
    phone = Phone(http, served.base, "CA" + "6" * 32)
    await phone.start()
    await phone.press("1")  # Mandarin
    second = phone.documents[-1]
    before = await call_step(engine, phone.sid)
    assert before[0] == 2
    ahead = await phone.post("/twilio/gather?step=7", phone.params(Digits="1"))
    assert ahead.status_code == 409
    bad_keys = await phone.post("/twilio/gather?step=2", phone.params(Digits="12a"))
    assert bad_keys.status_code == 400 and "0-9" in bad_keys.text
    no_step = await phone.post("/twilio/gather", phone.params(Digits="1"))
    assert no_step.status_code == 400
    odd_step = await phone.post("/twilio/gather?step=%C2%B2", phone.params(Digits="1"))
    assert odd_step.status_code == 400
    assert await call_step(engine, phone.sid) == before
    # A late copy of step 1 gets step 1's answer again, whatever its keys.
    late = await phone.post("/twilio/gather?step=1", phone.params(Digits="2"))
    assert late.status_code == 200 and late.text == second
    assert await call_step(engine, phone.sid) == before
    # And the call goes on.
    await phone.press("3")
    assert (await call_step(engine, phone.sid))[0] == 3


async def test_unknown_and_finished_calls_get_a_goodbye(
    served: Served, http: httpx.AsyncClient, engine: AsyncEngine, demo: dict[str, DemoCustomer],
) -> None:
    stranger = Phone(http, served.base, "CA" + "8" * 32)
    unknown = await stranger.post("/twilio/gather?step=1", stranger.params(Digits="1"))
    assert unknown.status_code == 200
    assert unknown.text == (XML + '<Response>' + '<Say language="cmn-CN" voice="Polly.Zhiyu">'
                            '感谢您的来电，再见。</Say><Hangup /></Response>')
    phone = Phone(http, served.base, "CA" + "9" * 32)
    await phone.start()
    hung_up = await phone.post("/twilio/status", phone.params(CallStatus="completed",
                                                               CallDuration="12"))
    assert hung_up.status_code == 204
    step, state = await call_step(engine, phone.sid)
    async with engine.connect() as conn:
        finished = (await conn.execute(select(TwilioCall.finished)
                                       .where(TwilioCall.call_sid == phone.sid))).scalar_one()
    assert finished
    assert (await phone.post("/twilio/status", phone.params(CallStatus="completed"))).status_code == 204
    after = await phone.post("/twilio/gather?step=1", phone.params(Digits="1"))
    assert after.status_code == 200 and "<Hangup />" in after.text
    assert await call_step(engine, phone.sid) == (step, state)


async def test_the_fallback_url_sends_the_caller_to_agents(
    served: Served, http: httpx.AsyncClient, demo: dict[str, DemoCustomer],
) -> None:
    phone = Phone(http, served.base, "CA" + "a" * 32)
    answer = await phone.post("/twilio/fallback", phone.params(ErrorCode="11200",
                                                                ErrorUrl="https://x/twilio/voice"))
    assert answer.status_code == 200
    assert answer.text.endswith("<Enqueue>agents</Enqueue></Response>")
    assert "请稍候" in answer.text or "人工" in answer.text


async def test_keyed_secrets_are_not_in_urls_state_twiml_or_logs(
    served: Served, http: httpx.AsyncClient, engine: AsyncEngine, demo: dict[str, DemoCustomer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    zhang = demo["C0001"]
    phone = Phone(http, served.base, "CA" + "b" * 32)
    await to_the_transfer_confirmation(phone, zhang)
    async with engine.connect() as conn:
        stored = " ".join(str(v) for v in (await conn.execute(select(TwilioCall.state))).scalars())
        stored += " ".join((await conn.execute(select(TwilioStep.twiml))).scalars())
    for secret in (zhang.card, zhang.pin, zhang.card[-8:]):
        assert secret not in stored
        assert secret not in caplog.text
        assert all(secret not in document.split("action=")[-1][:40] for document in phone.documents)


async def test_rendered_prompts_are_played_and_served_with_caching_headers(
    twilio_settings: Settings, http: httpx.AsyncClient, demo: dict[str, DemoCustomer],
    tmp_path: Path,
) -> None:
    prompts = tmp_path / "prompts"
    shutil.copytree(ROOT / "prompts", prompts)
    audio = prompts / "build" / "zh-CN" / "welcome.wav"
    audio.parent.mkdir(parents=True)
    with wave.open(str(audio), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x10\x00" * 8000)
    async with serve(twilio_settings, prompts) as running:
        phone = Phone(http, running.base, "CA" + "d" * 32)
        first = await phone.start()
        assert '<Play>/twilio/audio/zh-CN/welcome.wav</Play>' in first.text
        assert '<Say language="cmn-CN" voice="Polly.Zhiyu">普通话服务请按1' in first.text
        fetched = await http.get(running.base + "/twilio/audio/zh-CN/welcome.wav")
        assert fetched.status_code == 200 and fetched.content == audio.read_bytes()
        assert fetched.headers["content-type"] == "audio/wav"
        assert "max-age" in fetched.headers["cache-control"] and fetched.headers["etag"]
        missing = await http.get(running.base + "/twilio/audio/zh-CN/nothing.wav")
        sneaky = await http.get(running.base + "/twilio/audio/..%2F..%2Fen-US/welcome.wav")
        assert missing.status_code == 404 and sneaky.status_code == 404


async def test_a_balance_is_played_from_the_composers_words(
    twilio_settings: Settings, http: httpx.AsyncClient, demo: dict[str, DemoCustomer],
    tmp_path: Path,
) -> None:
    from tests.asterisk.conftest import render_catalog

    prompts = tmp_path / "prompts"
    shutil.copytree(ROOT / "prompts", prompts)
    render_catalog(Catalog.load(prompts), prompts)
    zhang = demo["C0001"]
    async with serve(twilio_settings, prompts) as running:
        phone = Phone(http, running.base, "CA" + "e" * 32)
        await phone.start()
        for entry in ["1", "1", "1", f"{zhang.card}#", zhang.pin]:
            await phone.press(entry)
        balance = await phone.press("1")
        words = compose("amount", "18518.50", "zh-CN").parts
        expected = "".join(f"<Play>/twilio/audio/zh-CN/{part}.wav</Play>"
                           for part in ("balance_is/1", *(f"_say/{w}" for w in words)))
        assert expected in balance.text
        word = await http.get(running.base + "/twilio/audio/zh-CN/_say/wan.wav")
        assert word.status_code == 200 and word.content[:4] == b"RIFF"
        for sneaky in ("_say/..%2F..%2Fwelcome", "_say/.hidden", "a/b/c"):
            assert (await http.get(f"{running.base}/twilio/audio/zh-CN/{sneaky}.wav")).status_code == 404
