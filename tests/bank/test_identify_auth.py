from __future__ import annotations

import logging

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.bank.models import AuditEntry, Base, PhoneCredential
from ivr.bank.phones import normalise_phone
from ivr.bank.seed import DemoCustomer
from ivr.bank.service import AuthResult, Bank, Identified, NotIdentified
from ivr.config import Settings


@pytest.fixture
def bank(engine: AsyncEngine, settings: Settings) -> Bank:
    return Bank(engine, settings)


async def customer_id(engine: AsyncEngine, number: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(
            text("SELECT id FROM customers WHERE number = :n"), {"n": number})).scalar_one())


async def test_identify_by_card_id_and_account(bank: Bank, demo: dict[str, DemoCustomer],
                                               engine: AsyncEngine) -> None:
    zhang = demo["C0001"]
    cid = await customer_id(engine, "C0001")
    by_card = await bank.identify("card", zhang.card, "call-1")
    assert by_card == Identified(cid, "card", f"{zhang.card[:4]} **** **** {zhang.card[-4:]}")
    by_id = await bank.identify("resident_id", zhang.resident_id.replace("X", "*"), "call-1")
    assert isinstance(by_id, Identified) and by_id.customer_id == cid
    assert by_id.masked == zhang.resident_id[:4] + "*" * 10 + zhang.resident_id[-4:]
    by_account = await bank.identify("account", zhang.account, "call-1")
    assert isinstance(by_account, Identified) and by_account.masked.endswith(zhang.account[-4:])


@pytest.mark.parametrize(
    ("by", "keys", "reason"),
    [
        ("card", "4111111111111112", "invalid"),        # Luhn fails
        ("card", "4111111111111111", "unknown"),        # valid, not ours
        ("resident_id", "110105194912310021", "invalid"),
        ("resident_id", "11010519491231002*", "unknown"),
        ("account", "12", "invalid"),
        ("account", "6217000099999999", "unknown"),
    ],
)
async def test_unknown_and_invalid_are_distinct(bank: Bank, demo: dict[str, DemoCustomer],
                                                by: str, keys: str, reason: str) -> None:
    result = await bank.identify(by, keys)  # type: ignore[arg-type]
    assert isinstance(result, NotIdentified) and result.reason == reason


async def test_closed_and_blocked(bank: Bank, demo: dict[str, DemoCustomer]) -> None:
    closed = await bank.identify("card", demo["C0008"].card)
    assert isinstance(closed, NotIdentified) and closed.reason == "closed"
    blocked_card = await bank.identify("card", demo["C0009"].card)
    assert isinstance(blocked_card, NotIdentified) and blocked_card.reason == "blocked"
    frozen_account = await bank.identify("account", demo["C0011"].account)
    assert isinstance(frozen_account, NotIdentified) and frozen_account.reason == "blocked"
    # The frozen customer can still be identified by ID (e.g. to reach an agent).
    assert isinstance(await bank.identify("resident_id", demo["C0011"].resident_id), Identified)


@pytest.mark.parametrize("form", ["13800000002", "8613800000002", "008613800000002",
                                  "+8613800000002", "+86 138 0000 0002"])
async def test_caller_id_hint_in_every_form(bank: Bank, demo: dict[str, DemoCustomer],
                                            engine: AsyncEngine, form: str) -> None:
    assert await bank.caller_hint(form) == await customer_id(engine, "C0002")


@pytest.mark.parametrize("form", ["", "anonymous", "95558", "+14155550123"])
async def test_caller_id_hint_absent(bank: Bank, demo: dict[str, DemoCustomer], form: str) -> None:
    assert await bank.caller_hint(form) is None


def test_phone_normalisation() -> None:
    assert normalise_phone("01062345678") == "+861062345678"
    assert normalise_phone("8613812345") is None


async def test_right_pin(bank: Bank, demo: dict[str, DemoCustomer], engine: AsyncEngine) -> None:
    cid = await customer_id(engine, "C0001")
    assert await bank.authenticate(cid, demo["C0001"].pin, "call-1") == AuthResult("ok")


async def test_lockout_after_three_wrong_pins(
    bank: Bank, demo: dict[str, DemoCustomer], engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    cid = await customer_id(engine, "C0001")
    right = demo["C0001"].pin
    assert await bank.authenticate(cid, "918273", "call-1") == AuthResult("wrong", 2)
    assert await bank.authenticate(cid, "827364", "call-1") == AuthResult("wrong", 1)
    assert await bank.authenticate(cid, "736455", "call-1") == AuthResult("locked")
    assert await bank.authenticate(cid, right, "call-2") == AuthResult("locked")

    async with engine.connect() as conn:
        events = (await conn.execute(
            select(AuditEntry.event).where(AuditEntry.customer_id == cid).order_by(AuditEntry.id)
        )).scalars().all()
        assert events == ["pin_wrong", "pin_wrong", "pin_wrong", "phone_banking_locked",
                          "pin_while_locked"]
        credential = (await conn.execute(
            select(PhoneCredential.failed_attempts, PhoneCredential.locked_at,
                   PhoneCredential.pin_hash)
            .where(PhoneCredential.customer_id == cid))).one()
        assert credential.failed_attempts == 3 and credential.locked_at is not None
    # The digits tried appear nowhere: not in any table, not in the logs.
    dumped = await dump_database(engine)
    for pin in (right, "918273", "827364", "736455"):
        assert pin not in dumped
        assert pin not in caplog.text
    assert right not in credential.pin_hash


async def test_unlock_lets_the_right_pin_in(bank: Bank, demo: dict[str, DemoCustomer],
                                            engine: AsyncEngine) -> None:
    cid = await customer_id(engine, "C0005")  # seeded locked
    assert await bank.authenticate(cid, demo["C0005"].pin) == AuthResult("locked")
    assert await bank.unlock("C0005", operator="ops-1")
    assert await bank.authenticate(cid, demo["C0005"].pin) == AuthResult("ok")
    assert not await bank.unlock("C9999", operator="ops-1")


async def test_concurrent_wrong_pins_are_all_counted(bank: Bank, demo: dict[str, DemoCustomer],
                                                     engine: AsyncEngine) -> None:
    import asyncio

    cid = await customer_id(engine, "C0002")
    results = await asyncio.gather(*(bank.authenticate(cid, f"00000{i}") for i in range(5)))
    assert sum(r.outcome == "locked" for r in results) >= 3
    assert await bank.authenticate(cid, demo["C0002"].pin) == AuthResult("locked")


async def test_no_full_numbers_stored(demo: dict[str, DemoCustomer], engine: AsyncEngine) -> None:
    dumped = await dump_database(engine)
    for customer in demo.values():
        assert customer.card not in dumped
        assert customer.resident_id not in dumped
        assert customer.pin not in dumped
        if customer.credit_card:
            assert customer.credit_card not in dumped


async def test_customer_view_is_masked(bank: Bank, demo: dict[str, DemoCustomer],
                                       engine: AsyncEngine) -> None:
    view = await bank.customer_view(await customer_id(engine, "C0002"))
    assert view.segment == "vip" and view.has_credit_card
    assert [p["name"] for p in view.payees] == ["张伟"]
    text_view = repr(view.as_variables())
    assert demo["C0002"].card not in text_view and demo["C0002"].account not in text_view
    overdue = await bank.customer_view(await customer_id(engine, "C0004"))
    assert overdue.overdue_days == 45


async def dump_database(engine: AsyncEngine) -> str:
    """Every value in every table, as text: for checking that secrets are absent."""
    parts: list[str] = []
    async with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in (await conn.execute(table.select())).all():
                parts.append(repr(tuple(row)))
    return "\n".join(parts)
