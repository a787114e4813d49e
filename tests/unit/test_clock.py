from datetime import datetime, timedelta, timezone

import pytest
from hisbridge.clock import (SHANGHAI, FileClock, SettableClock, SystemClock,
                             write_clock_file)


def at(h: int, m: int = 0, s: int = 0, us: int = 0, days: int = 0) -> datetime:
    return datetime(2026, 4, 1, h, m, s, us, tzinfo=SHANGHAI) + timedelta(days=days)


class FakeMonotonic:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_system_clock_is_aware_utc():
    now = SystemClock().now()
    assert now.utcoffset() == timedelta(0)


def test_settable_clock_rejects_naive_start():
    with pytest.raises(ValueError):
        SettableClock(datetime(2026, 3, 1, 18))


def test_settable_clock_runs_at_speed_and_reports_utc():
    mono = FakeMonotonic()
    clock = SettableClock(datetime(2026, 3, 1, 17, 59, tzinfo=SHANGHAI), speed=60, monotonic=mono)
    mono.t += 1.5   # 1.5 real seconds at 60× = 90 s
    assert clock.now() == datetime(2026, 3, 1, 10, 0, 30, tzinfo=timezone.utc)
    assert clock.now().tzinfo == timezone.utc


def test_frozen_clock_moves_only_when_set_or_advanced():
    mono = FakeMonotonic()
    clock = SettableClock(datetime(2026, 3, 1, 10, tzinfo=timezone.utc), monotonic=mono)
    mono.t += 100
    assert clock.now() == datetime(2026, 3, 1, 10, tzinfo=timezone.utc)
    assert clock.advance(timedelta(hours=8)) == datetime(2026, 3, 1, 18, tzinfo=timezone.utc)
    clock.set(datetime(2026, 3, 2, 22, tzinfo=SHANGHAI))
    assert clock.now() == datetime(2026, 3, 2, 14, tzinfo=timezone.utc)
    with pytest.raises(ValueError):
        clock.advance(timedelta(seconds=-1))


def test_changing_speed_does_not_rescale_the_past():
    mono = FakeMonotonic()
    clock = SettableClock(datetime(2026, 3, 1, tzinfo=timezone.utc), speed=10, monotonic=mono)
    mono.t += 6
    clock.set_speed(0)
    mono.t += 100
    assert clock.now() == datetime(2026, 3, 1, 0, 1, tzinfo=timezone.utc)


def test_file_clock_follows_the_file_and_runs_at_its_speed(tmp_path):
    path = tmp_path / "clock.json"

    class Fixed:
        def now(self):
            return at(9)

    clock = FileClock(path, Fixed())
    assert clock.now() == at(9)
    write_clock_file(path, at(17, 59, 59), speed=0)
    assert clock.now() == at(17, 59, 59)
    write_clock_file(path, at(18, 30), speed=0)
    assert clock.now() == at(18, 30)
    with pytest.raises(ValueError):
        write_clock_file(path, datetime(2026, 4, 1, 18))
