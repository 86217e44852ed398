"""Calls between webhooks: state per CallSid and the TwiML served for each step.

Any worker can serve any webhook. A webhook answers one step: the worker claims
the step (one conditional UPDATE), runs the call on, and in one transaction stores
the TwiML of the next step and moves the call to it, only if the call is still at
the step it claimed. A repeated webhook finds the TwiML stored for its step and
gets it again; nothing runs twice.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.bank.models import TwilioCall, TwilioStep
from ivr.clock import naive_utc

#: a claim older than this is taken to be from a worker that died
CLAIM_EXPIRES = dt.timedelta(seconds=20)


@dataclass(frozen=True)
class StoredCall:
    step: int
    state: dict[str, Any]
    finished: bool


class CallStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def served(self, call_sid: str, step: int) -> str | None:
        async with self.engine.connect() as conn:
            found = await conn.execute(select(TwilioStep.twiml).where(
                TwilioStep.call_sid == call_sid, TwilioStep.step == step))
            twiml: str | None = found.scalar_one_or_none()
        return twiml

    async def load(self, call_sid: str) -> StoredCall | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(
                select(TwilioCall.step, TwilioCall.state, TwilioCall.finished)
                .where(TwilioCall.call_sid == call_sid))).first()
        return None if row is None else StoredCall(int(row[0]), dict(row[1]), bool(row[2]))

    async def begin(self, call_sid: str, state: dict[str, Any], finished: bool, twiml: str,
                    now: dt.datetime) -> str:
        """Store a new call at step 1 with its first TwiML; if another worker stored it
        first, return theirs."""
        at = naive_utc(now)
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(TwilioCall).values(
                    call_sid=call_sid, step=1, state=state, finished=finished, created_at=at,
                    updated_at=at))
                await conn.execute(insert(TwilioStep).values(call_sid=call_sid, step=1, twiml=twiml))
        except IntegrityError:
            stored = await self.served(call_sid, 1)
            if stored is None:
                raise
            return stored
        return twiml

    async def claim(self, call_sid: str, step: int, now: dt.datetime) -> bool:
        """Take `step` of the call for this worker; False if the call is not at that step
        or another worker is serving it."""
        at = naive_utc(now)
        async with self.engine.begin() as conn:
            done = await conn.execute(
                update(TwilioCall)
                .where(TwilioCall.call_sid == call_sid, TwilioCall.step == step,
                       TwilioCall.finished.is_(False),
                       or_(TwilioCall.claimed_step.is_(None), TwilioCall.claimed_step != step,
                           and_(TwilioCall.claimed_step == step,
                                TwilioCall.claimed_at < at - CLAIM_EXPIRES)))
                .values(claimed_step=step, claimed_at=at))
        return done.rowcount == 1

    async def release(self, call_sid: str, step: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(update(TwilioCall)
                               .where(TwilioCall.call_sid == call_sid,
                                      TwilioCall.claimed_step == step)
                               .values(claimed_step=None, claimed_at=None))

    async def advance(self, call_sid: str, step: int, state: dict[str, Any], finished: bool,
                      twiml: str, now: dt.datetime) -> bool:
        """Move the call from `step` to the next with its TwiML; False if it had moved."""
        try:
            async with self.engine.begin() as conn:
                moved = await conn.execute(
                    update(TwilioCall)
                    .where(TwilioCall.call_sid == call_sid, TwilioCall.step == step)
                    .values(step=step + 1, state=state, finished=finished, claimed_step=None,
                            claimed_at=None, updated_at=naive_utc(now)))
                if moved.rowcount != 1:
                    await conn.rollback()
                    return False
                await conn.execute(insert(TwilioStep).values(
                    call_sid=call_sid, step=step + 1, twiml=twiml))
        except IntegrityError:
            return False
        return True

    async def finish(self, call_sid: str, step: int, state: dict[str, Any], now: dt.datetime) -> bool:
        """The caller hung up while the call waited at `step`."""
        async with self.engine.begin() as conn:
            done = await conn.execute(
                update(TwilioCall)
                .where(TwilioCall.call_sid == call_sid, TwilioCall.step == step,
                       TwilioCall.finished.is_(False))
                .values(finished=True, state=state, claimed_step=None, claimed_at=None,
                        updated_at=naive_utc(now)))
        return done.rowcount == 1
