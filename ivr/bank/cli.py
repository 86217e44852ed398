"""`ivr db ...` and `ivr bank ...`: set up the database and look after the bank."""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ivr.bank.db import DatabaseUrlError, make_engine
from ivr.bank.migrate import upgrade
from ivr.bank.models import Account, Card, Customer, Payee, PhoneCredential
from ivr.bank.runtime import BankNotReady, check_ready
from ivr.bank.secrets import mask_account
from ivr.bank.seed import AlreadySeeded, DemoCustomer, seed
from ivr.bank.service import Bank
from ivr.config import Settings, get_settings
from ivr.switch.ledger import effective_card_status


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


T = TypeVar("T")


def with_bank(work: Callable[[AsyncEngine, Settings], Awaitable[T]],
               need_customers: bool = True) -> T:
    """Open the database at DATABASE_URL, check it is set up, run `work`, close it.
    A database that is missing or not set up ends the command with what to run."""
    settings = get_settings()

    async def run() -> T:
        engine = make_engine(settings.database_url)
        try:
            await check_ready(engine, settings.database_url, need_customers=need_customers)
            return await work(engine, settings)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except (BankNotReady, DatabaseUrlError) as exc:
        _fail(str(exc))
        raise AssertionError("unreachable") from exc


@click.group()
def db() -> None:
    """The bank's database (DATABASE_URL; default sqlite:///ivr.db)."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the bank's tables to the newest schema."""
    settings = get_settings()
    try:
        upgrade(settings.database_url)
    except DatabaseUrlError as exc:
        _fail(str(exc))
    except Exception as exc:  # Alembic and drivers raise many kinds; say which and stop
        _fail(f"could not upgrade {settings.database_url}: {exc}")
    click.echo(f"{settings.database_url} is at the newest schema", err=True)


@click.group()
def bank() -> None:
    """The demo bank and operators' tools (masked output)."""


@bank.command("seed")
@click.option("--reset", is_flag=True, help="Delete everything first and seed again.")
@click.option("--if-empty", is_flag=True, help="Do nothing (and succeed) when customers exist.")
def bank_seed(reset: bool, if_empty: bool) -> None:
    """Create the demo bank and print the identities and PINs to try calls with."""

    async def run(engine: AsyncEngine, settings: Settings) -> list[DemoCustomer] | None:
        try:
            return await seed(engine, settings, reset=reset)
        except AlreadySeeded as exc:
            if if_empty:
                return None
            raise BankNotReady(str(exc)) from None

    customers = with_bank(run, need_customers=False)
    if customers is None:
        click.echo("the bank already has customers; nothing seeded", err=True)
        return
    columns = ("customer", "name", "segment", "lang", "phone", "card", "resident ID", "account",
               "PIN", "notes")
    rows = [(c.number, c.name, c.segment, c.language, c.phone, c.card, c.resident_id, c.account,
             c.pin, c.note) for c in customers]
    title = "Demo bank: identities for trying calls (made up; every number passes its check)"
    if not sys.stdout.isatty():
        # Piped or captured: whole numbers, one customer a line, tab-separated.
        click.echo(f"# {title}")
        click.echo("\t".join(columns))
        for row in rows:
            click.echo("\t".join(row))
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


@bank.command("show")
@click.argument("customer", required=False)
def bank_show(customer: str | None) -> None:
    """List customers, or show one (CUSTOMER is a number such as C0001). Masked."""

    async def run(engine: AsyncEngine, settings: Settings) -> None:
        console = Console()
        async with engine.connect() as conn:
            if customer is None:
                rows = (await conn.execute(
                    select(Customer.number, Customer.name, Customer.segment, Customer.language,
                           Customer.status, PhoneCredential.locked_at)
                    .outerjoin(PhoneCredential, PhoneCredential.customer_id == Customer.id)
                    .order_by(Customer.number))).all()
                table = Table(title="Customers")
                for column in ("customer", "name", "segment", "lang", "status", "phone banking"):
                    table.add_column(column)
                for r in rows:
                    table.add_row(r.number, r.name, r.segment, r.language, r.status,
                                  "locked" if r.locked_at else "open")
                console.print(table)
                return
            cid = (await conn.execute(
                select(Customer.id).where(Customer.number == customer))).scalar_one_or_none()
            if cid is None:
                raise BankNotReady(f"no customer {customer}; 'ivr bank show' lists them")
            await _show_one(conn, console, cid)

    with_bank(run)


async def _show_one(conn: AsyncConnection, console: Console, cid: int) -> None:
    who = (await conn.execute(select(Customer).where(Customer.id == cid))).one()
    cred = (await conn.execute(select(PhoneCredential.failed_attempts, PhoneCredential.locked_at)
                               .where(PhoneCredential.customer_id == cid))).first()
    console.print(f"[bold]{who.number}[/bold] {who.name}  segment={who.segment} "
                  f"language={who.language} status={who.status}  phone banking="
                  f"{'locked' if cred and cred.locked_at else 'open'}"
                  f" (wrong PINs: {cred.failed_attempts if cred else '-'})")
    accounts = Table(title="Accounts")
    for column in ("account", "kind", "currency", "balance", "status"):
        accounts.add_column(column)
    for a in (await conn.execute(select(Account).where(Account.customer_id == cid)
                                 .order_by(Account.id))).all():
        accounts.add_row(mask_account(a.number), a.kind, a.currency,
                         f"{a.balance / 100:,.2f}", a.status)
    console.print(accounts)
    cards = Table(title="Cards")
    for column in ("card", "kind", "status", "loss report expires"):
        cards.add_column(column)
    from ivr.clock import SystemClock

    now = SystemClock().now()
    for c in (await conn.execute(select(Card).where(Card.customer_id == cid))).all():
        cards.add_row(c.masked, c.kind, effective_card_status(c.status, c.loss_expires_at, now),
                      str(c.loss_expires_at or ""))
    console.print(cards)
    payees = Table(title="Registered payees")
    for column in ("no.", "name", "account", "bank"):
        payees.add_column(column)
    for p in (await conn.execute(select(Payee).where(Payee.customer_id == cid)
                                 .order_by(Payee.position))).all():
        payees.add_row(str(p.position), p.name, p.account_masked, p.bank)
    console.print(payees)
    count = (await conn.execute(select(func.count()).select_from(Payee)
                                .where(Payee.customer_id == cid))).scalar_one()
    if not count:
        console.print("(no registered payees: phone transfers are not possible)")


@bank.command("unlock")
@click.argument("customer")
@click.option("--operator", default=None, help="Who unlocks, for the audit log (default: you).")
def bank_unlock(customer: str, operator: str | None) -> None:
    """Unlock phone banking for CUSTOMER after too many wrong PINs (audited)."""
    who = operator or getpass.getuser()

    async def run(engine: AsyncEngine, settings: Settings) -> bool:
        return await Bank(engine, settings).unlock(customer, who)

    if not with_bank(run):
        _fail(f"no customer {customer} with phone banking; 'ivr bank show' lists customers")
    click.echo(f"phone banking unlocked for {customer} (by {who}, audited)")
