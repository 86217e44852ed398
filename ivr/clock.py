"""Time, injected so tests can move it: the bank's business day is Beijing time."""

from __future__ import annotations

import datetime as dt
from typing import Protocol
from zoneinfo import ZoneInfo

BANK_TIMEZONE = ZoneInfo("Asia/Shanghai")


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, timezone-aware."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class FixedClock:
    """A clock that only moves when told to."""

    def __init__(self, at: dt.datetime) -> None:
        self.at = at

    def now(self) -> dt.datetime:
        return self.at

    def advance(self, delta: dt.timedelta) -> None:
        self.at += delta


def business_day(clock: Clock) -> dt.date:
    return clock.now().astimezone(BANK_TIMEZONE).date()


def naive_utc(moment: dt.datetime) -> dt.datetime:
    """How times are stored: UTC without a zone (portable across databases)."""
    return moment.astimezone(dt.UTC).replace(tzinfo=None)
