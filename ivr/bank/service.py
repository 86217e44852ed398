"""The bank's customer side: identification, the phone PIN, the single customer view.

Every identification and PIN attempt is audited with what was tried (masked) and
how it ended; PIN digits and full card or ID numbers are never written anywhere.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from sqlalchemy import Connection, bindparam, func, insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.bank.models import (
    Account,
    AuditEntry,
    Card,
    Customer,
    CustomerPhone,
    IdDocument,
    Loan,
    Payee,
    PhoneCredential,
)
from ivr.bank.phones import normalise_phone
from ivr.bank.prepared import Prepared
from ivr.bank.secrets import lookup_hash, mask_account, mask_card, mask_resident_id, verify_pin
from ivr.bank.units import Units
from ivr.clock import Clock, SystemClock, naive_utc
from ivr.config import Settings
from ivr.engine.validators import check_card, check_resident_id
from ivr.switch.ledger import effective_card_status

log = logging.getLogger("ivr.bank")

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
R = TypeVar("R")


class BankUnavailable(Exception):
    """The bank's database did not answer; nothing is known about the caller."""


def _answering(method: F) -> F:
    """Turn a database that does not answer into BankUnavailable, with the reason logged."""

    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await method(*args, **kwargs)
        except (OSError, DBAPIError) as exc:
            log.error("bank unavailable in %s: %s", method.__name__, exc)
            raise BankUnavailable(f"the bank's database did not answer: {exc}") from exc

    return wrapper  # type: ignore[return-value]


IdentifyBy = Literal["card", "resident_id", "account"]
NotIdentifiedReason = Literal["unknown", "invalid", "closed", "blocked"]


@dataclass(frozen=True)
class Identified:
    customer_id: int
    via: IdentifyBy
    masked: str


@dataclass(frozen=True)
class NotIdentified:
    reason: NotIdentifiedReason
    detail: str


@dataclass(frozen=True)
class AuthResult:
    #: ok, wrong, locked, or no_pin (phone banking never set up)
    outcome: Literal["ok", "wrong", "locked", "no_pin"]
    attempts_left: int = 0


@dataclass(frozen=True)
class CustomerView:
    """What the flow and the agent's screen may know of a customer: masked, no secrets."""

    number: str
    name: str
    segment: str
    language: str
    has_credit_card: bool
    overdue_days: int
    accounts: list[dict[str, Any]] = field(default_factory=list)
    cards: list[dict[str, Any]] = field(default_factory=list)
    payees: list[dict[str, Any]] = field(default_factory=list)
    preferences: dict[str, Any] = field(default_factory=dict)

    def as_variables(self) -> dict[str, Any]:
        return {
            "number": self.number, "name": self.name, "segment": self.segment,
            "language": self.language, "has_credit_card": self.has_credit_card,
            "overdue_days": self.overdue_days, "accounts": self.accounts, "cards": self.cards,
            "payees": self.payees, "payee_count": len(self.payees),
            # what a caller keys to choose a payee -> that payee
            "payee_by_number": {str(p["position"]): p for p in self.payees},
            "preferences": self.preferences,
        }


class Bank:
    def __init__(self, engine: AsyncEngine, settings: Settings, clock: Clock | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock or SystemClock()
        self._key = settings.lookup_key.get_secret_value()
        # Reads run as units: one thread hop on SQLite (aiosqlite costs several a query).
        self.units = Units.shared(engine)
        # Asked on every call: a statement compiled once.
        self._phone_owners = Prepared(
            select(CustomerPhone.customer_id).where(CustomerPhone.e164 == bindparam("e164"))
            .distinct(), self.units.dialect_for_units)

    def close(self) -> None:
        self.units.close()

    async def _read(self, unit: Callable[[Connection], R]) -> R:
        return await self.units.transaction(unit, durable=False)

    async def _read_one(self, unit: Callable[[Connection], R]) -> R:
        """A read of one statement (no transaction around it on PostgreSQL)."""
        return await self.units.transaction(unit, durable=False, one_statement=True)

    def card_hash(self, pan: str) -> str:
        return lookup_hash(self._key, "card", pan)

    def id_hash(self, number: str) -> str:
        return lookup_hash(self._key, "cn_resident_id", number.upper())

    # --- identification ------------------------------------------------------------

    @_answering
    async def identify(self, by: IdentifyBy, keys: str, call_id: str = "") -> Identified | NotIdentified:
        result = await self._identify(by, keys)
        customer_id = result.customer_id if isinstance(result, Identified) else None
        outcome = "identified" if isinstance(result, Identified) else result.reason
        await self.audit("identify", customer_id, call_id, via=by, outcome=outcome)
        return result

    async def _identify(self, by: IdentifyBy, keys: str) -> Identified | NotIdentified:
        return await self._read_one(lambda conn: self._identify_in(conn, by, keys))

    def _identify_in(self, conn: Connection, by: IdentifyBy, keys: str) -> Identified | NotIdentified:
        if by == "card":
            checked = check_card(keys)
            if not checked.ok:
                return NotIdentified("invalid", checked.reason)
            row = conn.execute(
                select(Card.customer_id, Card.status, Card.loss_expires_at, Customer.status)
                .join(Customer, Customer.id == Card.customer_id)
                .where(Card.pan_hash == self.card_hash(checked.value))
            ).first()
            if row is None:
                return NotIdentified("unknown", "no such card")
            card_status = effective_card_status(row[1], row[2], self.clock.now())
            if row[3] != "active" or card_status == "closed":
                return NotIdentified("closed", "the card or customer is closed")
            if card_status != "active":
                return NotIdentified("blocked", f"the card is {card_status}")
            return Identified(row[0], "card", mask_card(checked.value))
        if by == "resident_id":
            checked = check_resident_id(keys)
            if not checked.ok:
                return NotIdentified("invalid", checked.reason)
            id_row = conn.execute(
                select(IdDocument.customer_id, Customer.status)
                .join(Customer, Customer.id == IdDocument.customer_id)
                .where(IdDocument.number_hash == self.id_hash(checked.value))
            ).first()
            if id_row is None:
                return NotIdentified("unknown", "no such ID")
            if id_row[1] != "active":
                return NotIdentified("closed", "the customer is closed")
            return Identified(id_row[0], "resident_id", mask_resident_id(checked.value))
        if not keys.isdigit() or not 8 <= len(keys) <= 32:
            return NotIdentified("invalid", "an account number has 8 to 32 digits")
        account = conn.execute(
            select(Account.customer_id, Account.status, Customer.status)
            .join(Customer, Customer.id == Account.customer_id)
            .where(Account.number == keys)
        ).first()
        if account is None or account[0] is None:
            return NotIdentified("unknown", "no such account")
        if account[2] != "active" or account[1] == "closed":
            return NotIdentified("closed", "the account or customer is closed")
        if account[1] != "active":
            return NotIdentified("blocked", f"the account is {account[1]}")
        return Identified(account[0], "account", mask_account(keys))

    @_answering
    async def caller_hint(self, caller: str | None) -> int | None:
        """The customer whose registered phone is calling, if exactly one: a hint, not proof."""
        e164 = normalise_phone(caller)
        if e164 is None:
            return None
        ids = await self._read_one(lambda conn: self._phone_owners.run(conn, {"e164": e164}).fetchmany(2))
        return int(ids[0][0]) if len(ids) == 1 else None

    # --- the phone PIN -------------------------------------------------------------------

    @_answering
    async def authenticate(self, customer_id: int, pin: str, call_id: str = "") -> AuthResult:
        row = await self._read_one(lambda conn: conn.execute(
            select(PhoneCredential.pin_hash, PhoneCredential.locked_at)
            .where(PhoneCredential.customer_id == customer_id)
        ).first())
        if row is None:
            await self.audit("pin_no_credential", customer_id, call_id)
            return AuthResult("no_pin")
        if row.locked_at is not None:
            await self.audit("pin_while_locked", customer_id, call_id)
            return AuthResult("locked")
        # The slow hash runs outside any transaction, so no lock is held meanwhile;
        # the counter update below is one atomic statement either way.
        right = verify_pin(pin, row.pin_hash)
        limit = self.settings.pin_max_attempts
        now = naive_utc(self.clock.now())
        async with self.engine.begin() as conn:
            if right:
                reset = await conn.execute(
                    update(PhoneCredential)
                    .where(PhoneCredential.customer_id == customer_id,
                           PhoneCredential.locked_at.is_(None))
                    .values(failed_attempts=0)
                )
                if reset.rowcount != 1:
                    await self._audit(conn, "pin_while_locked", customer_id, call_id)
                    return AuthResult("locked")
                await self._audit(conn, "pin_ok", customer_id, call_id)
                return AuthResult("ok")
            counted = (await conn.execute(
                update(PhoneCredential)
                .where(PhoneCredential.customer_id == customer_id)
                .values(
                    failed_attempts=PhoneCredential.failed_attempts + 1,
                    locked_at=func.coalesce(
                        PhoneCredential.locked_at,
                        # becomes locked on the attempt that reaches the limit
                        _lock_time_if(PhoneCredential.failed_attempts + 1 >= limit, now),
                    ),
                )
                .returning(PhoneCredential.failed_attempts, PhoneCredential.locked_at)
            )).one()
            if counted.locked_at is not None:
                await self._audit(conn, "pin_wrong", customer_id, call_id, attempts=counted.failed_attempts)
                await self._audit(conn, "phone_banking_locked", customer_id, call_id)
                return AuthResult("locked")
            await self._audit(conn, "pin_wrong", customer_id, call_id, attempts=counted.failed_attempts)
            return AuthResult("wrong", max(limit - counted.failed_attempts, 0))

    async def unlock(self, customer_number: str, operator: str) -> bool:
        async with self.engine.begin() as conn:
            customer_id = (await conn.execute(
                select(Customer.id).where(Customer.number == customer_number))).scalar_one_or_none()
            if customer_id is None:
                return False
            done = await conn.execute(
                update(PhoneCredential).where(PhoneCredential.customer_id == customer_id)
                .values(failed_attempts=0, locked_at=None)
            )
            await self._audit(conn, "phone_banking_unlocked", customer_id, "", operator=operator)
            return bool(done.rowcount)

    # --- the single customer view ------------------------------------------------------

    @_answering
    async def customer_view(self, customer_id: int) -> CustomerView:
        def unit(conn: Connection) -> tuple[Any, ...]:
            customer = conn.execute(
                select(Customer.number, Customer.name, Customer.segment, Customer.language,
                       Customer.preferences)
                .where(Customer.id == customer_id)).one()
            accounts = conn.execute(
                select(Account.number, Account.kind, Account.currency, Account.status)
                .where(Account.customer_id == customer_id).order_by(Account.id)).all()
            cards = conn.execute(
                select(Card.kind, Card.masked, Card.last4, Card.status, Card.loss_expires_at)
                .where(Card.customer_id == customer_id).order_by(Card.id)).all()
            payees = conn.execute(
                select(Payee.position, Payee.name, Payee.account_masked, Payee.bank)
                .where(Payee.customer_id == customer_id).order_by(Payee.position)).all()
            overdue = conn.execute(
                select(func.max(Loan.overdue_days)).where(Loan.customer_id == customer_id)
            ).scalar_one_or_none() or 0
            return customer, accounts, cards, payees, overdue

        customer, accounts, cards, payees, overdue = await self._read(unit)
        now = self.clock.now()
        card_list = [
            {"kind": c.kind, "masked": c.masked, "last4": c.last4,
             "status": effective_card_status(c.status, c.loss_expires_at, now)}
            for c in cards
        ]
        return CustomerView(
            number=customer.number, name=customer.name, segment=customer.segment,
            language=customer.language,
            has_credit_card=any(c["kind"] == "credit" and c["status"] == "active" for c in card_list),
            overdue_days=int(overdue),
            accounts=[{"masked": mask_account(a.number), "kind": a.kind, "currency": a.currency,
                       "status": a.status} for a in accounts],
            cards=card_list,
            payees=[{"position": p.position, "name": p.name, "account": p.account_masked,
                     "bank": p.bank} for p in payees],
            preferences=dict(customer.preferences or {}),
        )

    # --- audit ----------------------------------------------------------------------------

    async def audit(self, event: str, customer_id: int | None, call_id: str, **detail: Any) -> None:
        async with self.engine.begin() as conn:
            await self._audit(conn, event, customer_id, call_id, **detail)

    async def _audit(self, conn: Any, event: str, customer_id: int | None, call_id: str,
                     **detail: Any) -> None:
        await conn.execute(insert(AuditEntry).values(
            at=naive_utc(self.clock.now()), customer_id=customer_id, event=event,
            call_id=call_id, detail=detail))
        log.info("audit %s customer=%s call=%s %s", event, customer_id, call_id, detail)


def _lock_time_if(condition: Any, now: dt.datetime) -> Any:
    from sqlalchemy import case, literal

    return case((condition, literal(now)), else_=None)
