"""Calls between webhooks: state per CallSid and the TwiML served for each step.

Any worker can serve any webhook. A webhook answers one step: the worker claims
the step (one conditional UPDATE, which also reads the state), runs the call on,
and in one transaction stores the TwiML of the next step and moves the call to it,
only if the call is still at the step it claimed. A repeated webhook finds the
TwiML stored for its step and gets it again; nothing runs twice.

Each operation is one unit of work on prepared statements (`Units`, shared with
the ledger), committed without syncing to disk: calls in progress do not outlive
a power cut (money does: the ledger's units are synced). On PostgreSQL each
operation is a single statement (the move and its TwiML in one, through a
data-modifying WITH), run without BEGIN and COMMIT: one round trip to the server.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Integer, Text, bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.bank.models import TwilioCall, TwilioStep
from ivr.bank.prepared import Prepared
from ivr.bank.units import Units
from ivr.clock import naive_utc

#: a claim older than this is taken to be from a worker that died (longer than any
#: turn: a switch timeout and its reversal, an SMS with its retries)
CLAIM_EXPIRES = dt.timedelta(seconds=90)


@dataclass(frozen=True)
class StoredCall:
    step: int
    state: dict[str, Any]
    finished: bool
    #: when this worker claimed the step (its mark on the claim), if it did
    claimed_at: dt.datetime | None = None


_SERVED = select(TwilioStep.twiml).where(TwilioStep.call_sid == bindparam("sid"),
                                         TwilioStep.step == bindparam("step"))
_LOAD = select(TwilioCall.step, TwilioCall.state, TwilioCall.finished).where(
    TwilioCall.call_sid == bindparam("sid"))
_NEW_CALL = insert(TwilioCall).values(
    call_sid=bindparam("sid"), step=1, state=bindparam("state"), finished=bindparam("finished"),
    claimed_step=None, claimed_at=None, created_at=bindparam("at"), updated_at=bindparam("at"))
_NEW_STEP = insert(TwilioStep).values(call_sid=bindparam("sid"), step=bindparam("step"),
                                      twiml=bindparam("twiml"))
_CLAIM = (
    update(TwilioCall)
    .where(TwilioCall.call_sid == bindparam("sid"), TwilioCall.step == bindparam("step"),
           TwilioCall.finished.is_(False),
           or_(TwilioCall.claimed_step.is_(None), TwilioCall.claimed_step != bindparam("step"),
               TwilioCall.claimed_at < bindparam("stale")))
    .values(claimed_step=bindparam("step"), claimed_at=bindparam("at"))
    .returning(TwilioCall.state)
)
_RELEASE = (update(TwilioCall)
            .where(TwilioCall.call_sid == bindparam("sid"),
                   TwilioCall.claimed_step == bindparam("step"))
            .values(claimed_step=None, claimed_at=None))
# Only the worker holding the claim moves the call, and not once it has ended.
_MOVE = (update(TwilioCall)
         .where(TwilioCall.call_sid == bindparam("sid"), TwilioCall.step == bindparam("step"),
                TwilioCall.claimed_step == bindparam("step"),
                TwilioCall.claimed_at == bindparam("mark"), TwilioCall.finished.is_(False))
         .values(step=bindparam("step") + 1, state=bindparam("state"),
                 finished=bindparam("finished"), claimed_step=None, claimed_at=None,
                 updated_at=bindparam("at")))
# The same move for a step nobody claimed: a turn that touched neither the bank nor
# the switch, computed from the state this worker left; it must not overtake a
# worker that claimed the step, nor a call that ended meanwhile.
_MOVE_UNCLAIMED = (
    update(TwilioCall)
    .where(TwilioCall.call_sid == bindparam("sid"), TwilioCall.step == bindparam("step"),
           TwilioCall.finished.is_(False),
           or_(TwilioCall.claimed_step.is_(None), TwilioCall.claimed_step != bindparam("step"),
               TwilioCall.claimed_at < bindparam("stale")))
    .values(step=bindparam("step") + 1, state=bindparam("state"),
            finished=bindparam("finished"), claimed_step=None, claimed_at=None,
            updated_at=bindparam("at"))
)


def _and_step(write: Any, step: str) -> Any:
    """On PostgreSQL: `write` (a new call, or a move) and the TwiML of step `:{step}` in
    one statement; the step is written only if the call's row was."""
    call = write.returning(TwilioCall.call_sid).cte("call")
    return insert(TwilioStep).from_select(
        ["call_sid", "step", "twiml"],
        select(call.c.call_sid, bindparam(step, type_=Integer), bindparam("twiml", type_=Text)))


_FINISH = (update(TwilioCall)
           .where(TwilioCall.call_sid == bindparam("sid"), TwilioCall.step == bindparam("step"),
                  TwilioCall.finished.is_(False))
           .values(finished=True, state=bindparam("state"), claimed_step=None, claimed_at=None,
                   updated_at=bindparam("at")))


def _json(value: Any) -> dict[str, Any]:
    return dict(json.loads(value) if isinstance(value, str | bytes) else value)


class _Moved(Exception):
    """The call was no longer at the step (another worker moved it)."""


class CallStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.units = Units.shared(engine)
        dialect = self.units.dialect_for_units
        self._served, self._load = Prepared(_SERVED, dialect), Prepared(_LOAD, dialect)
        self._new_call, self._new_step = Prepared(_NEW_CALL, dialect), Prepared(_NEW_STEP, dialect)
        self._claim, self._release = Prepared(_CLAIM, dialect), Prepared(_RELEASE, dialect)
        self._move, self._finish = Prepared(_MOVE, dialect), Prepared(_FINISH, dialect)
        self._move_unclaimed = Prepared(_MOVE_UNCLAIMED, dialect)
        #: one statement for the two of `begin` and of `advance` (PostgreSQL)
        self._combined = dialect.name == "postgresql"
        if self._combined:
            self._new_call_and_step = Prepared(_and_step(_NEW_CALL, "step"), dialect)
            self._move_and_step = Prepared(_and_step(_MOVE, "next"), dialect)
            self._move_unclaimed_and_step = Prepared(_and_step(_MOVE_UNCLAIMED, "next"), dialect)

    def close(self) -> None:
        self.units.close()

    async def served(self, call_sid: str, step: int) -> str | None:
        """The TwiML served for `step` of the call, if it was."""
        def unit(conn: Connection) -> str | None:
            found = self._served.one_value(conn, {"sid": call_sid, "step": step})
            return None if found is None else str(found)

        return await self.units.transaction(unit, durable=False, one_statement=True)

    async def load(self, call_sid: str) -> StoredCall | None:
        def unit(conn: Connection) -> StoredCall | None:
            row = self._load.first(conn, {"sid": call_sid})
            return None if row is None else StoredCall(int(row[0]), _json(row[1]), bool(row[2]))

        return await self.units.transaction(unit, durable=False, one_statement=True)

    async def begin(self, call_sid: str, state: dict[str, Any], finished: bool, twiml: str,
                    now: dt.datetime) -> tuple[str, bool]:
        """Store a new call at step 1 with its first TwiML: (the TwiML, True); if another
        worker stored it first, (theirs, False)."""
        at = naive_utc(now)

        values = {"sid": call_sid, "state": state, "finished": finished, "at": at, "step": 1,
                  "twiml": twiml}

        def unit(conn: Connection) -> None:
            if self._combined:
                self._new_call_and_step.run(conn, values)
                return
            self._new_call.run(conn, values)
            self._new_step.run(conn, values)

        try:
            await self.units.transaction(unit, durable=False, one_statement=self._combined)
        except IntegrityError:
            stored = await self.served(call_sid, 1)
            if stored is None:
                raise
            return stored, False
        return twiml, True

    async def claim(self, call_sid: str, step: int, now: dt.datetime) -> StoredCall | None:
        """Take `step` of the call for this worker and read its state; None if the call
        is not at that step, is over, or another worker is serving the step."""
        at = naive_utc(now)
        values = {"sid": call_sid, "step": step, "at": at, "stale": at - CLAIM_EXPIRES}

        def unit(conn: Connection) -> StoredCall | None:
            state = self._claim.one_value(conn, values)
            return None if state is None else StoredCall(step, _json(state), False, at)

        return await self.units.transaction(unit, durable=False, one_statement=True)

    async def release(self, call_sid: str, step: int) -> None:
        await self.units.transaction(
            lambda conn: self._release.run(conn, {"sid": call_sid, "step": step}), durable=False,
            one_statement=True)

    async def advance(self, call_sid: str, step: int, state: dict[str, Any], finished: bool,
                      twiml: str, now: dt.datetime, claimed_at: dt.datetime | None) -> bool:
        """Move the call from `step` to the next with its TwiML. With `claimed_at` (from
        `claim`), only while this worker's claim holds; without, only if nobody holds
        one. False if the call had moved, ended, or the claim was lost."""
        at = naive_utc(now)
        values = {"sid": call_sid, "step": step, "state": state, "finished": finished, "at": at,
                  "stale": at - CLAIM_EXPIRES, "mark": claimed_at, "next": step + 1, "twiml": twiml}

        def unit(conn: Connection) -> None:
            if self._combined:
                both = self._move_and_step if claimed_at is not None else self._move_unclaimed_and_step
                if both.run(conn, values).rowcount != 1:
                    raise _Moved  # the call was not moved, so no step was written
                return
            move = self._move if claimed_at is not None else self._move_unclaimed
            if move.run(conn, values).rowcount != 1:
                raise _Moved  # rolls the unit back
            self._new_step.run(conn, {"sid": call_sid, "step": step + 1, "twiml": twiml})

        try:
            await self.units.transaction(unit, durable=False, one_statement=self._combined)
        except (_Moved, IntegrityError):
            return False
        return True

    async def finish(self, call_sid: str, step: int, state: dict[str, Any], now: dt.datetime) -> bool:
        """The caller hung up while the call waited at `step`."""
        def unit(conn: Connection) -> bool:
            done = self._finish.run(conn, {"sid": call_sid, "step": step, "state": state,
                                           "at": naive_utc(now)})
            return bool(done.rowcount == 1)

        return await self.units.transaction(unit, durable=False, one_statement=True)
