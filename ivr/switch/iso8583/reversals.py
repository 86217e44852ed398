"""Reversals owed to the switch, written down before they are sent.

The ISO 8583 client puts a reversal here before it first sends it and marks it
acknowledged when the switch answers. A process that starts picks up what an
earlier one left; several processes sending the same reversal is harmless, as the
switch makes reversals idempotent.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.bank.models import SwitchReversal
from ivr.clock import naive_utc

log = logging.getLogger("ivr.switch.iso8583")


class ReversalStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    async def add(self, key: str, message: dict[str, str], reason: str, now: dt.datetime) -> bool:
        """Write the reversal down; False (and an error logged) when the database fails."""
        stmt = self._insert(SwitchReversal).values(
            idempotency_key=key, message=message, reason=reason[:120], queued_at=naive_utc(now),
            attempts=0, acknowledged_at=None,
        ).on_conflict_do_nothing(index_elements=["idempotency_key"])
        try:
            async with self.engine.begin() as conn:
                await conn.execute(stmt)
        except (OSError, SQLAlchemyError) as exc:
            log.error("could not write down the reversal of rrn %s (%s); it is kept in "
                      "memory only", message.get("37"), exc)
            return False
        return True

    async def acknowledged(self, key: str, attempts: int, now: dt.datetime) -> None:
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    update(SwitchReversal).where(SwitchReversal.idempotency_key == key)
                    .values(acknowledged_at=naive_utc(now), attempts=attempts))
        except (OSError, SQLAlchemyError) as exc:
            log.error("could not mark reversal %s acknowledged (%s); it will be sent again "
                      "by the next process, which is harmless", key, exc)

    async def outstanding(self) -> list[tuple[str, dict[str, str], int]] | None:
        """(key, original message, attempts so far) of every unacknowledged reversal;
        None when the database did not answer."""
        try:
            async with self.engine.connect() as conn:
                rows = (await conn.execute(
                    select(SwitchReversal.idempotency_key, SwitchReversal.message,
                           SwitchReversal.attempts)
                    .where(SwitchReversal.acknowledged_at.is_(None))
                    .order_by(SwitchReversal.queued_at))).all()
        except (OSError, SQLAlchemyError) as exc:
            log.error("could not read outstanding reversals: %s", exc)
            return None
        return [(r[0], dict(r[1]), int(r[2])) for r in rows]
