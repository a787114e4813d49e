"""Batch stage: which delivery batch a record belongs to, by event time, in Asia/Shanghai.

  daily    batch D (named "YYYY-MM-DD") = [D-1 18:00, D 18:00) local time;
           17:59:59.999999 → D, 18:00:00.000000 → D+1.
  monthly  batch "YYYY-MM" = the calendar month.
  yearly   batch "YYYY"    = the calendar year.

Moments: a naive datetime is Asia/Shanghai wall-clock (what the decode stage produces); an aware one is
converted to Asia/Shanghai first; a date means 00:00 of that day; an ISO string is parsed as one of
those. The machine's own time zone is never consulted.

Delivery windows are data: each cadence maps to a WindowRule of two offsets from the *end* of the batch
period. Defaults (the notice): daily D 18:00–22:00; monthly the 1st 00:00 – the 15th 00:00 of the next
month; yearly 1 Jan 00:00 – 15 Jan 00:00 of the next year. A city platform's relay window (D 22:00 –
D+1 03:00, across midnight) is WindowRule(4 h, 9 h). `parse_schedule` reads {"daily": {"open_after":
"4h", "close_after": "9h"}} from configuration. All Batch datetimes are aware, in Asia/Shanghai.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, Mapping
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAILY_CUTOFF = time(18, 0)
CADENCES = ("daily", "monthly", "yearly")


class BatchError(ValueError):
    """A record or cadence that cannot be placed in a batch."""


@dataclass(frozen=True, slots=True)
class WindowRule:
    open_after: timedelta    # window opens this long after the batch period ends
    close_after: timedelta   # …and closes (exclusive) this long after it ends

    def __post_init__(self) -> None:
        if self.close_after <= self.open_after:
            raise BatchError("a delivery window must close after it opens")


DEFAULT_SCHEDULE: Mapping[str, WindowRule] = {
    "daily": WindowRule(timedelta(0), timedelta(hours=4)),
    "monthly": WindowRule(timedelta(0), timedelta(days=14)),
    "yearly": WindowRule(timedelta(0), timedelta(days=14)),
}
CITY_RELAY_DAILY = WindowRule(timedelta(hours=4), timedelta(hours=9))


@dataclass(frozen=True, slots=True)
class Batch:
    name: str
    cadence: str
    start: datetime          # inclusive
    end: datetime            # exclusive
    window_start: datetime   # inclusive
    window_end: datetime     # exclusive

    def contains(self, moment: datetime | date | str) -> bool:
        return self.start <= _local(moment).replace(tzinfo=SHANGHAI) < self.end

    def in_window(self, now: datetime) -> bool:
        """Is `now` (aware, any zone) inside the delivery window?"""
        if now.tzinfo is None:
            raise BatchError("in_window needs an aware datetime (the clock, not a record time)")
        return self.window_start <= now < self.window_end

    def as_json(self) -> dict[str, str]:
        return {"batch": self.name, "cadence": self.cadence, "start": self.start.isoformat(),
                "end": self.end.isoformat(), "window_start": self.window_start.isoformat(),
                "window_end": self.window_end.isoformat()}


def _local(moment: datetime | date | str) -> datetime:
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


def _period(cadence: str, local: datetime) -> tuple[str, datetime, datetime]:
    if cadence == "daily":
        day = local.date() + timedelta(days=1) if local.time() >= DAILY_CUTOFF else local.date()
        return day.isoformat(), _at(day - timedelta(days=1), DAILY_CUTOFF), _at(day, DAILY_CUTOFF)
    if cadence == "monthly":
        first = local.date().replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        return f"{first:%Y-%m}", _at(first), _at(following)
    if cadence == "yearly":
        year = local.year
        return f"{year:04d}", _at(date(year, 1, 1)), _at(date(year + 1, 1, 1))
    raise BatchError(f"unknown cadence {cadence!r} (expected one of {', '.join(CADENCES)})")


def batch_for(cadence: str, moment: datetime | date | str,
              schedule: Mapping[str, WindowRule] = DEFAULT_SCHEDULE) -> Batch:
    """The batch of `cadence` that contains `moment`, with its delivery window from `schedule`."""
    try:
        name, start, end = _period(cadence, _local(moment))
    except (OverflowError, ValueError) as exc:
        if isinstance(exc, BatchError):
            raise
        raise BatchError(f"{moment!r:.40} is too close to year 9999 to have a batch") from None
    rule = schedule.get(cadence)
    if rule is None:
        raise BatchError(f"the schedule has no delivery window for cadence {cadence!r}")
    # Asia/Shanghai has no DST, so adding a timedelta to an aware datetime is exact wall-clock arithmetic
    try:
        return Batch(name, cadence, start, end, end + rule.open_after, end + rule.close_after)
    except OverflowError:
        raise BatchError(f"the delivery window of batch {name} is past year 9999") from None


def assign_batch(table: Any, record: Mapping[str, Any],
                 schedule: Mapping[str, WindowRule] = DEFAULT_SCHEDULE) -> Batch:
    """The batch of `record` by the table's batch-time field (`table.batch_time`) and `table.cadence`."""
    field = table.batch_time
    value = record.get(field)
    if type(value) is datetime and value.tzinfo is None and schedule is DEFAULT_SCHEDULE and table.cadence == "daily":
        try:
            return _daily_batch(value.date() + _ONE_DAY if value.time() >= DAILY_CUTOFF else value.date())
        except (OverflowError, BatchError):
            pass     # near year 9999: the general path below says why
    if value is None:
        raise BatchError(f"{getattr(table, 'name', 'record')}: batch-time field {field!r} is empty")
    try:
        return batch_for(table.cadence, value, schedule)
    except BatchError as exc:
        raise BatchError(f"{getattr(table, 'name', 'record')}.{field}: {exc}") from None


_ONE_DAY = timedelta(days=1)


@lru_cache(maxsize=4096)
def _daily_batch(day: date) -> Batch:
    """Batch `day` of the default schedule: a naive record time needs only its date and the 18:00 test,
    and a day's records share one Batch (the chain asks for one per record)."""
    return batch_for("daily", datetime.combine(day, time()), DEFAULT_SCHEDULE)


def batch_by_name(cadence: str, name: str, schedule: Mapping[str, WindowRule] = DEFAULT_SCHEDULE) -> Batch:
    """The batch called `name` ("YYYY-MM-DD", "YYYY-MM" or "YYYY"), e.g. for replay of one batch."""
    patterns = {"daily": r"\d{4}-\d{2}-\d{2}", "monthly": r"\d{4}-\d{2}", "yearly": r"\d{4}"}
    if cadence not in patterns or not re.fullmatch(patterns[cadence], name):
        raise BatchError(f"{name!r} is not a {cadence} batch name")
    try:
        if cadence == "daily":
            return batch_for(cadence, _at(date.fromisoformat(name)) - timedelta(hours=1), schedule)
        if cadence == "monthly":
            return batch_for(cadence, date.fromisoformat(name + "-01"), schedule)
        return batch_for(cadence, date(int(name), 1, 1), schedule)
    except ValueError as exc:
        raise BatchError(f"{name!r} is not a {cadence} batch name ({exc})") from None


_DURATION = re.compile(r"^\s*(-?\d+)\s*(d|h|m|s)\s*$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """'4h', '14d', '30m', '90s' (or seconds as a number) → timedelta."""
    if isinstance(text, timedelta):
        return text
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return timedelta(seconds=text)
    match = _DURATION.match(str(text))
    if not match:
        raise BatchError(f"{text!r} is not a duration like '4h', '14d', '30m' or '90s'")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def parse_schedule(config: Mapping[str, Mapping[str, Any]],
                   base: Mapping[str, WindowRule] = DEFAULT_SCHEDULE) -> dict[str, WindowRule]:
    """Overlay configured windows ({cadence: {open_after, close_after}}) on `base`."""
    schedule = dict(base)
    for cadence, rule in config.items():
        if cadence not in CADENCES:
            raise BatchError(f"schedule names unknown cadence {cadence!r}")
        try:
            schedule[cadence] = WindowRule(parse_duration(rule["open_after"]), parse_duration(rule["close_after"]))
        except KeyError as exc:
            raise BatchError(f"schedule for {cadence!r} lacks {exc.args[0]!r}") from None
    return schedule
