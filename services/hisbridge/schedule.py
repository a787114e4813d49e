"""Delivery schedule as configuration: which windows apply, how batches close, what a stall does.

Read from schemas/schedule.yaml (the settings' paths.schedule; worker.schedule_mode overrides `mode`). Windows themselves are batching's WindowRule data:
  mode hospital    daily D 18:00–22:00 (DEFAULT_SCHEDULE)
  mode city_relay  daily D 22:00 – D+1 03:00 (CITY_RELAY_DAILY), for a city platform relaying onwards
  monthly/yearly   1st–15th of the next month / 1–15 January (DEFAULT_SCHEDULE), overridable per cadence
  back-fill        historic batches (window long gone, e.g. evaluation data since 2022-01) go out in the
                   next window of their cadence, or of `backfill.window` (e.g. daily) when set.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping

import yaml

from hisbridge.settings import defaults
from hisbridge.batching import (CADENCES, CITY_RELAY_DAILY, DEFAULT_SCHEDULE, BatchError, WindowRule,
                                parse_duration, parse_schedule)

MODES = ("hospital", "city_relay")
STALL_POLICIES = ("hold", "flush_at_margin")


class ScheduleError(ValueError):
    """The schedule configuration is wrong: an operator must fix it."""


@dataclass(frozen=True)
class Schedule:
    windows: Mapping[str, WindowRule] = field(default_factory=lambda: dict(DEFAULT_SCHEDULE))
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
    base = dict(DEFAULT_SCHEDULE)
    if mode == "city_relay":
        base["daily"] = CITY_RELAY_DAILY
    try:
        windows = parse_schedule(data.get("windows") or {}, base)
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
