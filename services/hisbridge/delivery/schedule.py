"""Delivery schedule: when a batch may be delivered (its window), when it counts as closed, what a stall does.

Windows are data: each cadence maps to a WindowRule of two offsets from the *end* of the batch period.
Defaults (the notice): daily D 18:00–22:00; monthly the 1st 00:00 – the 15th 00:00 of the next month;
yearly 1 Jan 00:00 – 15 Jan 00:00 of the next year. A city platform's relay window (D 22:00 – D+1 03:00,
across midnight) is WindowRule(4 h, 9 h). A batch closes when the source watermark reaches its period end
+ grace. All Batch datetimes are aware, in Asia/Shanghai.

The rest is read from schemas/schedule.yaml (the settings' paths.schedule; worker.schedule_mode overrides
`mode`):
  mode hospital    daily D 18:00–22:00 (DEFAULT_WINDOWS)
  mode city_relay  daily D 22:00 – D+1 03:00 (CITY_RELAY_DAILY), for a city platform relaying onwards
  monthly/yearly   1st–15th of the next month / 1–15 January, overridable per cadence
  back-fill        historic batches (window long gone, e.g. evaluation data since 2022-01) go out in the
                   next window of their cadence, or of `backfill.window` (e.g. daily) when set.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Mapping

import yaml
from hisbridge.chain.batch import (CADENCES, BatchError, Period,
                                   period_by_name, period_for)
from hisbridge.settings import defaults


@dataclass(frozen=True, slots=True)
class WindowRule:
    open_after: timedelta    # window opens this long after the batch period ends
    close_after: timedelta   # …and closes (exclusive) this long after it ends

    def __post_init__(self) -> None:
        if self.close_after <= self.open_after:
            raise BatchError("a delivery window must close after it opens")


DEFAULT_WINDOWS: Mapping[str, WindowRule] = {
    "daily": WindowRule(timedelta(0), timedelta(hours=4)),
    "monthly": WindowRule(timedelta(0), timedelta(days=14)),
    "yearly": WindowRule(timedelta(0), timedelta(days=14)),
}
CITY_RELAY_DAILY = WindowRule(timedelta(hours=4), timedelta(hours=9))


@dataclass(frozen=True, slots=True)
class Batch:
    """A batch period with its delivery window."""
    name: str
    cadence: str
    start: datetime          # inclusive
    end: datetime            # exclusive
    window_start: datetime   # inclusive
    window_end: datetime     # exclusive

    def contains(self, moment: datetime | date | str) -> bool:
        return Period(self.name, self.cadence, self.start, self.end).contains(moment)

    def in_window(self, now: datetime) -> bool:
        """Is `now` (aware, any zone) inside the delivery window?"""
        if now.tzinfo is None:
            raise BatchError("in_window needs an aware datetime (the clock, not a record time)")
        return self.window_start <= now < self.window_end

    def as_json(self) -> dict[str, str]:
        return {"batch": self.name, "cadence": self.cadence, "start": self.start.isoformat(),
                "end": self.end.isoformat(), "window_start": self.window_start.isoformat(),
                "window_end": self.window_end.isoformat()}


def with_window(period: Period, windows: Mapping[str, WindowRule] = DEFAULT_WINDOWS) -> Batch:
    rule = windows.get(period.cadence)
    if rule is None:
        raise BatchError(f"the schedule has no delivery window for cadence {period.cadence!r}")
    # Asia/Shanghai has no DST, so adding a timedelta to an aware datetime is exact wall-clock arithmetic
    try:
        return Batch(period.name, period.cadence, period.start, period.end, period.end + rule.open_after,
                     period.end + rule.close_after)
    except OverflowError:
        raise BatchError(f"the delivery window of batch {period.name} is past year 9999") from None


def batch_for(cadence: str, moment: datetime | date | str,
              windows: Mapping[str, WindowRule] = DEFAULT_WINDOWS) -> Batch:
    """The batch of `cadence` that contains `moment`, with its delivery window."""
    return with_window(period_for(cadence, moment), windows)


def batch_by_name(cadence: str, name: str, windows: Mapping[str, WindowRule] = DEFAULT_WINDOWS) -> Batch:
    """The batch called `name` ("YYYY-MM-DD", "YYYY-MM" or "YYYY") with its delivery window."""
    return with_window(period_by_name(cadence, name), windows)


def closes_at(batch: Period | Batch, grace: timedelta) -> datetime:
    return batch.end + grace


def is_closed(batch: Period | Batch, mark: datetime | None, grace: timedelta) -> bool:
    """Batch D (daily) closes when the watermark reaches D 18:00 + grace; monthly/yearly at period end."""
    return mark is not None and mark >= closes_at(batch, grace)


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


def parse_windows(config: Mapping[str, Mapping[str, Any]],
                  base: Mapping[str, WindowRule] = DEFAULT_WINDOWS) -> dict[str, WindowRule]:
    """Overlay configured windows ({cadence: {open_after, close_after}}) on `base`."""
    windows = dict(base)
    for cadence, rule in config.items():
        if cadence not in CADENCES:
            raise BatchError(f"schedule names unknown cadence {cadence!r}")
        try:
            windows[cadence] = WindowRule(parse_duration(rule["open_after"]), parse_duration(rule["close_after"]))
        except KeyError as exc:
            raise BatchError(f"schedule for {cadence!r} lacks {exc.args[0]!r}") from None
    return windows


MODES = ("hospital", "city_relay")
STALL_POLICIES = ("hold", "flush_at_margin")


class ScheduleError(ValueError):
    """The schedule configuration is wrong: an operator must fix it."""


@dataclass(frozen=True)
class Schedule:
    windows: Mapping[str, WindowRule] = field(default_factory=lambda: dict(DEFAULT_WINDOWS))
    mode: str = "hospital"
    grace: timedelta = timedelta(minutes=10)          # watermark must pass period end + grace
    stall_policy: str = "hold"                        # batch still open near its window end
    stall_alert_before: timedelta = timedelta(hours=1)
    stall_margin: timedelta = timedelta(minutes=15)   # flush_at_margin: flush at window end − margin
    backfill_enabled: bool = False
    backfill_since: Mapping[str, str] = field(default_factory=dict)  # cadence → earliest batch name
    backfill_window: str | None = None                # cadence whose windows also carry historic batches
    retry_base: timedelta = timedelta(seconds=5)
    retry_cap: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ScheduleError(f"schedule mode {self.mode!r}: expected one of {', '.join(MODES)}")
        if self.stall_policy not in STALL_POLICIES:
            raise ScheduleError(f"stall policy {self.stall_policy!r}: expected one of {', '.join(STALL_POLICIES)}")
        if self.backfill_window is not None and self.backfill_window not in CADENCES:
            raise ScheduleError(f"backfill.window {self.backfill_window!r} is not a cadence")
        missing = [c for c in CADENCES if c not in self.windows]
        if missing:
            raise ScheduleError(f"schedule has no window for {', '.join(missing)}")


def _duration(value: Any, what: str) -> timedelta:
    try:
        return parse_duration(value)
    except BatchError as exc:
        raise ScheduleError(f"{what}: {exc}") from None


def parse(data: Mapping[str, Any] | None, mode: str | None = None) -> Schedule:
    """Schedule from the YAML structure (all keys optional); `mode` overrides data['mode']."""
    data = dict(data or {})
    mode = mode or data.get("mode", "hospital")
    base = dict(DEFAULT_WINDOWS)
    if mode == "city_relay":
        base["daily"] = CITY_RELAY_DAILY
    try:
        windows = parse_windows(data.get("windows") or {}, base)
    except BatchError as exc:
        raise ScheduleError(f"windows: {exc}") from None
    stall, backfill, retry = (data.get(k) or {} for k in ("stall", "backfill", "retry"))
    return Schedule(
        windows=windows, mode=mode,
        grace=_duration(data.get("grace", "10m"), "grace"),
        stall_policy=stall.get("policy", "hold"),
        stall_alert_before=_duration(stall.get("alert_before", "1h"), "stall.alert_before"),
        stall_margin=_duration(stall.get("margin", "15m"), "stall.margin"),
        backfill_enabled=bool(backfill.get("enabled", False)),
        backfill_since={str(k): str(v) for k, v in (backfill.get("since") or {}).items()},
        backfill_window=backfill.get("window"),
        retry_base=_duration(retry.get("base", "5s"), "retry.base"),
        retry_cap=_duration(retry.get("cap", "5m"), "retry.cap"),
    )


def load_schedule(path: Path | None = None, mode: str | None = None) -> Schedule:
    """The configured schedule (the checkout's by default); `mode` overrides the file's. Defaults (hospital
    mode) when the file does not exist."""
    path = path or defaults().paths.schedule
    data: Mapping[str, Any] = {}
    if path.exists():
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ScheduleError(f"{path}: not valid YAML ({exc})") from None
    return parse(data, mode=mode or None)
