"""The embedded ledger switch: the central switch's work done on the bank's database.

Double entry: every movement writes journal lines that sum to zero, in the same
database transaction as the balance changes. A debit is one conditional UPDATE
(`balance - amount >= -overdraft`), so no interleaving of concurrent requests can
overdraw an account. Daily limits are one conditional upsert. Money-moving
requests first claim their idempotency key (a unique row); a replay finds the
row and gets the first result back.

Each request is one unit of synchronous Core code run whole by `Units` (one
thread hop on SQLite, `run_sync` on PostgreSQL).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, and_, bindparam, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.bank.models import (
    Account,
    Biller,
    Card,
    DailyUsage,
    Fund,
    FundHolding,
    FxRate,
    JournalLine,
    Limit,
    Payee,
    PhoneCredential,
    Transaction,
)
from ivr.bank.prepared import Prepared
from ivr.bank.secrets import hash_pin, mask_account, pin_problem
from ivr.bank.units import Units
from ivr.clock import BANK_TIMEZONE, Clock, SystemClock, business_day, naive_utc
from ivr.config import Settings
from ivr.switch import api
from ivr.switch.api import Decline, Declined

log = logging.getLogger("ivr.switch")

Body = Callable[[Connection, str], api.Result]


class _Decline(Exception):
    def __init__(self, reason: Decline) -> None:
        super().__init__(reason)
        self.reason = reason


# Statements the hot path runs on every transfer, built once.
_CLAIM = insert(Transaction).values(
    idempotency_key=bindparam("key"), kind=bindparam("kind"), customer_id=bindparam("customer"),
    amount=bindparam("amount"), currency="CNY", status="pending", reference="", result={},
    created_at=bindparam("now"),
).returning(Transaction.id)
_FINISH = update(Transaction).where(Transaction.id == bindparam("tx")).values(
    status="approved", reference=bindparam("reference"), result=bindparam("result"))
_STORED = select(Transaction.result, Transaction.status).where(
    Transaction.idempotency_key == bindparam("key"))
_CURRENT_ACCOUNT = (
    select(Account.id)
    .where(Account.customer_id == bindparam("customer"), Account.kind == "current",
           Account.currency == "CNY")
    .order_by(Account.id).limit(1).scalar_subquery()
)
_LIMITS = select(Limit.per_transaction, Limit.daily).where(Limit.customer_id == bindparam("customer"))
# Everything a transfer needs to know, in one round trip.
_PAYEE_AND_SOURCE = select(
    Payee.name, Payee.account_id, Payee.account_masked, _CURRENT_ACCOUNT.label("source"),
    select(Limit.per_transaction).where(Limit.customer_id == Payee.customer_id)
    .scalar_subquery().label("per_transaction"),
    select(Limit.daily).where(Limit.customer_id == Payee.customer_id)
    .scalar_subquery().label("daily"),
).where(Payee.customer_id == bindparam("customer"), Payee.position == bindparam("position"))
_DEBIT = (
    update(Account)
    .where(Account.id == bindparam("account"), Account.status == "active",
           Account.balance - bindparam("amount") >= -Account.overdraft)
    .values(balance=Account.balance - bindparam("amount"))
    .returning(Account.balance)
)
_CREDIT = (
    update(Account)
    .where(Account.id == bindparam("account"), Account.status == "active")
    .values(balance=Account.balance + bindparam("amount"))
    .returning(Account.balance)
)
_ACCOUNT_STATUS = select(Account.status).where(Account.id == bindparam("account"))
_RATE = select(FxRate.buy, FxRate.sell).where(FxRate.currency == bindparam("currency"))
_JOURNAL_LINE = insert(JournalLine).values(
    transaction_id=bindparam("tx"), account_id=bindparam("account"), amount=bindparam("amount"),
    balance_after=bindparam("after"), memo=bindparam("memo"), created_at=bindparam("now"),
)


def _daily_claim(upsert: Any) -> Any:
    """Add today's amount to the day's usage unless that passes the daily limit."""
    stmt = upsert(DailyUsage).values(customer_id=bindparam("customer"), day=bindparam("day"),
                                     used=bindparam("amount"))
    return stmt.on_conflict_do_update(
        index_elements=["customer_id", "day"],
        set_={"used": DailyUsage.used + bindparam("amount")},
        where=DailyUsage.used + bindparam("amount") <= bindparam("daily"),
    ).returning(DailyUsage.used)


class LedgerSwitch:
    """`Switch` on the bank's own database (the default, one machine, no set-up)."""

    def __init__(self, engine: AsyncEngine, settings: Settings, clock: Clock | None = None) -> None:
        self.units = Units.shared(engine)
        self.settings = settings
        self.clock = clock or SystemClock()
        self._upsert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        dialect = self.units.dialect_for_units
        self._claim = Prepared(_CLAIM, dialect)
        self._finish = Prepared(_FINISH, dialect)
        self._payee_and_source = Prepared(_PAYEE_AND_SOURCE, dialect)
        self._daily_claim = Prepared(_daily_claim(self._upsert), dialect)
        self._debit_stmt = Prepared(_DEBIT, dialect)
        self._credit = Prepared(_CREDIT, dialect)
        self._account_status = Prepared(_ACCOUNT_STATUS, dialect)
        self._journal_line = Prepared(_JOURNAL_LINE, dialect)
        self._rate = Prepared(_RATE, dialect)
        self._handlers: dict[type, Callable[[Any], Any]] = {
            api.BalanceInquiry: self._balance,
            api.RecentTransactions: self._recent,
            api.TransferToPayee: self._transfer,
            api.CardRepayment: self._repay_card,
            api.BillPayment: self._pay_bill,
            api.CardLossReport: self._report_loss,
            api.FundPurchase: self._buy_fund,
            api.FxQuote: self._quote,
            api.PinChange: self._change_pin,
        }

    def close(self) -> None:
        self.units.close()

    async def execute(self, request: api.Request) -> api.Result:
        handler = self._handlers[type(request)]
        try:
            result: api.Result = await handler(request)
        except (OSError, DBAPIError) as exc:
            if isinstance(exc, IntegrityError):
                raise
            log.error("ledger unavailable for %s: %s", type(request).__name__, exc)
            raise api.SwitchUnavailable(f"the ledger database did not answer: {exc}") from exc
        return result

    async def reverse(self, idempotency_key: str) -> Reversal:
        """Undo the request made with `idempotency_key`, whether or not it arrived.

        A reversal of a request never seen leaves a tombstone, so the request moves
        nothing if it arrives late; a second reversal changes nothing. Journal lines
        are never deleted: the reversal writes the opposite lines.
        """
        now = self.clock.now()
        try:
            return await self.units.transaction(
                lambda conn: _reverse(conn, self._upsert, idempotency_key, now))
        except (OSError, DBAPIError) as exc:
            log.error("ledger unavailable for a reversal: %s", exc)
            raise api.SwitchUnavailable(f"the ledger database did not answer: {exc}") from exc

    # --- enquiries ------------------------------------------------------------

    async def _balance(self, request: api.BalanceInquiry) -> api.Result:
        def unit(conn: Connection) -> api.Result:
            rows = conn.execute(
                select(Account.number, Account.kind, Account.currency, Account.balance,
                       Account.overdraft)
                .where(Account.customer_id == request.customer_id, Account.status == "active")
                .order_by(Account.id)
            ).all()
            return api.Balances(tuple(
                api.AccountBalance(mask_account(r.number), r.kind, r.currency, r.balance,
                                   r.balance + r.overdraft)
                for r in rows
            ))

        return await self.units.transaction(unit, durable=False, one_statement=True)  # a read

    async def _recent(self, request: api.RecentTransactions) -> api.Result:
        def unit(conn: Connection) -> api.Result:
            rows = conn.execute(
                select(JournalLine.created_at, JournalLine.amount, JournalLine.memo)
                .join(Account, Account.id == JournalLine.account_id)
                .where(Account.customer_id == request.customer_id, Account.kind == "current")
                .order_by(JournalLine.id.desc())
                .limit(max(1, min(request.count, 20)))
            ).all()
            return api.Statement(tuple(
                api.StatementLine(r.created_at.date(), r.amount, r.memo) for r in rows))

        return await self.units.transaction(unit, durable=False, one_statement=True)  # a read

    async def _quote(self, request: api.FxQuote) -> api.Result:
        currency = request.currency.upper()

        def unit(conn: Connection) -> api.Result:
            row = self._rate.first(conn, {"currency": currency})
            if row is None:
                return Declined(Decline.currency_not_quoted)
            return api.Quote(currency, int(row[0]), int(row[1]))

        return await self.units.transaction(unit, durable=False, one_statement=True)  # a read

    # --- the idempotent frame of every request that changes something ------------

    async def _once(self, key: str, kind: str, customer_id: int, amount: int, body: Body,
                    notes: dict[str, object] | None = None) -> api.Result:
        """Run `body` once for `key`; `notes` (filled by the body) are kept for a reversal."""
        now = naive_utc(self.clock.now())

        def unit(conn: Connection) -> api.Result:
            tx_id = self._claim.one_value(conn, {"key": key, "kind": kind, "customer": customer_id,
                                                 "amount": amount, "now": now})
            reference = f"{tx_id:012d}"
            result = body(conn, reference)
            stored = api.encode_result(result)
            if notes:
                stored.update({f"_{name}": value for name, value in notes.items()})
            self._finish.run(conn, {"tx": tx_id, "reference": reference, "result": stored})
            return result

        try:
            return await self.units.transaction(unit)
        except IntegrityError:
            # The same key was served already (or is being served by another request).
            stored = await self.units.transaction(lambda conn: _stored(conn, key))
            if stored is None:
                raise
            return stored
        except _Decline as declined:
            return await self._record_decline(key, kind, customer_id, amount, declined.reason)

    async def _record_decline(
        self, key: str, kind: str, customer_id: int, amount: int, reason: Decline
    ) -> api.Result:
        result = Declined(reason)
        stmt = self._upsert(Transaction).values(
            idempotency_key=key, kind=kind, customer_id=customer_id, amount=amount,
            status="declined", decline=str(reason), reference="",
            result=api.encode_result(result), created_at=naive_utc(self.clock.now()),
        ).on_conflict_do_nothing(index_elements=["idempotency_key"])

        def unit(conn: Connection) -> api.Result | None:
            conn.execute(stmt)
            return _stored(conn, key)

        stored = await self.units.transaction(unit)
        return stored if stored is not None else result

    # --- movements ------------------------------------------------------------------

    def _move(self, conn: Connection, reference: str, debit_id: int, credit_id: int,
              amount: int, memo: str) -> int:
        """Debit one account and credit another; returns the debited balance after."""
        credit = {"amount": amount, "account": credit_id}
        # Lock rows in account order so two opposite transfers cannot deadlock.
        if debit_id < credit_id:
            debit_after = self._debit(conn, debit_id, amount)
            credit_after = self._credit.one_value(conn, credit)
        else:
            credit_after = self._credit.one_value(conn, credit)
            debit_after = self._debit(conn, debit_id, amount) if credit_after is not None else 0
        if credit_after is None:
            raise _Decline(Decline.account_not_available)
        # Two single-row inserts: a compiled statement each time from the cache, where a
        # multi-row insert would be compiled anew for every transfer.
        line = {"tx": int(reference), "memo": memo, "now": naive_utc(self.clock.now())}
        self._journal_line.run(conn, {**line, "account": debit_id, "amount": -amount,
                                      "after": debit_after})
        self._journal_line.run(conn, {**line, "account": credit_id, "amount": amount,
                                      "after": credit_after})
        return int(debit_after)

    def _debit(self, conn: Connection, account: int, amount: int) -> int:
        after = self._debit_stmt.one_value(conn, {"account": account, "amount": amount})
        if after is None:
            status = self._account_status.one_value(conn, {"account": account})
            raise _Decline(Decline.insufficient_funds if status == "active"
                           else Decline.account_not_available)
        return int(after)

    def _use_daily_limit(self, conn: Connection, customer_id: int, amount: int,
                         known: Any = None) -> None:
        """Count `amount` against today's limit; `known` is (per transaction, daily) if read."""
        if known is not None:
            limits = known
        else:
            row = conn.execute(_LIMITS, {"customer": customer_id}).first()
            limits = None if row is None else (row.per_transaction, row.daily)
        if limits is not None and limits[0] is not None:
            per_tx, daily = int(limits[0]), int(limits[1])
        else:
            per_tx = self.settings.transfer_limit_per_transaction * 100
            daily = self.settings.transfer_limit_daily * 100
        if amount > per_tx:
            raise _Decline(Decline.over_transaction_limit)
        if amount > daily:
            raise _Decline(Decline.over_daily_limit)
        claimed = self._daily_claim.one_value(conn, {
            "customer": customer_id, "day": business_day(self.clock), "amount": amount, "daily": daily})
        if claimed is None:
            raise _Decline(Decline.over_daily_limit)

    def _pay_out(self, conn: Connection, reference: str, customer_id: int, to_account: int,
                 amount: int, memo: str) -> None:
        """From the customer's current account, within their daily limit, to `to_account`."""
        source = self._current_account(conn, customer_id)
        self._use_daily_limit(conn, customer_id, amount)
        self._move(conn, reference, source, to_account, amount, memo)

    def _current_account(self, conn: Connection, customer_id: int) -> int:
        account_id = conn.execute(
            select(_CURRENT_ACCOUNT), {"customer": customer_id}).scalar_one_or_none()
        if account_id is None:
            raise _Decline(Decline.account_not_available)
        return int(account_id)

    async def _transfer(self, request: api.TransferToPayee) -> api.Result:
        if request.amount <= 0:
            return Declined(Decline.invalid_amount)

        def body(conn: Connection, reference: str) -> api.Result:
            payee = self._payee_and_source.first(conn, {"customer": request.customer_id,
                                                        "position": request.payee_position})
            if payee is None:
                raise _Decline(Decline.payee_not_registered)
            name, account_id, masked, source, per_tx, daily = payee
            if source is None:
                raise _Decline(Decline.account_not_available)
            self._use_daily_limit(conn, request.customer_id, request.amount, known=(per_tx, daily))
            after = self._move(conn, reference, source, account_id, request.amount,
                               f"phone transfer to {name}"[:60])
            return api.Transferred(reference, request.amount, name, masked, after)

        return await self._once(request.idempotency_key, "transfer", request.customer_id,
                                request.amount, body)

    async def _repay_card(self, request: api.CardRepayment) -> api.Result:
        notes: dict[str, object] = {}

        def body(conn: Connection, reference: str) -> api.Result:
            card = conn.execute(
                select(Card.id, Card.account_id, Card.statement_balance)
                .where(Card.customer_id == request.customer_id, Card.kind == "credit",
                       Card.status != "closed")
                .order_by(Card.id).limit(1)
            ).first()
            if card is None:
                raise _Decline(Decline.card_not_found)
            amount = request.amount or card.statement_balance
            if amount <= 0:
                raise _Decline(Decline.nothing_to_repay)
            source = self._current_account(conn, request.customer_id)
            self._move(conn, reference, source, card.account_id, amount, "credit card repayment")
            left = max(card.statement_balance - amount, 0)
            conn.execute(update(Card).where(Card.id == card.id).values(statement_balance=left))
            notes.update(card=card.id, statement_reduced=card.statement_balance - left)
            return api.Repaid(reference, amount, left)

        return await self._once(request.idempotency_key, "card_repayment", request.customer_id,
                                request.amount, body, notes)

    async def _pay_bill(self, request: api.BillPayment) -> api.Result:
        if request.amount <= 0:
            return Declined(Decline.invalid_amount)

        def body(conn: Connection, reference: str) -> api.Result:
            biller = conn.execute(
                select(Biller.name, Biller.account_id).where(Biller.code == request.biller_code)
            ).first()
            if biller is None:
                raise _Decline(Decline.biller_not_found)
            memo = f"bill {biller.name} {request.bill_reference}"[:60]
            self._pay_out(conn, reference, request.customer_id, biller.account_id, request.amount, memo)
            return api.BillPaid(reference, request.amount, biller.name)

        return await self._once(request.idempotency_key, "bill_payment", request.customer_id,
                                request.amount, body)

    async def _buy_fund(self, request: api.FundPurchase) -> api.Result:
        if request.amount <= 0:
            return Declined(Decline.invalid_amount)

        def body(conn: Connection, reference: str) -> api.Result:
            fund = conn.execute(
                select(Fund.name, Fund.nav, Fund.settlement_account_id)
                .where(Fund.code == request.fund_code)
            ).first()
            if fund is None:
                raise _Decline(Decline.fund_not_found)
            self._pay_out(conn, reference, request.customer_id, fund.settlement_account_id,
                          request.amount, f"fund {request.fund_code}")
            # amount is in fen, nav in 1/10000 yuan per unit, units in 1/10000.
            units = request.amount * 100 * 10_000 // fund.nav
            holding = self._upsert(FundHolding).values(
                customer_id=request.customer_id, fund_code=request.fund_code, units=units)
            conn.execute(holding.on_conflict_do_update(
                index_elements=["customer_id", "fund_code"],
                set_={"units": FundHolding.units + units}))
            return api.FundBought(reference, request.amount, fund.name, units)

        return await self._once(request.idempotency_key, "fund_purchase", request.customer_id,
                                request.amount, body, {"fund": request.fund_code})

    async def _report_loss(self, request: api.CardLossReport) -> api.Result:
        now = self.clock.now()

        def body(conn: Connection, reference: str) -> api.Result:
            usable = or_(Card.status == "active",
                         and_(Card.status == "lost", Card.loss_expires_at <= naive_utc(now)))
            conditions = [Card.customer_id == request.customer_id, usable]
            if request.card_last4:
                conditions.append(Card.last4 == request.card_last4)
            cards = conn.execute(select(Card.id, Card.masked).where(and_(*conditions))).all()
            if not cards:
                raise _Decline(Decline.card_not_found)
            expires = now + dt.timedelta(days=self.settings.card_loss_days)
            conn.execute(
                update(Card).where(Card.id.in_([c.id for c in cards])).values(
                    status="lost", loss_reported_at=naive_utc(now),
                    loss_expires_at=naive_utc(expires))
            )
            return api.LossReported(reference, tuple(c.masked for c in cards),
                                    expires.astimezone(dt.UTC).date())

        return await self._once(request.idempotency_key, "card_loss", request.customer_id, 0, body)

    async def _change_pin(self, request: api.PinChange) -> api.Result:
        if pin_problem(request.new_pin) is not None:
            return Declined(Decline.weak_pin)
        new_hash = hash_pin(request.new_pin, self.settings.pin_hash_cost)
        changed_at = naive_utc(self.clock.now())

        def body(conn: Connection, reference: str) -> api.Result:
            done = conn.execute(
                update(PhoneCredential)
                .where(PhoneCredential.customer_id == request.customer_id)
                .values(pin_hash=new_hash, failed_attempts=0, changed_at=changed_at)
            )
            if done.rowcount != 1:
                raise _Decline(Decline.not_authenticated)
            return api.PinChanged(reference)

        return await self._once(request.idempotency_key, "pin_change", request.customer_id, 0, body)


# --- reversals ---------------------------------------------------------------------

REVERSIBLE = ("transfer", "card_repayment", "bill_payment", "fund_purchase")


class Reversal(StrEnum):
    """What a reversal found; every one of them is an acknowledgement."""

    reversed = "reversed"  # the request had moved money; it is moved back now
    already_reversed = "already_reversed"
    declined = "declined"  # the request had moved nothing
    not_seen = "not_seen"  # never arrived; if it arrives later it moves nothing
    not_reversible = "not_reversible"  # a card loss or PIN change: not money, not reversed


def _reverse(conn: Connection, upsert: Any, key: str, now: dt.datetime) -> Reversal:
    tombstone = Declined(Decline.reversed)
    claimed = conn.execute(
        upsert(Transaction).values(
            idempotency_key=key, kind="reversal", customer_id=None, amount=0, status="reversed",
            decline=str(Decline.reversed), reference="", result=api.encode_result(tombstone),
            created_at=naive_utc(now),
        ).on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(Transaction.id)
    ).first()
    if claimed is not None:
        return Reversal.not_seen
    tx = conn.execute(
        select(Transaction.id, Transaction.kind, Transaction.status, Transaction.customer_id,
               Transaction.amount, Transaction.reference, Transaction.result,
               Transaction.created_at)
        .where(Transaction.idempotency_key == key).with_for_update()
    ).one()
    if tx.status == "reversed":
        return Reversal.already_reversed
    if tx.status != "approved":
        return Reversal.declined
    if tx.kind not in REVERSIBLE:
        return Reversal.not_reversible
    lines = conn.execute(
        select(JournalLine.account_id, JournalLine.amount)
        .where(JournalLine.transaction_id == tx.id).order_by(JournalLine.account_id)
    ).all()
    for line in lines:
        # Forced, without the overdraft test: the money was never the payee's to spend.
        after = conn.execute(
            update(Account).where(Account.id == line.account_id)
            .values(balance=Account.balance - line.amount).returning(Account.balance)
        ).scalar_one()
        conn.execute(insert(JournalLine).values(
            transaction_id=tx.id, account_id=line.account_id, amount=-line.amount,
            balance_after=after, memo=f"reversal of {tx.reference}", created_at=naive_utc(now)))
    moved = sum(line.amount for line in lines if line.amount > 0)
    result = tx.result or {}
    if tx.kind in ("transfer", "bill_payment", "fund_purchase") and moved:
        day = tx.created_at.replace(tzinfo=dt.UTC).astimezone(BANK_TIMEZONE).date()
        conn.execute(update(DailyUsage)
                     .where(DailyUsage.customer_id == tx.customer_id, DailyUsage.day == day)
                     .values(used=DailyUsage.used - moved))
    if tx.kind == "fund_purchase":
        conn.execute(update(FundHolding)
                     .where(FundHolding.customer_id == tx.customer_id,
                            FundHolding.fund_code == result.get("_fund"))
                     .values(units=FundHolding.units - int(result.get("units", 0))))
    if tx.kind == "card_repayment" and "_card" in result:
        # Put back what this repayment took off, whatever happened to the card since.
        conn.execute(update(Card).where(Card.id == result["_card"])
                     .values(statement_balance=Card.statement_balance
                             + int(result["_statement_reduced"])))
    conn.execute(update(Transaction).where(Transaction.id == tx.id).values(
        status="reversed", decline=str(Decline.reversed),
        result={**api.encode_result(tombstone), "reference": tx.reference}))
    log.info("reversed transaction %s (%s)", tx.reference, tx.kind)
    return Reversal.reversed


def _stored(conn: Connection, key: str) -> api.Result | None:
    row = conn.execute(_STORED, {"key": key}).first()
    if row is None or row.status == "pending":
        return None
    return api.decode_result(row.result)


def effective_card_status(status: str, loss_expires_at: dt.datetime | None, now: dt.datetime) -> str:
    """A verbal loss report lapses after its days unless a branch confirmed it."""
    if status == "lost" and loss_expires_at is not None and naive_utc(now) >= loss_expires_at:
        return "active"
    return status
