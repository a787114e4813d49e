"""Clock abstraction: the sink asks a Clock for "now" (aware, UTC) and never reads the machine's zone.

SystemClock is real time. SettableClock is for tests and the demo: it starts at a given moment and runs at
`speed` × real time (0 = frozen until set/advanced), so a whole D 18:00–22:00 window can pass in minutes.
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Callable, Protocol


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


def clock_from_env(start: str | None, speed: float = 1.0) -> Clock:
    """The demo's clock: HISBRIDGE_CLOCK_START (ISO with offset) and speed, else real time."""
    if not start:
        return SystemClock()
    return SettableClock(datetime.fromisoformat(start), speed)
