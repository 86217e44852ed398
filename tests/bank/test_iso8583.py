"""The ISO 8583 client and switch server under faults: lost, late, repeated and
reordered answers, dropped connections, a switch that is down, garbage on the wire.

Whatever happens: money moves at most once, no success is reported without an
answer, and every reversal is acknowledged in the end."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.bank.models import JournalLine, Transaction
from ivr.bank.seed import DemoCustomer
from ivr.clock import FixedClock
from ivr.config import Settings
from ivr.switch import api
from ivr.switch.api import Decline, Declined
from ivr.switch.iso8583 import messages as m
from ivr.switch.iso8583.client import Endpoint, Iso8583Switch
from ivr.switch.iso8583.reversals import ReversalStore
from ivr.switch.iso8583.server import SwitchServer
from ivr.switch.ledger import LedgerSwitch, Reversal
from tests.bank.test_ledger import balance_of, cid, journal_is_balanced, total_of_all_balances
from tests.bank.wire import WireProxy, read_frame

NOON = dt.datetime(2026, 11, 28, 4, 0, tzinfo=dt.UTC)


@dataclass
class Rig:
    ledger: LedgerSwitch
    server: SwitchServer
    server_port: int
    proxy: WireProxy
    client: Iso8583Switch


@pytest.fixture
async def rig(engine: AsyncEngine, settings: Settings,
              demo: dict[str, DemoCustomer]) -> AsyncIterator[Rig]:
    clock = FixedClock(NOON)
    ledger = LedgerSwitch(engine, settings, clock)
    server = SwitchServer(ledger)
    _, server_port = await server.start("127.0.0.1", 0)
    proxy = WireProxy("127.0.0.1", server_port)
    port = await proxy.start()
    client = Iso8583Switch("127.0.0.1", port, timeout=0.5, echo_interval=30,
                           backoff=(0.02, 0.2), clock=clock)
    yield Rig(ledger, server, server_port, proxy, client)
    proxy.lose.clear()
    await client.close(deadline=2)
    await proxy.stop()
    await server.stop()
    ledger.close()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while not await check():
        if loop.time() > end:
            raise AssertionError("did not happen in time")
        await asyncio.sleep(0.02)


async def transactions(engine: AsyncEngine) -> list[tuple[str, str]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(Transaction.idempotency_key, Transaction.status)
                                   .order_by(Transaction.id))).all()
    return [(r[0], r[1]) for r in rows]


async def journal_lines(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(JournalLine))).scalar_one())


# --- answers lost, late, repeated, reordered ---------------------------------------------


async def test_lost_answer_reverses_the_transfer(rig: Rig, engine: AsyncEngine,
                                                 demo: dict[str, DemoCustomer]) -> None:
    zhang = await cid(engine, "C0001")
    before, total = await balance_of(engine, demo["C0001"].account), await total_of_all_balances(engine)
    rig.proxy.lose = {m.FINANCIAL_RESPONSE}
    request = api.TransferToPayee(zhang, "lost-1", payee_position=1, amount=10_000)
    with pytest.raises(api.OutcomeUnknown) as unknown:
        await rig.client.execute(request)
    assert unknown.value.reversed is True
    # The switch did the transfer, then undid it on the reversal.
    assert rig.proxy.count("<-", m.FINANCIAL_RESPONSE) == 1
    assert rig.proxy.count("<-", m.REVERSAL_RESPONSE) == 1
    assert await balance_of(engine, demo["C0001"].account) == before
    assert await total_of_all_balances(engine) == total
    assert await journal_is_balanced(engine)
    assert await journal_lines(engine) == 4  # two lines, then their opposites: none deleted
    assert await transactions(engine) == [("lost-1", "reversed")]
    # Asked again with the same key, it is never a success.
    rig.proxy.lose.clear()
    again = await rig.client.execute(request)
    assert isinstance(again, Declined) and again.reason is Decline.reversed and again.reference


async def test_switch_that_never_answers_gets_reversals_until_one_is_acknowledged(
    rig: Rig, engine: AsyncEngine, demo: dict[str, DemoCustomer],
) -> None:
    zhang = await cid(engine, "C0001")
    before = await balance_of(engine, demo["C0001"].account)
    rig.proxy.lose = {m.FINANCIAL_RESPONSE, m.REVERSAL_RESPONSE}
    with pytest.raises(api.OutcomeUnknown) as unknown:
        await rig.client.execute(api.BillPayment(zhang, "silent-1", "EL01", "1100223344", 23_456))
    assert unknown.value.reversed is False
    assert rig.client.pending_reversals == 1
    await eventually(lambda: _true(rig.proxy.count("->", m.REVERSAL_REPEAT) >= 2))
    rig.proxy.lose.clear()  # the switch answers again
    await eventually(lambda: _true(rig.client.pending_reversals == 0))
    assert rig.proxy.count("->", m.REVERSAL) == 1  # the first try; every later one is a repeat
    assert await balance_of(engine, demo["C0001"].account) == before
    assert await transactions(engine) == [("silent-1", "reversed")]
    assert await journal_is_balanced(engine)


async def _true(value: bool) -> bool:
    return value


async def test_connection_cut_mid_request_then_restored(rig: Rig, engine: AsyncEngine,
                                                        demo: dict[str, DemoCustomer]) -> None:
    zhang = await cid(engine, "C0001")
    before = await balance_of(engine, demo["C0001"].account)
    rig.proxy.cut_after = {m.FINANCIAL}
    with pytest.raises(api.OutcomeUnknown):
        await rig.client.execute(api.FundPurchase(zhang, "cut-1", "000001", 100_000))
    await eventually(lambda: _true(rig.client.pending_reversals == 0))
    assert rig.client.connections >= 2
    assert await balance_of(engine, demo["C0001"].account) == before
    assert await transactions(engine) == [("cut-1", "reversed")]
    # The restored connection serves the next request normally.
    done = await rig.client.execute(api.FundPurchase(zhang, "cut-2", "000001", 100_000))
    assert isinstance(done, api.FundBought)
    assert await balance_of(engine, demo["C0001"].account) == before - 100_000


async def test_answers_out_of_order_reach_their_own_callers(rig: Rig, engine: AsyncEngine) -> None:
    zhang = await cid(engine, "C0001")
    rig.proxy.hold = 8
    amounts = [100 * (i + 1) for i in range(8)]
    results = await asyncio.gather(*(
        rig.client.execute(api.TransferToPayee(zhang, f"order-{a}", 1, a)) for a in amounts))
    assert [r.amount for r in results if isinstance(r, api.Transferred)] == amounts
    answers = [msg["11"] for d, msg in rig.proxy.seen if d == "<-" and msg["t"] == m.FINANCIAL_RESPONSE]
    requests = [msg["11"] for d, msg in rig.proxy.seen if d == "->" and msg["t"] == m.FINANCIAL]
    assert sorted(answers) == sorted(requests)


async def test_repeated_answers_are_dropped(rig: Rig, engine: AsyncEngine,
                                            demo: dict[str, DemoCustomer]) -> None:
    zhang = await cid(engine, "C0001")
    before = await balance_of(engine, demo["C0001"].account)
    rig.proxy.repeat = True
    first = await rig.client.execute(api.TransferToPayee(zhang, "dup-1", 1, 1_000))
    second = await rig.client.execute(api.TransferToPayee(zhang, "dup-2", 1, 2_000))
    balances = await rig.client.execute(api.BalanceInquiry(zhang))
    assert isinstance(first, api.Transferred) and first.amount == 1_000
    assert isinstance(second, api.Transferred) and second.amount == 2_000
    assert isinstance(balances, api.Balances)
    assert balances.accounts[0].balance == before - 3_000
    assert await balance_of(engine, demo["C0001"].account) == before - 3_000


async def test_switch_down_is_unavailable_and_nothing_is_sent(rig: Rig, engine: AsyncEngine) -> None:
    zhang = await cid(engine, "C0001")
    rig.proxy.refuse = True
    with pytest.raises(api.SwitchUnavailable) as down:
        await rig.client.execute(api.TransferToPayee(zhang, "down-1", 1, 100))
    assert not isinstance(down.value, api.OutcomeUnknown)  # never sent, nothing to reverse
    assert rig.client.pending_reversals == 0
    rig.proxy.refuse = False
    await eventually(lambda: rig.client.connect(0.1))
    assert isinstance(await rig.client.execute(api.TransferToPayee(zhang, "down-2", 1, 100)),
                      api.Transferred)
    assert await transactions(engine) == [("down-2", "approved")]


async def test_dropped_connection_reconnects(rig: Rig, engine: AsyncEngine) -> None:
    zhang = await cid(engine, "C0001")
    assert isinstance(await rig.client.execute(api.BalanceInquiry(zhang)), api.Balances)
    rig.proxy.cut()
    assert isinstance(await rig.client.execute(api.BalanceInquiry(zhang)), api.Balances)
    assert rig.client.connections == 2
    assert rig.proxy.count("->", m.NETWORK, m.SIGN_ON) == 2


async def test_echo_keeps_the_line_and_a_silent_switch_is_redialled(
    engine: AsyncEngine, settings: Settings, demo: dict[str, DemoCustomer],
) -> None:
    ledger = LedgerSwitch(engine, settings)
    server = SwitchServer(ledger)
    _, port = await server.start("127.0.0.1", 0)
    proxy = WireProxy("127.0.0.1", port)
    client = Iso8583Switch("127.0.0.1", await proxy.start(), timeout=0.3, echo_interval=0.1,
                           backoff=(0.02, 0.1))
    try:
        assert await client.connect()
        await eventually(lambda: _true(proxy.count("->", m.NETWORK, m.ECHO) >= 3))
        assert client.connections == 1
        proxy.lose = {m.NETWORK_RESPONSE}  # echoes (and sign-ons) go unanswered
        await eventually(lambda: _true(client.connections >= 2))
        proxy.lose.clear()
        assert await client.connect(2)
        assert isinstance(await client.execute(api.FxQuote("USD")), api.Quote)
    finally:
        await client.close()
        await proxy.stop()
        await server.stop()
        ledger.close()


async def test_late_answer_after_timeout_is_not_taken_for_the_next_request(
    rig: Rig, engine: AsyncEngine,
) -> None:
    zhang = await cid(engine, "C0001")
    rig.proxy.hold = 2  # the first answer waits for the second request's answer
    with pytest.raises(api.SwitchUnavailable):
        await rig.client.execute(api.BalanceInquiry(zhang))
    statement = await rig.client.execute(api.RecentTransactions(zhang))
    assert isinstance(statement, api.Statement)  # not the balance answer that arrived with it


# --- garbage on the wire -----------------------------------------------------------------


async def _raw(port: int, data: bytes, answer: bool = True) -> bytes | None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if not answer:
            writer.write_eof()
            return await asyncio.wait_for(reader.read(), 2)
        return await asyncio.wait_for(read_frame(reader), 2)
    finally:
        writer.close()


def _transfer_message(customer: int, key: str, **changes: str) -> m.Message:
    message = m.request_message(api.TransferToPayee(customer, key, 1, 100), "000777", NOON,
                                "IVR00001", "00000001")
    message.update(changes)
    return message


async def test_garbage_gets_a_clean_error_and_changes_nothing(
    rig: Rig, engine: AsyncEngine, demo: dict[str, DemoCustomer],
) -> None:
    zhang = await cid(engine, "C0001")
    port = rig.server_port
    total = await total_of_all_balances(engine)
    # Lengths the framing cannot accept, and a message cut short: the connection is closed.
    assert await _raw(port, b"\x00\x00", answer=False) == b""
    assert await _raw(port, b"\xff\xff" + b"0" * 100, answer=False) == b""
    good = m.encode(_transfer_message(zhang, "trunc-1"))
    assert await _raw(port, len(good).to_bytes(2, "big") + good[:20], answer=False) == b""
    # A whole frame that does not decode, with a readable type: format error.
    answer = m.decode(await _raw(port, m.frame(b"0200" + b"Z" * 40)) or b"")
    assert (answer["t"], answer["39"]) == (m.FINANCIAL_RESPONSE, m.FORMAT_ERROR)
    # A type this switch does not serve, and an unknown processing code: invalid transaction.
    answer = m.decode(await _raw(port, m.frame(m.encode({"t": "0600", "11": "000001", "3": "000000"})))
                      or b"")
    assert (answer["t"], answer["11"], answer["39"]) == ("0610", "000001", m.INVALID_TRANSACTION)
    odd = m.encode(_transfer_message(zhang, "odd-1", **{"3": "770000"}))
    answer = m.decode(await _raw(port, m.frame(odd)) or b"")
    assert (answer["11"], answer["39"]) == ("000777", m.INVALID_TRANSACTION)
    # Known transaction, unreadable details: format error, nothing moved.
    bad = m.encode(_transfer_message(zhang, "bad-1", **{"48": "{not json"}))
    answer = m.decode(await _raw(port, m.frame(bad)) or b"")
    assert answer["39"] == m.FORMAT_ERROR
    no_key = m.encode(_transfer_message(zhang, "", **{"48": json.dumps({"payee": 1})}))
    assert m.decode(await _raw(port, m.frame(no_key)) or b"")["39"] == m.FORMAT_ERROR
    assert await transactions(engine) == []
    assert await total_of_all_balances(engine) == total
    # And the switch still serves everyone else.
    assert isinstance(await rig.client.execute(api.TransferToPayee(zhang, "after", 1, 100)),
                      api.Transferred)


async def test_garbage_from_the_switch_makes_the_client_redial(engine: AsyncEngine) -> None:
    connections = 0

    async def babbler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_frame(reader)  # the sign-on
        writer.write(b"\x00\x05hello")
        await writer.drain()
        await asyncio.sleep(1)
        writer.close()

    server = await asyncio.start_server(babbler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Iso8583Switch("127.0.0.1", port, timeout=0.3, backoff=(0.02, 0.05))
    try:
        with pytest.raises(api.SwitchUnavailable):
            await client.execute(api.BalanceInquiry(1))
        assert connections >= 2
    finally:
        await client.close(deadline=0.1)
        server.close()


# --- the ledger's reversals ------------------------------------------------------------


async def test_reversal_of_a_request_never_seen_stops_it_when_it_comes_late(
    engine: AsyncEngine, settings: Settings, demo: dict[str, DemoCustomer],
) -> None:
    ledger = LedgerSwitch(engine, settings, FixedClock(NOON))
    zhang = await cid(engine, "C0001")
    before = await balance_of(engine, demo["C0001"].account)
    assert await ledger.reverse("late-1") is Reversal.not_seen
    late = await ledger.execute(api.TransferToPayee(zhang, "late-1", 1, 5_000))
    assert late == Declined(Decline.reversed)
    assert await balance_of(engine, demo["C0001"].account) == before
    assert await ledger.reverse("late-1") is Reversal.already_reversed
    ledger.close()


async def test_reversal_gives_back_the_daily_limit_fund_units_and_statement(
    engine: AsyncEngine, settings: Settings, demo: dict[str, DemoCustomer],
) -> None:
    ledger = LedgerSwitch(engine, settings, FixedClock(NOON))
    wang, yang = await cid(engine, "C0003"), await cid(engine, "C0006")
    # Private banking: 500,000 a day. Use 400,000, reverse it, and the day is free again.
    for i in range(2):
        assert isinstance(await ledger.execute(api.TransferToPayee(wang, f"w{i}", 1, 20_000_000)),
                          api.Transferred)
    assert await ledger.reverse("w1") is Reversal.reversed
    assert await ledger.reverse("w1") is Reversal.already_reversed
    assert isinstance(await ledger.execute(api.TransferToPayee(wang, "w2", 1, 20_000_000)),
                      api.Transferred)
    assert await ledger.execute(api.TransferToPayee(wang, "w3", 1, 20_000_000)) == \
        Declined(Decline.over_daily_limit)
    # A card repayment comes back onto the statement, on top of what happened since.
    part = await ledger.execute(api.CardRepayment(yang, "r0", 100_000))
    rest = await ledger.execute(api.CardRepayment(yang, "r1"))
    assert isinstance(part, api.Repaid) and isinstance(rest, api.Repaid)
    assert rest.statement_balance_after == 0
    assert await ledger.reverse("r0") is Reversal.reversed  # reversed after r1 was made
    again = await ledger.execute(api.CardRepayment(yang, "r2"))
    assert isinstance(again, api.Repaid) and again.amount == 100_000
    # A fund purchase gives its units back.
    bought = await ledger.execute(api.FundPurchase(wang, "f1", "000001", 100_000))
    assert isinstance(bought, api.FundBought)
    assert await ledger.reverse("f1") is Reversal.reversed
    async with engine.connect() as conn:
        from ivr.bank.models import FundHolding
        units = (await conn.execute(select(FundHolding.units).where(
            FundHolding.customer_id == wang))).scalar_one()
    assert units == 0
    # A decline moved nothing and a card loss is not money: neither is undone.
    assert isinstance(await ledger.execute(api.TransferToPayee(wang, "x", 9, 100)), Declined)
    assert await ledger.reverse("x") is Reversal.declined
    assert isinstance(await ledger.execute(api.CardLossReport(wang, "loss", "")), api.LossReported)
    assert await ledger.reverse("loss") is Reversal.not_reversible
    assert await journal_is_balanced(engine)
    ledger.close()


def test_switch_url_is_checked() -> None:
    assert Endpoint.parse("iso8583://10.0.0.5:8583?timeout=2.5") == Endpoint("10.0.0.5", 8583, 2.5)
    for bad, says in [("iso8583://host", "iso8583://host:port"),
                      ("tcp://h:1", "iso8583://host:port"),
                      ("iso8583://h:1?timeout=soon", "seconds"),
                      ("iso8583://h:1?retries=3", "unknown option 'retries'"),
                      ("iso8583://h:1?timeout=0", "positive")]:
        with pytest.raises(ValueError, match=says):
            Endpoint.parse(bad)


async def test_reversals_outlive_the_process_that_owed_them(
    rig: Rig, engine: AsyncEngine, demo: dict[str, DemoCustomer],
) -> None:
    zhang = await cid(engine, "C0001")
    before = await balance_of(engine, demo["C0001"].account)
    store = ReversalStore(engine)
    first = Iso8583Switch("127.0.0.1", rig.client.port, timeout=0.3, backoff=(0.02, 0.1),
                          reversals=store)
    rig.proxy.lose = {m.FINANCIAL_RESPONSE}
    rig.proxy.block = {m.REVERSAL, m.REVERSAL_REPEAT}
    with pytest.raises(api.OutcomeUnknown):
        await first.execute(api.TransferToPayee(zhang, "crash-1", 1, 7_700))
    await first.close(deadline=0.1)  # the process goes away owing the reversal
    assert [key for key, _, _ in await store.outstanding()] == ["crash-1"]
    assert await balance_of(engine, demo["C0001"].account) == before - 7_700
    rig.proxy.lose.clear()
    rig.proxy.block.clear()
    second = Iso8583Switch("127.0.0.1", rig.client.port, timeout=0.3, reversals=store)
    try:
        assert await second.connect()
        async def settled() -> bool:
            return await store.outstanding() == [] and second.pending_reversals == 0

        await eventually(settled)
    finally:
        await second.close()
    assert rig.proxy.count("->", m.REVERSAL_REPEAT) >= 1
    assert await balance_of(engine, demo["C0001"].account) == before
    assert await transactions(engine) == [("crash-1", "reversed")]


async def test_migrations_give_the_models_schema(engine: AsyncEngine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from ivr.bank.models import Base

    async with engine.connect() as conn:
        differences = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata))
    assert differences == []


async def test_a_caller_whose_transfer_answer_is_lost_is_never_told_it_was_made(
    rig: Rig, engine: AsyncEngine, settings: Settings, demo: dict[str, DemoCustomer],
) -> None:
    from pathlib import Path

    from ivr.bank.service import Bank
    from ivr.channels.console import play_call_async
    from ivr.engine.interpreter import Interpreter
    from ivr.engine.services import Services
    from ivr.flow.loader import load_flows
    from ivr.speech.catalog import Catalog

    root = Path(__file__).resolve().parents[2]
    catalog = Catalog.load(root / "prompts")
    hotline = Interpreter(load_flows(root / "flows" / "hotline.yaml", catalog), catalog,
                          Services(Bank(engine, settings, FixedClock(NOON)), rig.client))
    zhang = demo["C0001"]
    before = await balance_of(engine, zhang.account)
    rig.proxy.lose = {m.FINANCIAL_RESPONSE}
    keys = ["1", "1", "1", f"{zhang.card}#", zhang.pin, "2", "1", "100*5#", "1"]
    result = await play_call_async(hotline, iter(keys), call_id="lost-answer")
    assert "IVR: 对不起，系统暂时无法确认这笔转账，请不要重复转账，我们为您转接人工服务核实。" in result.lines
    assert not any("转账成功" in line or "已转" in line for line in result.lines)
    assert result.lines[-1].startswith("END: transferred to queue")
    assert await balance_of(engine, zhang.account) == before
    assert [status for _, status in await transactions(engine)] == ["reversed"]


async def test_a_switch_that_answers_nothing_at_all_gets_nothing_sent() -> None:
    heard: list[bytes] = []

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                heard.append(await read_frame(reader))
            except (asyncio.IncompleteReadError, ConnectionError):
                return

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    client = Iso8583Switch("127.0.0.1", server.sockets[0].getsockname()[1], timeout=0.3,
                           backoff=(0.02, 0.05))
    try:
        with pytest.raises(api.SwitchUnavailable) as unavailable:
            await client.execute(api.TransferToPayee(1, "never-1", 1, 100))
        assert not isinstance(unavailable.value, api.OutcomeUnknown)
        # Only sign-ons went out: no request is sent before the switch has answered one.
        assert heard and {m.decode(data)["t"] for data in heard} == {m.NETWORK}
        assert client.pending_reversals == 0
    finally:
        await client.close(deadline=0.1)
        server.close()


class BrokenLedger:
    """Fails on one customer, as a ledger with a bug would."""

    def __init__(self, ledger: LedgerSwitch) -> None:
        self.ledger = ledger

    async def execute(self, request: api.Request) -> api.Result:
        if getattr(request, "customer_id", 0) == 13:
            raise RuntimeError("a bug")
        return await self.ledger.execute(request)

    async def reverse(self, idempotency_key: str) -> Reversal:
        return await self.ledger.reverse(idempotency_key)


async def test_a_failure_inside_the_switch_is_a_malfunction_answer_and_others_go_on(
    engine: AsyncEngine, settings: Settings, demo: dict[str, DemoCustomer],
) -> None:
    ledger = LedgerSwitch(engine, settings)
    server = SwitchServer(BrokenLedger(ledger))
    _, port = await server.start("127.0.0.1", 0)
    client = Iso8583Switch("127.0.0.1", port, timeout=2)
    zhang = await cid(engine, "C0001")
    try:
        with pytest.raises(api.OutcomeUnknown) as unknown:
            await client.execute(api.TransferToPayee(13, "bug-1", 1, 100))
        assert "response code 96" in str(unknown.value) and unknown.value.reversed
        assert isinstance(await client.execute(api.BalanceInquiry(zhang)), api.Balances)
        assert client.connections == 1
    finally:
        await client.close()
        await server.stop()
        ledger.close()


async def test_requests_that_no_message_can_carry_are_answered_without_sending(rig: Rig) -> None:
    assert await rig.client.execute(api.TransferToPayee(1, "huge", 1, 10**12)) == \
        Declined(Decline.invalid_amount)
    assert await rig.client.execute(api.PinChange(1, "p", "12")) == Declined(Decline.weak_pin)
    with pytest.raises(api.SwitchUnavailable, match="cannot be sent"):
        await rig.client.execute(api.BillPayment(1, "b", "EL01", "x" * 1000, 100))
    assert rig.proxy.count("->", m.FINANCIAL) == 0
    await rig.client.close()
    with pytest.raises(api.SwitchUnavailable, match="closed"):
        await rig.client.execute(api.BalanceInquiry(1))


async def test_a_key_asked_again_while_its_reversal_is_outstanding_is_not_sent(
    rig: Rig, engine: AsyncEngine, demo: dict[str, DemoCustomer],
) -> None:
    zhang = await cid(engine, "C0001")
    before = await balance_of(engine, demo["C0001"].account)
    rig.proxy.lose = {m.FINANCIAL_RESPONSE}
    rig.proxy.block = {m.REVERSAL, m.REVERSAL_REPEAT}
    request = api.TransferToPayee(zhang, "again-1", 1, 3_000)
    with pytest.raises(api.OutcomeUnknown):
        await rig.client.execute(request)
    rig.proxy.lose.clear()  # answers flow again, reversals still do not get through
    with pytest.raises(api.OutcomeUnknown) as again:
        await rig.client.execute(request)  # sent, the switch would replay the approval
    assert again.value.reversed is False
    assert rig.proxy.count("->", m.FINANCIAL) == 1
    rig.proxy.block.clear()
    await eventually(lambda: _true(rig.client.pending_reversals == 0))
    assert await balance_of(engine, demo["C0001"].account) == before
    final = await rig.client.execute(request)
    assert isinstance(final, Declined) and final.reason is Decline.reversed
