from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.bank.db import make_engine
from ivr.bank.models import Account, Card, JournalLine, Transaction
from ivr.bank.seed import DemoCustomer
from ivr.bank.service import Bank, Identified, NotIdentified
from ivr.clock import FixedClock
from ivr.config import Settings
from ivr.switch import api
from ivr.switch.api import Decline, Declined
from ivr.switch.iso8583.client import Iso8583Switch
from ivr.switch.iso8583.server import SwitchServer
from ivr.switch.ledger import LedgerSwitch

NOON = dt.datetime(2026, 11, 28, 4, 0, tzinfo=dt.UTC)  # 12:00 in Beijing


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOON)


@pytest.fixture(params=["embedded", "iso8583"])
async def switch(request: pytest.FixtureRequest, engine: AsyncEngine, settings: Settings,
                 clock: FixedClock) -> AsyncIterator[api.Switch]:
    """Every test here runs on the ledger itself and through ISO 8583 over TCP to a
    switch server in front of the same ledger: the results must be the same."""
    ledger = LedgerSwitch(engine, settings, clock)
    if request.param == "embedded":
        yield ledger
    else:
        server = SwitchServer(ledger)
        host, port = await server.start("127.0.0.1", 0)
        client = Iso8583Switch(host, port, timeout=10, clock=clock)
        yield client
        await client.close()
        await server.stop()
    ledger.close()


async def cid(engine: AsyncEngine, number: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(
            text("SELECT id FROM customers WHERE number = :n"), {"n": number})).scalar_one())


async def balance_of(engine: AsyncEngine, number: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(
            select(Account.balance).where(Account.number == number))).scalar_one())


async def total_of_all_balances(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.sum(Account.balance)))).scalar_one())


async def journal_is_balanced(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        unbalanced = (await conn.execute(
            select(JournalLine.transaction_id).group_by(JournalLine.transaction_id)
            .having(func.sum(JournalLine.amount) != 0))).all()
    return not unbalanced


async def test_demo_bank_balances_sum_to_zero(demo: dict[str, DemoCustomer], engine: AsyncEngine) -> None:
    assert await total_of_all_balances(engine) == 0


async def test_balance_inquiry(switch: api.Switch, demo: dict[str, DemoCustomer],
                               engine: AsyncEngine) -> None:
    result = await switch.execute(api.BalanceInquiry(await cid(engine, "C0001")))
    assert isinstance(result, api.Balances)
    current = result.accounts[0]
    assert current.kind == "current" and current.balance == 1_234_567
    assert current.account == "************0001"
    assert result.total_available == 1_234_567 + 1_234_567 // 2


async def test_transfer_moves_money_once_and_journals_it(
    switch: api.Switch, demo: dict[str, DemoCustomer], engine: AsyncEngine,
) -> None:
    zhang = await cid(engine, "C0001")
    before_total = await total_of_all_balances(engine)
    request = api.TransferToPayee(zhang, "call-1/hotline/confirm/7", payee_position=1, amount=10_050)
    done = await switch.execute(request)
    assert isinstance(done, api.Transferred)
    assert (done.amount, done.payee_name, done.payee_account) == (10_050, "李娜", "************0002")
    assert done.balance_after == 1_234_567 - 10_050
    assert await balance_of(engine, demo["C0001"].account) == 1_234_567 - 10_050
    assert await balance_of(engine, demo["C0002"].account) == 28_600_000 + 10_050
    # The replay returns the first answer and moves nothing.
    again = await switch.execute(request)
    assert again == done
    assert await balance_of(engine, demo["C0001"].account) == 1_234_567 - 10_050
    assert await total_of_all_balances(engine) == before_total
    assert await journal_is_balanced(engine)
    statement = await switch.execute(api.RecentTransactions(zhang))
    assert isinstance(statement, api.Statement)
    assert [line.amount for line in statement.lines] == [-10_050]


async def test_same_key_concurrently_moves_money_once(
    switch: api.Switch, demo: dict[str, DemoCustomer], engine: AsyncEngine,
) -> None:
    zhang = await cid(engine, "C0001")
    request = api.TransferToPayee(zhang, "call-2/replayed-webhook", payee_position=1, amount=5_000)
    results = await asyncio.gather(*(switch.execute(request) for _ in range(10)))
    assert len(set(results)) == 1 and isinstance(results[0], api.Transferred)
    assert await balance_of(engine, demo["C0001"].account) == 1_234_567 - 5_000
    async with engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(Transaction))).scalar_one()
    assert count == 1


async def test_many_concurrent_transfers_never_overdraw(
    switch: api.Switch, demo: dict[str, DemoCustomer], engine: AsyncEngine,
) -> None:
    # 孙丽 has 12.30 and one payee: 40 transfers of 1.00 can succeed at most 12 times.
    sun = await cid(engine, "C0012")
    before_total = await total_of_all_balances(engine)
    results = await asyncio.gather(*(
        switch.execute(api.TransferToPayee(sun, f"call-{i}", payee_position=1, amount=100))
        for i in range(40)
    ))
    approved = [r for r in results if isinstance(r, api.Transferred)]
    declined = [r for r in results if isinstance(r, Declined)]
    assert len(approved) == 12 and len(declined) == 28
    assert {d.reason for d in declined} == {Decline.insufficient_funds}
    assert await balance_of(engine, demo["C0012"].account) == 30
    assert await total_of_all_balances(engine) == before_total
    assert await journal_is_balanced(engine)
    async with engine.connect() as conn:
        lines = (await conn.execute(select(func.count()).select_from(JournalLine))).scalar_one()
    assert lines == 2 * len(approved)


async def test_opposite_transfers_at_once_do_not_deadlock(
    switch: api.Switch, demo: dict[str, DemoCustomer], engine: AsyncEngine,
) -> None:
    zhang, li = await cid(engine, "C0001"), await cid(engine, "C0002")
    before_total = await total_of_all_balances(engine)
    results = await asyncio.gather(*(
        switch.execute(api.TransferToPayee(who, f"x-{who}-{i}", payee_position=1, amount=100))
        for i in range(15) for who in (zhang, li)
    ))
    assert all(isinstance(r, api.Transferred) for r in results)
    assert await total_of_all_balances(engine) == before_total


@pytest.mark.parametrize(
    ("number", "position", "amount", "reason"),
    [
        ("C0001", 9, 100, Decline.payee_not_registered),
        ("C0001", 1, 5_000_001, Decline.over_transaction_limit),
        ("C0012", 1, 1_231, Decline.insufficient_funds),
        ("C0001", 1, 0, Decline.invalid_amount),
    ],
)
async def test_declines_are_typed_and_move_nothing(
    switch: api.Switch, demo: dict[str, DemoCustomer], engine: AsyncEngine,
    number: str, position: int, amount: int, reason: Decline,
) -> None:
    before = await balance_of(engine, demo[number].account)
    result = await switch.execute(
        api.TransferToPayee(await cid(engine, number), "k-1", payee_position=position, amount=amount))
    assert result == Declined(reason)
    assert await balance_of(engine, demo[number].account) == before


async def test_frozen_account_declines(switch: api.Switch, demo: dict[str, DemoCustomer],
                                       engine: AsyncEngine) -> None:
    xu = await cid(engine, "C0011")
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO payees (customer_id, position, name, account_id, account_masked, bank) "
            "SELECT :c, 1, 'x', id, '****0001', '' FROM accounts WHERE number = '6217000000000001'"),
            {"c": xu})
    result = await switch.execute(api.TransferToPayee(xu, "k", payee_position=1, amount=100))
    assert result == Declined(Decline.account_not_available)


async def test_daily_limit_counts_the_day_in_beijing(
    switch: api.Switch, demo: dict[str, DemoCustomer], engine: AsyncEngine, clock: FixedClock,
) -> None:
    wang = await cid(engine, "C0003")  # private banking: 200,000 a transfer, 500,000 a day
    for i in range(2):
        done = await switch.execute(api.TransferToPayee(wang, f"d{i}", 1, 20_000_000))
        assert isinstance(done, api.Transferred)
    over = await switch.execute(api.TransferToPayee(wang, "d2", 1, 20_000_000))
    assert over == Declined(Decline.over_daily_limit)
    assert await switch.execute(api.TransferToPayee(wang, "d3", 1, 10_000_000)) != over
    clock.advance(dt.timedelta(hours=12))  # past midnight in Beijing: a new day
    assert isinstance(await switch.execute(api.TransferToPayee(wang, "d4", 1, 20_000_000)),
                      api.Transferred)


async def test_declined_key_replays_the_decline(switch: api.Switch, demo: dict[str, DemoCustomer],
                                                engine: AsyncEngine) -> None:
    sun = await cid(engine, "C0012")
    first = await switch.execute(api.TransferToPayee(sun, "same", 1, 5_000))
    async with engine.begin() as conn:
        await conn.execute(update(Account).where(Account.number == demo["C0012"].account)
                           .values(balance=1_000_000))
    assert await switch.execute(api.TransferToPayee(sun, "same", 1, 5_000)) == first


async def test_card_loss_is_temporary(switch: api.Switch, demo: dict[str, DemoCustomer],
                                      engine: AsyncEngine, settings: Settings,
                                      clock: FixedClock) -> None:
    bank = Bank(engine, settings, clock)
    zhang = await cid(engine, "C0001")
    card = demo["C0001"].card
    reported = await switch.execute(api.CardLossReport(zhang, "loss-1", card_last4=card[-4:]))
    assert isinstance(reported, api.LossReported)
    assert reported.cards == (f"{card[:4]} **** **** {card[-4:]}",)
    assert reported.expires_on == dt.date(2026, 12, 3)
    assert await switch.execute(api.CardLossReport(zhang, "loss-1", card[-4:])) == reported
    blocked = await bank.identify("card", card)
    assert isinstance(blocked, NotIdentified) and blocked.reason == "blocked"
    clock.advance(dt.timedelta(days=5))
    assert isinstance(await bank.identify("card", card), Identified)
    nothing = await switch.execute(api.CardLossReport(zhang, "loss-2", "0000"))
    assert nothing == Declined(Decline.card_not_found)


async def test_credit_card_repayment_of_the_statement(
    switch: api.Switch, demo: dict[str, DemoCustomer], engine: AsyncEngine,
) -> None:
    yang = await cid(engine, "C0006")
    repaid = await switch.execute(api.CardRepayment(yang, "r1"))
    assert isinstance(repaid, api.Repaid)
    assert (repaid.amount, repaid.statement_balance_after) == (1_268_800, 0)
    assert await balance_of(engine, demo["C0006"].account) == 2_340_000 - 1_268_800
    again = await switch.execute(api.CardRepayment(yang, "r2"))
    assert again == Declined(Decline.nothing_to_repay)
    async with engine.connect() as conn:
        statement = (await conn.execute(select(Card.statement_balance).where(
            Card.customer_id == yang, Card.kind == "credit"))).scalar_one()
    assert statement == 0


async def test_bill_fund_and_quote(switch: api.Switch, demo: dict[str, DemoCustomer],
                                   engine: AsyncEngine) -> None:
    zhang = await cid(engine, "C0001")
    paid = await switch.execute(api.BillPayment(zhang, "b1", "EL01", "1100223344", 23_456))
    assert isinstance(paid, api.BillPaid) and paid.biller_name == "State Grid electricity"
    assert await switch.execute(api.BillPayment(zhang, "b2", "XX99", "1", 100)) == \
        Declined(Decline.biller_not_found)
    bought = await switch.execute(api.FundPurchase(zhang, "f1", "000001", 100_000))
    assert isinstance(bought, api.FundBought)
    assert bought.units == 8_100_445  # 1,000.00 / 1.2345 = 810.0445 units
    quote = await switch.execute(api.FxQuote("usd"))
    assert quote == api.Quote("USD", 71_502, 72_105)
    assert await switch.execute(api.FxQuote("XAU")) == Declined(Decline.currency_not_quoted)
    assert await journal_is_balanced(engine)


async def test_pin_change(switch: api.Switch, demo: dict[str, DemoCustomer],
                          engine: AsyncEngine, settings: Settings) -> None:
    bank = Bank(engine, settings)
    zhang = await cid(engine, "C0001")
    assert await switch.execute(api.PinChange(zhang, "p0", "111111")) == Declined(Decline.weak_pin)
    assert isinstance(await switch.execute(api.PinChange(zhang, "p1", "864209")), api.PinChanged)
    assert (await bank.authenticate(zhang, "864209")).outcome == "ok"
    assert (await bank.authenticate(zhang, demo["C0001"].pin)).outcome == "wrong"
    assert "864209" not in repr(api.PinChange(zhang, "p1", "864209"))


async def test_results_survive_storage() -> None:
    for result in (api.Transferred("000000000001", 100, "李娜", "****0002", 5),
                   api.LossReported("000000000002", ("6222 **** **** 1234",), dt.date(2026, 1, 2)),
                   Declined(Decline.over_daily_limit)):
        assert api.decode_result(api.encode_result(result)) == result


async def test_database_gone_is_unavailable_not_a_decline(settings: Settings, tmp_path: object) -> None:
    engine = make_engine("sqlite:////nonexistent-folder/bank.db")
    switch = LedgerSwitch(engine, settings)
    with pytest.raises(api.SwitchUnavailable):
        await switch.execute(api.TransferToPayee(1, "k", 1, 100))
    await engine.dispose()
