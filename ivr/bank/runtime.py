"""Opening the bank for a process: engine, services, and a clear word if it is not set up."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.bank.db import make_engine
from ivr.bank.service import Bank
from ivr.clock import Clock
from ivr.config import DEV_LOOKUP_KEY, Settings
from ivr.engine.services import Messenger, Services
from ivr.switch.api import Switch
from ivr.switch.iso8583.client import Endpoint, Iso8583Switch
from ivr.switch.iso8583.reversals import ReversalStore
from ivr.switch.ledger import LedgerSwitch

log = logging.getLogger("ivr.bank")


class BankNotReady(Exception):
    """The database is missing, unreachable, not migrated or has no customers."""


async def check_ready(engine: AsyncEngine, url: str, need_customers: bool = True) -> None:
    try:
        async with engine.connect() as conn:
            try:
                await conn.execute(text("SELECT version_num FROM alembic_version"))
            except DBAPIError:
                raise BankNotReady(
                    f"the database {url} has no bank tables yet: run 'ivr db upgrade', "
                    "then 'ivr bank seed' for the demo bank") from None
            if need_customers:
                count = (await conn.execute(text("SELECT count(*) FROM customers"))).scalar_one()
                if not count:
                    raise BankNotReady(f"the database {url} has no customers: "
                                       "run 'ivr bank seed' for the demo bank")
    except (OSError, DBAPIError) as exc:
        raise BankNotReady(f"cannot reach the database {url}: {exc}") from None


def _messenger(settings: Settings) -> Messenger | None:
    """Twilio's REST API for SMS, when the account is configured."""
    if not (settings.twilio_account_sid and settings.twilio_from_number
            and settings.twilio_auth_token.get_secret_value()):
        return None
    from ivr.channels.twilio.outbound import TwilioOutbound

    return TwilioOutbound.from_settings(settings)


@asynccontextmanager
async def open_services(settings: Settings, clock: Clock | None = None) -> AsyncIterator[Services]:
    """The bank and the switch this process uses, closed again on exit."""
    endpoint: Endpoint | None = None
    if settings.switch_url.startswith("iso8583:"):
        try:
            endpoint = Endpoint.parse(settings.switch_url)
        except ValueError as exc:
            raise BankNotReady(str(exc)) from None
    elif settings.switch_url != "embedded":
        raise BankNotReady(f"SWITCH_URL '{settings.switch_url}' is neither 'embedded' (the ledger "
                           "on the bank's database) nor iso8583://HOST:PORT")
    if settings.lookup_key.get_secret_value() == DEV_LOOKUP_KEY:
        log.warning("IVR_LOOKUP_KEY is not set: card and ID numbers are hashed with the "
                    "development key; set a secret key of your own before real customers call")
    engine = make_engine(settings.database_url)
    ledger: LedgerSwitch | None = None
    remote: Iso8583Switch | None = None
    bank: Bank | None = None
    try:
        await check_ready(engine, settings.database_url)
        switch: Switch
        if endpoint is None:
            switch = ledger = LedgerSwitch(engine, settings, clock)
        else:
            switch = remote = Iso8583Switch.at(endpoint, clock, ReversalStore(engine))
            if not await remote.connect():
                log.warning("the switch at %s does not answer yet; requests will wait for it",
                            settings.switch_url)
        bank = Bank(engine, settings, clock)
        yield Services(bank=bank, switch=switch, messenger=_messenger(settings))
    finally:
        if bank is not None:
            bank.close()
        if ledger is not None:
            ledger.close()
        if remote is not None:
            await remote.close()
        await engine.dispose()
