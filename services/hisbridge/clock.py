"""Clock abstraction: the sink asks a Clock for "now" (aware, UTC) and never reads the machine's zone.

SystemClock is real time. SettableClock is for tests and the demo: it starts at a given moment and runs at
`speed` × real time (0 = frozen until set/advanced), so a whole D 18:00–22:00 window can pass in minutes.
FileClock is a SettableClock steered from another process through a small JSON file (the demo, stack tests).
`clock_for(settings.clock)` picks one from the settings.
"""
from __future__ import annotations

import json
import logging
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from hisbridge.settings import ClockSettings

log = logging.getLogger(__name__)
# every time hisbridge works with or shows is Asia/Shanghai (UTC+8, no daylight saving since 1991)
SHANGHAI = ZoneInfo("Asia/Shanghai")


def local_text(moment: datetime, timespec: str = "seconds") -> str:
    """A moment as a person reads it: Asia/Shanghai with its offset, `2026-12-02 02:26:15+08:00`.
    A naive moment is refused: it would be shown in whatever zone it happened to mean."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"cannot show naive moment {moment.isoformat()}: its zone is unknown")
    return moment.astimezone(SHANGHAI).isoformat(" ", timespec)


def as_shanghai(moment: datetime) -> datetime:
    """A moment with its zone: a naive one is a front-end or HIS wall-clock value (report_datetime:
    `timestamp without time zone`, Asia/Shanghai by design)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=SHANGHAI)


def wall_text(moment: datetime, timespec: str = "seconds") -> str:
    """A wall-clock value (as_shanghai) shown like every other moment, with its offset."""
    return local_text(as_shanghai(moment), timespec)


def log_text(moment: datetime | None, timespec: str = "seconds") -> str:
    """`local_text` for a log line, which must never raise: a naive moment is marked, not refused."""
    if moment is None:
        return "none"
    if moment.tzinfo is None or moment.utcoffset() is None:
        return f"{moment.isoformat(' ', timespec)} (zone unknown)"
    return local_text(moment, timespec)


class Clock(Protocol):
    def now(self) -> datetime:
        """The current moment, timezone-aware, in UTC."""
        ...


def _aware_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        # a naive moment would silently be read in some zone; the caller must say which
        raise ValueError(f"clock moments must be timezone-aware, got naive {moment.isoformat()}")
    return moment.astimezone(timezone.utc)


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class SettableClock:
    """now = start + (elapsed real seconds × speed); `set` and `advance` move it explicitly."""

    def __init__(self, start: datetime, speed: float = 0.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if speed < 0:
            raise ValueError("clock speed must be >= 0 (0 = frozen)")
        self._monotonic = monotonic
        self._speed = speed
        self._anchor = _aware_utc(start)
        self._anchored_at = monotonic()

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> datetime:
        elapsed = (self._monotonic() - self._anchored_at) * self._speed
        return self._anchor + timedelta(seconds=elapsed)

    def set(self, moment: datetime) -> None:
        self._anchor = _aware_utc(moment)
        self._anchored_at = self._monotonic()

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("a clock is advanced forwards only; use set() to jump back")
        self.set(self.now() + delta)
        return self.now()

    def set_speed(self, speed: float) -> None:
        if speed < 0:
            raise ValueError("clock speed must be >= 0 (0 = frozen)")
        self.set(self.now())  # re-anchor so the past is not re-scaled
        self._speed = speed


class FileClock:
    """A settable clock steered through a file (demo, stack tests): JSON {"now": ISO with offset, "speed": x}
    re-read whenever the file changes; `now` then runs from there at `speed` × real time."""

    def __init__(self, path: Path, fallback: Clock) -> None:
        self.path, self._clock, self._stamp = path, fallback, None

    def now(self) -> datetime:
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return self._clock.now()
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self._clock = SettableClock(datetime.fromisoformat(data["now"]), float(data.get("speed", 0)))
            except (ValueError, KeyError, TypeError) as exc:
                log.error("clock file %s ignored: %s", self.path, exc)
        return self._clock.now()


def write_clock_file(path: Path, now: datetime, speed: float = 0.0) -> None:
    """Steer a FileClock (atomically: a half-written file is never read)."""
    if now.tzinfo is None:
        raise ValueError("the clock file needs an aware moment")
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({"now": now.isoformat(), "speed": speed}), encoding="utf-8")
    os.replace(tmp, path)


def clock_for(settings: "ClockSettings") -> Clock:
    """clock.start (ISO with offset) at clock.speed, steered by clock.file when set; real time otherwise."""
    base: Clock = SettableClock(datetime.fromisoformat(settings.start), settings.speed) if settings.start \
        else SystemClock()
    return FileClock(settings.file, base) if settings.file else base
