"""`ivr bank seed`: a believable demo bank to try calls against.

Twelve customers across segments, languages and products: VIP and private
banking, credit cards, an overdue loan, an unused e-banking certificate, a locked
PIN, a blocked card, a closed customer, a frozen account, registered payees.
Card and ID numbers are made up but pass their checksums; the seed prints them,
with the PINs, because they exist only for trying calls.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ivr.bank.models import (
    Account,
    Base,
    Biller,
    Card,
    Customer,
    CustomerPhone,
    Fund,
    FxRate,
    IdDocument,
    Limit,
    Loan,
    Payee,
    PhoneCredential,
)
from ivr.bank.secrets import hash_pin, lookup_hash, mask_account, mask_card, mask_resident_id
from ivr.config import Settings
from ivr.engine.validators import luhn_ok, resident_id_check_char

CLEARING_ACCOUNT = "9990000000000001"


def make_card_number(prefix: str, body: int) -> str:
    """A 16-digit number under `prefix` whose Luhn check digit is right."""
    partial = f"{prefix}{body:0{15 - len(prefix)}d}"
    for check in "0123456789":
        if luhn_ok(partial + check):
            return partial + check
    raise AssertionError("unreachable: one check digit always fits")


def make_resident_id(region: str, born: dt.date, sequence: int) -> str:
    body = f"{region}{born:%Y%m%d}{sequence:03d}"
    return body + resident_id_check_char(body)


@dataclass
class DemoCustomer:
    number: str
    name: str
    segment: str
    language: str
    phone: str
    resident_id: str
    account: str
    balance: int  # fen
    card: str
    pin: str
    note: str
    status: str = "active"
    card_kind: str = "debit"
    card_status: str = "active"
    account_status: str = "active"
    credit_card: str | None = None
    statement_balance: int = 0
    overdue_days: int | None = None
    locked: bool = False
    preferences: dict[str, Any] = field(default_factory=dict)
    payees: list[tuple[str, str]] = field(default_factory=list)  # (name, account number)


def demo_customers() -> list[DemoCustomer]:
    def c(i: int, name: str, segment: str, language: str, balance_yuan: float, pin: str, note: str,
          region: str, born: dt.date, **extra: Any) -> DemoCustomer:
        return DemoCustomer(
            number=f"C{i:04d}", name=name, segment=segment, language=language,
            phone=f"+86138000000{i:02d}", resident_id=make_resident_id(region, born, 100 + i),
            account=f"62170000{i:08d}", balance=round(balance_yuan * 100),
            card=make_card_number("622202", i * 7919), pin=pin, note=note, **extra,
        )

    return [
        c(1, "张伟", "standard", "zh-CN", 12_345.67, "135790", "two payees", "110105",
          dt.date(1985, 3, 14),
          payees=[("李娜", "6217000000000002"), ("王芳 (other bank)", CLEARING_ACCOUNT)]),
        c(2, "李娜", "vip", "zh-CN", 286_000.00, "246813", "VIP with a credit card", "310101",
          dt.date(1979, 11, 2), credit_card=make_card_number("625807", 2), statement_balance=320_050,
          payees=[("张伟", "6217000000000001")]),
        c(3, "Wang Fang", "private", "en-US", 5_000_000.00, "975312", "private banking, English",
          "440305", dt.date(1968, 6, 30), payees=[("Li Na", "6217000000000002")]),
        c(4, "刘洋", "standard", "zh-CN", 850.20, "482916", "loan 45 days overdue", "320102",
          dt.date(1990, 1, 5), overdue_days=45),
        c(5, "陈静", "standard", "zh-CN", 9_999.00, "731904", "phone banking locked", "330106",
          dt.date(1988, 8, 8), locked=True),
        c(6, "杨帆", "standard", "zh-CN", 23_400.00, "582039", "credit card statement due", "420106",
          dt.date(1993, 4, 21), credit_card=make_card_number("625807", 6), statement_balance=1_268_800),
        c(7, "赵磊", "standard", "zh-CN", 41_000.00, "619274", "e-banking certificate never downloaded",
          "510104", dt.date(1982, 12, 12), preferences={"ebank_certificate_unused": True}),
        c(8, "黄敏", "standard", "zh-CN", 0.00, "804152", "closed customer", "610103",
          dt.date(1975, 7, 7), status="closed"),
        c(9, "周杰", "standard", "zh-CN", 3_300.00, "390517", "card blocked", "350102",
          dt.date(1995, 2, 28), card_status="blocked"),
        c(10, "Wu Ting", "standard", "en-US", 7_700.00, "268035", "English speaker", "440106",
          dt.date(1999, 9, 9), payees=[("Zhang Wei", "6217000000000001")]),
        c(11, "徐强", "vip", "zh-CN", 150_000.00, "914726", "current account frozen", "210102",
          dt.date(1970, 10, 1), account_status="frozen"),
        c(12, "孙丽", "standard", "zh-CN", 12.30, "507381", "balance 12.30 (transfers decline)",
          "120101", dt.date(2001, 5, 17), payees=[("张伟", "6217000000000001")]),
    ]


class AlreadySeeded(Exception):
    pass


async def seed(engine: AsyncEngine, settings: Settings, reset: bool = False) -> list[DemoCustomer]:
    """Create the demo bank; refuses to touch a database that has customers unless `reset`."""
    async with engine.begin() as conn:
        count = (await conn.execute(select(func.count()).select_from(Customer))).scalar_one()
        if count and not reset:
            raise AlreadySeeded(f"the database already has {count} customers; "
                                "use --reset to replace everything with the demo bank")
        if reset:
            await _empty_every_table(conn)
        customers = demo_customers()
        await _seed(conn, settings, customers)
    return customers


async def _empty_every_table(conn: AsyncConnection) -> None:
    tables = Base.metadata.sorted_tables
    if conn.dialect.name == "postgresql":
        # Restart the ids too, so a reseeded demo bank is the same bank again.
        names = ", ".join(t.name for t in tables)
        await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        return
    for table in reversed(tables):
        await conn.execute(table.delete())


async def _seed(conn: AsyncConnection, settings: Settings, customers: list[DemoCustomer]) -> None:
    key = settings.lookup_key.get_secret_value()

    async def account(number: str, kind: str, customer_id: int | None = None, balance: int = 0,
                      status: str = "active", overdraft: int = 0) -> int:
        return int((await conn.execute(insert(Account).values(
            customer_id=customer_id, number=number, kind=kind, currency="CNY", balance=balance,
            overdraft=overdraft, status=status).returning(Account.id))).scalar_one())

    clearing = await account(CLEARING_ACCOUNT, "internal")
    for code, name, number in (("EL01", "State Grid electricity", "9990000000000101"),
                               ("WA01", "City water", "9990000000000102"),
                               ("MO01", "China Mobile", "9990000000000103")):
        await conn.execute(insert(Biller).values(code=code, name=name,
                                                 account_id=await account(number, "internal")))
    fund_account = await account("9990000000000201", "internal")
    await conn.execute(insert(Fund).values(code="000001", name="稳健增长混合", nav=12_345,
                                           settlement_account_id=fund_account))
    await conn.execute(insert(FxRate), [
        {"currency": "USD", "buy": 71_502, "sell": 72_105},
        {"currency": "EUR", "buy": 77_810, "sell": 78_630},
        {"currency": "HKD", "buy": 9_151, "sell": 9_228},
        {"currency": "JPY", "buy": 472, "sell": 481},
    ])
    # Customers' own money comes from the clearing account, so all balances sum to zero.
    ids: dict[str, int] = {}
    accounts: dict[str, int] = {CLEARING_ACCOUNT: clearing}
    for demo in customers:
        customer_id = int((await conn.execute(insert(Customer).values(
            number=demo.number, name=demo.name, segment=demo.segment, language=demo.language,
            status=demo.status, preferences=demo.preferences).returning(Customer.id))).scalar_one())
        ids[demo.number] = customer_id
        await conn.execute(insert(CustomerPhone).values(customer_id=customer_id, e164=demo.phone))
        await conn.execute(insert(IdDocument).values(
            customer_id=customer_id, kind="cn_resident_id",
            number_hash=lookup_hash(key, "cn_resident_id", demo.resident_id),
            masked=mask_resident_id(demo.resident_id)))
        current = await account(demo.account, "current", customer_id, demo.balance,
                                "closed" if demo.status == "closed" else demo.account_status)
        accounts[demo.account] = current
        await account(f"6218{demo.account[4:]}", "savings", customer_id, demo.balance // 2)
        await conn.execute(insert(Card).values(
            customer_id=customer_id, account_id=current, kind="debit",
            pan_hash=lookup_hash(key, "card", demo.card), last4=demo.card[-4:],
            masked=mask_card(demo.card), status=demo.card_status))
        if demo.credit_card:
            credit_limit = 5_000_000
            credit_account = await account(f"6259{demo.account[4:]}", "credit", customer_id,
                                           -demo.statement_balance, overdraft=credit_limit)
            await conn.execute(insert(Card).values(
                customer_id=customer_id, account_id=credit_account, kind="credit",
                pan_hash=lookup_hash(key, "card", demo.credit_card), last4=demo.credit_card[-4:],
                masked=mask_card(demo.credit_card), credit_limit=credit_limit,
                statement_balance=demo.statement_balance))
        if demo.overdue_days is not None:
            await conn.execute(insert(Loan).values(customer_id=customer_id, principal=20_000_000,
                                                   outstanding=15_600_000, overdue_days=demo.overdue_days))
        await conn.execute(insert(PhoneCredential).values(
            customer_id=customer_id, pin_hash=hash_pin(demo.pin, settings.pin_hash_cost),
            failed_attempts=settings.pin_max_attempts if demo.locked else 0,
            locked_at=dt.datetime(2026, 11, 1, 9, 30) if demo.locked else None))
        if demo.segment in ("vip", "private"):
            await conn.execute(insert(Limit).values(customer_id=customer_id,
                                                    per_transaction=20_000_000, daily=50_000_000))
    # Balance the opening deposits against the clearing account (double entry).
    total = sum(d.balance + d.balance // 2 for d in customers) - sum(
        d.statement_balance for d in customers)
    from sqlalchemy import update

    await conn.execute(update(Account).where(Account.id == clearing).values(balance=-total))
    for demo in customers:
        for position, (name, number) in enumerate(demo.payees, start=1):
            await conn.execute(insert(Payee).values(
                customer_id=ids[demo.number], position=position, name=name,
                account_id=accounts[number], account_masked=mask_account(number),
                bank="" if number != CLEARING_ACCOUNT else "other bank"))
