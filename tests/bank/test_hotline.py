"""The hotline, end to end, against the demo bank: every call runs twice (straight,
and with the call state through JSON at every wait) on a freshly seeded bank, and
the transcripts and the bank must come out the same."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.bank.models import AuditEntry, Transaction
from ivr.bank.seed import DemoCustomer, seed
from ivr.bank.service import Bank
from ivr.channels.console import ConsoleResult, play_call_async
from ivr.clock import FixedClock
from ivr.config import Settings
from ivr.engine.interpreter import Interpreter, NeedsServices
from ivr.engine.services import Services
from ivr.engine.state import CallState
from ivr.engine.turn import Digits, Gather, Transfer, Turn
from ivr.flow.loader import load_flows
from ivr.speech.catalog import Catalog
from ivr.switch.ledger import LedgerSwitch

ROOT = Path(__file__).resolve().parents[2]
NOON = dt.datetime(2026, 11, 28, 4, 0, tzinfo=dt.UTC)


@pytest.fixture
def hotline(engine: AsyncEngine, settings: Settings) -> Interpreter:
    clock = FixedClock(NOON)
    catalog = Catalog.load(ROOT / "prompts")
    flows = load_flows(ROOT / "flows" / "hotline.yaml", catalog)
    services = Services(Bank(engine, settings, clock), LedgerSwitch(engine, settings, clock))
    return Interpreter(flows, catalog, services)


async def call_both_ways(hotline: Interpreter, engine: AsyncEngine, settings: Settings,
                         keys: list[str], caller: str | None = None) -> ConsoleResult:
    """Play the call on a freshly seeded bank, then again with a JSON save/restore at
    every wait on another freshly seeded bank; both must give the same transcript,
    state and bank. Returns the first."""
    runs = []
    for save_restore in (False, True):
        await seed(engine, settings, reset=True)
        result = await play_call_async(hotline, iter(keys), caller=caller, call_id="call-1",
                                       save_restore=save_restore)
        runs.append((result, await bank_snapshot(engine)))
    (first, first_bank), (second, second_bank) = runs
    assert second.lines == first.lines
    assert second.state is not None and first.state is not None
    assert second.state.to_dict() == first.state.to_dict()
    assert second_bank == first_bank
    return first


async def bank_snapshot(engine: AsyncEngine) -> list[object]:
    async with engine.connect() as conn:
        balances = (await conn.execute(text("SELECT number, balance FROM accounts ORDER BY number"))).all()
        moves = (await conn.execute(text(
            "SELECT account_id, amount FROM journal_lines ORDER BY id"))).all()
    return [tuple(r) for r in balances] + [tuple(r) for r in moves]


async def balance(engine: AsyncEngine, account: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(
            text("SELECT balance FROM accounts WHERE number = :n"), {"n": account})).scalar_one())


def secrets_of(customer: DemoCustomer) -> list[str]:
    return [customer.card, customer.resident_id, customer.pin]


async def test_card_pin_balance_and_transfer(hotline: Interpreter, engine: AsyncEngine,
                                             settings: Settings, demo: dict[str, DemoCustomer]) -> None:
    zhang = demo["C0001"]
    keys = ["1", "1", "1", f"{zhang.card}#", zhang.pin, "1", "2", "1", "100*5#", "1", "2"]
    result = await call_both_ways(hotline, engine, settings, keys)
    assert result.lines == [
        "IVR: 您好，欢迎致电银行客户服务热线。",
        "IVR: 普通话服务请按1，For English, press 2.",
        "CALLER: 1",
        "IVR: 账户查询和转账请按1，银行卡挂失请按2，外汇牌价请按3，重新选择语言请按9，人工服务请按0。",
        "CALLER: 1",
        "IVR: 请选择验证方式：输入银行卡号请按1，输入身份证号码请按2，输入账号请按3。",
        "CALLER: 1",
        "IVR: 请输入您的银行卡号，以井号键结束。",
        "CALLER: ****************",
        "IVR: 请输入六位电话银行密码。",
        "CALLER: ******",
        "IVR: 查询余额请按1，向已登记的收款人转账请按2，返回主菜单请按星号键，人工服务请按0。",
        "CALLER: 1",
        "IVR: 您的可用余额合计一万八千五百一十八元五角。",
        "IVR: 查询余额请按1，向已登记的收款人转账请按2，返回主菜单请按星号键，人工服务请按0。",
        "CALLER: 2",
        "IVR: 请输入收款人的登记序号。",
        "CALLER: 1",
        "IVR: 请输入转账金额，小数点请按星号键，以井号键结束。",
        "CALLER: 100*5",
        "IVR: 您将向李娜，账号尾号零零零二，转账一百元五角。确认请按1，取消请按2。",
        "CALLER: 1",
        "IVR: 转账成功，金额一百元五角，交易参考号零零零零零零零零零零零幺，"
        "转账后余额一万二千二百四十五元一角七分。",
        "IVR: 继续办理其他业务请按1，结束通话请按2。",
        "CALLER: 2",
        "IVR: 感谢您的来电，再见。",
        "END: hung up (completed)",
    ]
    assert await balance(engine, zhang.account) == 1_234_567 - 10_050
    assert await balance(engine, demo["C0002"].account) == 28_600_000 + 10_050
    assert result.state is not None
    saved = result.state.to_json()
    for secret in secrets_of(zhang):
        assert secret not in saved
        assert all(secret not in line for line in result.lines)


async def test_english_caller_is_recognised_by_phone(hotline: Interpreter, engine: AsyncEngine,
                                                     settings: Settings,
                                                     demo: dict[str, DemoCustomer]) -> None:
    wang = demo["C0003"]  # private banking, prefers English
    keys = ["", "1", "2", wang.resident_id + "#", wang.pin, "0"]
    result = await call_both_ways(hotline, engine, settings, keys, caller="008613800000003")
    assert "IVR: For accounts and transfers, press 1. To report a lost card, press 2. " \
           "For exchange rates, press 3. To choose the language again, press 9. " \
           "To speak to an agent, press 0." in result.lines
    assert "IVR: Welcome back, Wang Fang." in result.lines
    assert result.lines[-1] == (
        "END: transferred to queue 'agents' (transfer) with customer=C0003, "
        "verified_by=resident_id, segment=private, language=en-US"
    )


async def test_wrong_pins_lock_phone_banking(hotline: Interpreter, engine: AsyncEngine,
                                             settings: Settings,
                                             demo: dict[str, DemoCustomer]) -> None:
    zhang = demo["C0001"]
    keys = ["1", "1", "3", f"{zhang.account}#", "918273", "827364", "736455"]
    result = await call_both_ways(hotline, engine, settings, keys)
    assert result.lines[-6:] == [
        "IVR: 密码错误，您还可以再试一次。",
        "IVR: 请输入六位电话银行密码。",
        "CALLER: ******",
        "IVR: 密码错误次数过多，电话银行已锁定，请到网点或通过人工服务解锁。",
        "IVR: 正在为您转接人工服务，请稍候。",
        "END: transferred to queue 'agents' (transfer) with customer=C0001, "
        "verified_by=account, segment=standard, language=zh-CN",
    ]
    assert "IVR: 密码错误，您还可以再试两次。" in result.lines
    async with engine.connect() as conn:
        events = (await conn.execute(select(AuditEntry.event).order_by(AuditEntry.id))).scalars().all()
        dumped = json.dumps([list(map(str, r)) for r in (await conn.execute(
            select(AuditEntry.event, AuditEntry.detail, AuditEntry.call_id))).all()])
    assert events.count("pin_wrong") == 3 and "phone_banking_locked" in events
    for pin in ("918273", "827364", "736455"):
        assert pin not in dumped


async def test_insufficient_funds_is_told_and_nothing_moves(
    hotline: Interpreter, engine: AsyncEngine, settings: Settings, demo: dict[str, DemoCustomer],
) -> None:
    sun = demo["C0012"]
    keys = ["1", "1", "1", f"{sun.card}#", sun.pin, "2", "1", "100#", "1", "2"]
    result = await call_both_ways(hotline, engine, settings, keys)
    assert "IVR: 对不起，账户余额不足，转账没有完成。" in result.lines
    assert await balance(engine, sun.account) == 1_230


async def test_unregistered_payee_is_asked_again(hotline: Interpreter, engine: AsyncEngine,
                                                 settings: Settings,
                                                 demo: dict[str, DemoCustomer]) -> None:
    zhang = demo["C0001"]
    keys = ["1", "1", "1", f"{zhang.card}#", zhang.pin, "2", "7", "2", "50#", "2", "2"]
    result = await call_both_ways(hotline, engine, settings, keys)
    at = result.lines.index("CALLER: 7")
    assert result.lines[at:at + 4] == [
        "CALLER: 7",
        "IVR: 对不起，没有这个收款人序号。",
        "IVR: 请输入收款人的登记序号。",
        "CALLER: 2",
    ]
    assert ("IVR: 您将向王芳 (other bank)，账号尾号零零零幺，转账五十元整。确认请按1，取消请按2。"
            in result.lines)
    assert "IVR: 转账已取消。" in result.lines


async def test_card_loss_needs_no_pin_and_blocks_the_card(
    hotline: Interpreter, engine: AsyncEngine, settings: Settings, demo: dict[str, DemoCustomer],
) -> None:
    zhang = demo["C0001"]
    keys = ["1", "2", f"{zhang.card}#", "1", "1", "2", f"{zhang.card}#"]
    result = await call_both_ways(hotline, engine, settings, keys)
    tail = "".join("零幺二三四五六七八九"[int(d)] for d in zhang.card[-4:])  # 1 is said 幺
    assert f"IVR: 您要挂失尾号{tail}的卡，确认请按1，返回请按2。" in result.lines
    done = "IVR: 口头挂失已受理，有效期至二零二六年十二月三日，请在此之前携带身份证件到网点办理正式挂失。"
    assert done in result.lines
    # Reporting it again finds the card already blocked.
    assert result.lines[-5:-3] == ["CALLER: ****************",
                                   "IVR: 这张卡已经冻结或挂失，无需重复挂失。"]


async def test_blocked_card_and_unknown_customer(hotline: Interpreter, engine: AsyncEngine,
                                                 settings: Settings,
                                                 demo: dict[str, DemoCustomer]) -> None:
    keys = ["1", "1", "1", f"{demo['C0009'].card}#"]
    blocked = await call_both_ways(hotline, engine, settings, keys)
    assert "IVR: 对不起，这张卡已冻结或已挂失，请转人工服务。" in blocked.lines
    assert blocked.lines[-1].startswith("END: transferred to queue 'agents'")
    unknown = ["1", "1", "1", "4111111111111111#", "1", "4111111111111111#", "1",
               "4111111111111111#"]
    result = await call_both_ways(hotline, engine, settings, unknown)
    assert result.lines.count("IVR: 对不起，没有找到您的资料，请重新选择验证方式。") == 2
    assert result.lines[-1] == ("END: transferred to queue 'agents' (transfer) with customer=, "
                                "verified_by=none, segment=, language=zh-CN")


async def test_fx_rate_needs_no_identification(hotline: Interpreter, engine: AsyncEngine,
                                               settings: Settings,
                                               demo: dict[str, DemoCustomer]) -> None:
    result = await call_both_ways(hotline, engine, settings, ["2", "3", "1", "2"])
    assert ("IVR: For one hundred US dollars, we buy at seven hundred and fifteen point zero two yuan "
            "and sell at seven hundred and twenty-one point zero five yuan.") in result.lines


async def test_typed_ahead_pin_and_menu_keys_give_the_same_call(
    hotline: Interpreter, engine: AsyncEngine, settings: Settings, demo: dict[str, DemoCustomer],
) -> None:
    zhang = demo["C0001"]
    waited = await call_both_ways(hotline, engine, settings,
                                  ["1", "1", "1", f"{zhang.card}#", zhang.pin, "1", "2"])
    typed = await call_both_ways(hotline, engine, settings,
                                 [f"111{zhang.card}#{zhang.pin}12"])
    assert typed.lines == waited.lines


async def test_a_retried_turn_moves_money_once(hotline: Interpreter, engine: AsyncEngine,
                                               settings: Settings,
                                               demo: dict[str, DemoCustomer]) -> None:
    """The same event delivered twice for the same saved state (a retried webhook,
    a worker that died after the switch answered) gives the same turn and one transfer."""
    zhang = demo["C0001"]
    state = hotline.start("call-9")
    turn = await hotline.advance_async(state)
    for keys in ["1", "1", "1", zhang.card, zhang.pin, "2", "1", "300"]:
        turn = await hotline.advance_async(state, Digits(keys, "terminator"))
        assert isinstance(turn.wait, Gather), turn
    saved = state.to_json()
    first = await hotline.advance_async(state, Digits("1"))
    retried_state = CallState.from_json(saved)
    retried = await hotline.advance_async(retried_state, Digits("1"))
    assert retried == first
    assert retried_state == state
    async with engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(Transaction))).scalar_one()
    assert count == 1
    assert await balance(engine, zhang.account) == 1_234_567 - 30_000


async def test_bank_down_mid_call_reaches_an_agent(hotline: Interpreter, engine: AsyncEngine,
                                                   settings: Settings,
                                                   demo: dict[str, DemoCustomer]) -> None:
    zhang = demo["C0001"]
    state = hotline.start("call-7")
    await hotline.advance_async(state)
    for keys in ["1", "1", "1", zhang.card, zhang.pin, "2", "1", "300"]:
        await hotline.advance_async(state, Digits(keys, "terminator"))
    await engine.dispose()
    broken = Interpreter(hotline.flows, hotline.catalog, Services(
        hotline.services.bank,  # type: ignore[union-attr]
        LedgerSwitch(_unreachable_engine(), settings)))
    turn = await broken.advance_async(state, Digits("1"))
    assert [s.prompt for s in turn.media] == ["transfer_unknown", "transferring"]
    assert isinstance(turn.wait, Transfer) and turn.wait.queue == "agents"


def _unreachable_engine() -> AsyncEngine:
    from ivr.bank.db import make_engine

    return make_engine("sqlite:////nonexistent-folder/bank.db")


async def test_bank_down_at_identification_reaches_an_agent(
    hotline: Interpreter, settings: Settings, demo: dict[str, DemoCustomer],
) -> None:
    broken_engine = _unreachable_engine()
    broken = Interpreter(hotline.flows, hotline.catalog, Services(
        Bank(broken_engine, settings), LedgerSwitch(broken_engine, settings)))
    result = await play_call_async(broken, iter(["1", "1", "1", f"{demo['C0001'].card}#"]),
                                   caller="13800000001")
    assert result.end_reason == "flow_error"
    assert result.lines[-1] == (
        "END: transferred to queue 'agents' (flow_error) with fault=hotline/recognise_phone")
    await broken_engine.dispose()


async def test_turns_run_without_awaiting_until_one_needs_the_bank(
    hotline: Interpreter, demo: dict[str, DemoCustomer],
) -> None:
    """As the FastAGI call runs them: each turn first without awaiting (`advance`); one
    that reaches the bank stops with NeedsServices and leaves the state as it was, and
    `advance_async` then runs it. The call comes out as when every turn is awaited."""
    zhang = demo["C0001"]
    keys = ["1", "1", "1", zhang.card, zhang.pin, "1", "9"]

    async def play(try_sync: bool) -> tuple[list[Turn], dict[str, object], int]:
        state = hotline.start("call-8")
        turns = [await hotline.advance_async(state)]
        stopped = 0
        for typed in keys:
            event = Digits(typed, "terminator")
            if try_sync:
                before = state.to_dict()
                try:
                    turns.append(hotline.advance(state, event))
                    continue
                except NeedsServices:
                    stopped += 1
                    assert state.to_dict() == before
            turns.append(await hotline.advance_async(state, event))
        return turns, state.to_dict(), stopped

    awaited, awaited_state, _ = await play(try_sync=False)
    mixed, mixed_state, stopped = await play(try_sync=True)
    assert stopped >= 2  # the card, then the PIN, need the bank
    assert mixed == awaited
    assert mixed_state == awaited_state
