"""Batch stage: which delivery batch a record belongs to, by event time, in Asia/Shanghai.

  daily    batch D (named "YYYY-MM-DD") = [D-1 18:00, D 18:00) local time;
           17:59:59.999999 → D, 18:00:00.000000 → D+1.
  monthly  batch "YYYY-MM" = the calendar month.
  yearly   batch "YYYY"    = the calendar year.

Moments: a naive datetime is Asia/Shanghai wall-clock (what the decode stage produces); an aware one is
converted to Asia/Shanghai first; a date means 00:00 of that day; an ISO string is parsed as one of
those. The machine's own time zone is never consulted. When a batch may be delivered (its window) is the
delivery schedule's concern (hisbridge.delivery.schedule), not this stage's.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, Mapping

from hisbridge.clock import SHANGHAI

DAILY_CUTOFF = time(18, 0)
CADENCES = ("daily", "monthly", "yearly")


class BatchError(ValueError):
    """A record or cadence that cannot be placed in a batch."""


@dataclass(frozen=True, slots=True)
class Period:
    """One batch's production period: [start, end), aware, in Asia/Shanghai."""
    name: str
    cadence: str
    start: datetime          # inclusive
    end: datetime            # exclusive

    def contains(self, moment: datetime | date | str) -> bool:
        return self.start <= local_wall_clock(moment).replace(tzinfo=SHANGHAI) < self.end


def local_wall_clock(moment: datetime | date | str) -> datetime:
    """Naive Asia/Shanghai wall-clock for any accepted moment."""
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment.strip())
        except ValueError:
            raise BatchError(f"{moment!r:.40} is not an ISO date or date-time") from None
    if isinstance(moment, datetime):
        if moment.tzinfo is not None and moment.utcoffset() is not None:
            return moment.astimezone(SHANGHAI).replace(tzinfo=None)
        return moment.replace(tzinfo=None)
    if isinstance(moment, date):
        return datetime.combine(moment, time())
    raise BatchError(f"a batch time must be a datetime, date or ISO string, not {type(moment).__name__}")


def _at(day: date, clock: time = time()) -> datetime:
    return datetime.combine(day, clock, tzinfo=SHANGHAI)


def _period(cadence: str, local: datetime) -> Period:
    if cadence == "daily":
        day = local.date() + timedelta(days=1) if local.time() >= DAILY_CUTOFF else local.date()
        return Period(day.isoformat(), cadence, _at(day - timedelta(days=1), DAILY_CUTOFF), _at(day, DAILY_CUTOFF))
    if cadence == "monthly":
        first = local.date().replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        return Period(f"{first:%Y-%m}", cadence, _at(first), _at(following))
    if cadence == "yearly":
        year = local.year
        return Period(f"{year:04d}", cadence, _at(date(year, 1, 1)), _at(date(year + 1, 1, 1)))
    raise BatchError(f"unknown cadence {cadence!r} (expected one of {', '.join(CADENCES)})")


def period_for(cadence: str, moment: datetime | date | str) -> Period:
    """The batch of `cadence` that contains `moment`."""
    try:
        return _period(cadence, local_wall_clock(moment))
    except (OverflowError, ValueError) as exc:
        if isinstance(exc, BatchError):
            raise
        raise BatchError(f"{moment!r:.40} is too close to year 9999 to have a batch") from None


_NAMES = {"daily": r"\d{4}-\d{2}-\d{2}", "monthly": r"\d{4}-\d{2}", "yearly": r"\d{4}"}


def period_by_name(cadence: str, name: str) -> Period:
    """The batch called `name` ("YYYY-MM-DD", "YYYY-MM" or "YYYY"), e.g. for replay of one batch."""
    if cadence not in _NAMES or not re.fullmatch(_NAMES[cadence], name):
        raise BatchError(f"{name!r} is not a {cadence} batch name")
    try:
        if cadence == "daily":
            return period_for(cadence, _at(date.fromisoformat(name)) - timedelta(hours=1))
        if cadence == "monthly":
            return period_for(cadence, date.fromisoformat(name + "-01"))
        return period_for(cadence, date(int(name), 1, 1))
    except ValueError as exc:
        raise BatchError(f"{name!r} is not a {cadence} batch name ({exc})") from None


def assign_batch(table: Any, record: Mapping[str, Any]) -> Period:
    """The batch of `record` by the table's batch-time field (`table.batch_time`) and `table.cadence`."""
    field = table.batch_time
    value = record.get(field)
    if type(value) is datetime and value.tzinfo is None and table.cadence == "daily":
        try:
            return _daily(value.date() + _ONE_DAY if value.time() >= DAILY_CUTOFF else value.date())
        except (OverflowError, BatchError):
            pass     # near year 9999: the general path below says why
    if value is None:
        raise BatchError(f"{getattr(table, 'name', 'record')}: batch-time field {field!r} is empty")
    try:
        return period_for(table.cadence, value)
    except BatchError as exc:
        raise BatchError(f"{getattr(table, 'name', 'record')}.{field}: {exc}") from None


_ONE_DAY = timedelta(days=1)


@lru_cache(maxsize=4096)
def _daily(day: date) -> Period:
    """Batch `day`: a naive record time needs only its date and the 18:00 test, and a day's records share
    one Period (the chain asks for one per record)."""
    return period_for("daily", datetime.combine(day, time()))
