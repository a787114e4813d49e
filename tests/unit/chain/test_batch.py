"""batch stage: event-time batches against 18:00 Asia/Shanghai, monthly/yearly periods, delivery windows."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from hisbridge.chain.batch import BatchError, assign_batch
from hisbridge.delivery.schedule import (CITY_RELAY_DAILY, DEFAULT_WINDOWS,
                                         batch_by_name, batch_for,
                                         parse_duration, parse_windows)
from hypothesis import given
from hypothesis import strategies as st

SH = ZoneInfo("Asia/Shanghai")
moments = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 12, 30))
days = st.dates(min_value=date(1990, 1, 2), max_value=date(2100, 12, 30))


def test_boundary_at_1800_goes_to_next_day():
    assert batch_for("daily", datetime(2026, 3, 1, 17, 59, 59, 999999)).name == "2026-03-01"
    assert batch_for("daily", datetime(2026, 3, 1, 18, 0, 0, 0)).name == "2026-03-02"
    assert batch_for("daily", datetime(2026, 2, 28, 18, 0)).name == "2026-03-01"   # start is inclusive


def test_daily_batch_period_and_default_window():
    batch = batch_for("daily", datetime(2026, 3, 1, 9, 30))
    assert batch.name == "2026-03-01" and batch.cadence == "daily"
    assert batch.start == datetime(2026, 2, 28, 18, tzinfo=SH) and batch.end == datetime(2026, 3, 1, 18, tzinfo=SH)
    assert batch.window_start == datetime(2026, 3, 1, 18, tzinfo=SH)
    assert batch.window_end == datetime(2026, 3, 1, 22, tzinfo=SH)


def test_aware_moments_are_converted_to_shanghai():
    utc = timezone.utc
    assert batch_for("daily", datetime(2026, 3, 1, 9, 59, 59, 999999, tzinfo=utc)).name == "2026-03-01"
    assert batch_for("daily", datetime(2026, 3, 1, 10, 0, tzinfo=utc)).name == "2026-03-02"
    assert batch_for("daily", "2026-03-01T10:00:00+00:00").name == "2026-03-02"
    # New York in summer time: 06:00 EDT = 18:00 Shanghai
    assert batch_for("daily", datetime(2026, 7, 1, 6, 0, tzinfo=ZoneInfo("America/New_York"))).name == "2026-07-02"


def test_date_means_midnight_and_strings_parse():
    assert batch_for("daily", date(2026, 3, 1)).name == "2026-03-01"
    assert batch_for("daily", "2026-03-01 17:59:59.999999").name == "2026-03-01"
    with pytest.raises(BatchError, match="not an ISO"):
        batch_for("daily", "yesterday")


def test_monthly_and_yearly_periods_and_windows():
    month = batch_for("monthly", datetime(2026, 12, 31, 23, 59, 59, 999999))
    assert month.name == "2026-12"
    assert month.start == datetime(2026, 12, 1, tzinfo=SH) and month.end == datetime(2027, 1, 1, tzinfo=SH)
    assert (month.window_start, month.window_end) == (datetime(2027, 1, 1, tzinfo=SH), datetime(2027, 1, 15, tzinfo=SH))
    feb = batch_for("monthly", date(2024, 2, 29))
    assert feb.end == datetime(2024, 3, 1, tzinfo=SH) and feb.window_end == datetime(2024, 3, 15, tzinfo=SH)
    year = batch_for("yearly", datetime(2022, 1, 1, 0, 0))
    assert year.name == "2022" and year.start == datetime(2022, 1, 1, tzinfo=SH)
    assert (year.window_start, year.window_end) == (datetime(2023, 1, 1, tzinfo=SH), datetime(2023, 1, 15, tzinfo=SH))


def test_city_relay_window_crosses_midnight():
    schedule = dict(DEFAULT_WINDOWS, daily=CITY_RELAY_DAILY)
    batch = batch_for("daily", datetime(2026, 3, 1, 12), schedule)
    assert batch.window_start == datetime(2026, 3, 1, 22, tzinfo=SH)
    assert batch.window_end == datetime(2026, 3, 2, 3, tzinfo=SH)
    assert batch.in_window(datetime(2026, 3, 1, 17, 30, tzinfo=timezone.utc))   # 01:30 Shanghai D+1
    assert not batch.in_window(datetime(2026, 3, 1, 19, 0, tzinfo=timezone.utc))  # 03:00 Shanghai: closed


def test_schedule_from_configuration():
    schedule = parse_windows({"daily": {"open_after": "4h", "close_after": "9h"}})
    assert schedule["daily"] == CITY_RELAY_DAILY and schedule["monthly"] == DEFAULT_WINDOWS["monthly"]
    assert parse_duration("14d") == timedelta(days=14) and parse_duration(90) == timedelta(seconds=90)
    for bad in ({"weekly": {"open_after": "0h", "close_after": "1h"}}, {"daily": {"open_after": "0h"}},
                {"daily": {"open_after": "5h", "close_after": "1h"}}, {"daily": {"open_after": "4x", "close_after": "1h"}}):
        with pytest.raises(BatchError):
            parse_windows(bad)


def test_assign_batch_uses_table_cadence_and_batch_time_field():
    visits = SimpleNamespace(name="mz_visit", cadence="daily", batch_time="visit_time")
    assert assign_batch(visits, {"visit_time": datetime(2026, 3, 1, 18)}).name == "2026-03-02"
    indicators = SimpleNamespace(name="indicators", cadence="monthly", batch_time="stat_date")
    assert assign_batch(indicators, {"stat_date": date(2022, 1, 31)}).name == "2022-01"
    with pytest.raises(BatchError, match="visit_time"):
        assign_batch(visits, {"visit_time": None})
    with pytest.raises(BatchError, match="unknown cadence"):
        assign_batch(SimpleNamespace(name="x", cadence="weekly", batch_time="t"), {"t": date(2026, 1, 1)})


def test_batch_by_name_inverts_the_name():
    for cadence, moment in (("daily", datetime(2026, 3, 1, 18)), ("monthly", date(2026, 3, 9)), ("yearly", date(2026, 3, 9))):
        batch = batch_for(cadence, moment)
        assert batch_by_name(cadence, batch.name) == batch
    with pytest.raises(BatchError):
        batch_by_name("daily", "2026-13-01")


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Asia/Shanghai"])
def test_machine_time_zone_does_not_matter(zone):
    code = ("import json; from datetime import datetime, timezone; from hisbridge.delivery.schedule import batch_for;"
            "print(json.dumps([batch_for('daily', m).as_json() for m in ("
            "datetime(2026,3,1,17,59,59,999999), datetime(2026,3,1,18), datetime(2026,3,1,10,tzinfo=timezone.utc),"
            "'2026-03-01T17:59:59.999999')]))")
    env = dict(os.environ, TZ=zone)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    names = [b["batch"] for b in json.loads(out)]
    assert names == ["2026-03-01", "2026-03-02", "2026-03-02", "2026-03-01"]
    assert json.loads(out)[0]["window_end"] == "2026-03-01T22:00:00+08:00"


@given(moments)
def test_daily_batch_is_the_day_six_hours_later(moment):
    # 18:00 + 6 h = next midnight: an independent formulation of the rule
    batch = batch_for("daily", moment)
    assert batch.name == (moment + timedelta(hours=6)).date().isoformat()
    assert batch.start <= moment.replace(tzinfo=SH) < batch.end
    assert batch.end - batch.start == timedelta(days=1) and batch.window_start == batch.end


@given(days)
def test_last_microsecond_and_first_microsecond_around_1800(day):
    cut = datetime.combine(day, datetime.min.time()).replace(hour=18)
    assert batch_for("daily", cut - timedelta(microseconds=1)).name == day.isoformat()
    assert batch_for("daily", cut).name == (day + timedelta(days=1)).isoformat()


@given(moments, st.integers(min_value=-12 * 60, max_value=14 * 60))
def test_aware_moment_equals_its_shanghai_wall_clock(moment, offset_minutes):
    aware = moment.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    # Asia/Shanghai, not a fixed +08:00: China kept daylight saving in 1986–1991.
    wall = aware.astimezone(SH).replace(tzinfo=None)
    assert batch_for("daily", aware) == batch_for("daily", wall)


@given(moments)
def test_monthly_and_yearly_contain_the_moment(moment):
    month, year = batch_for("monthly", moment), batch_for("yearly", moment)
    assert month.name == f"{moment:%Y-%m}" and year.name == f"{moment:%Y}"
    assert month.contains(moment) and year.contains(moment)
    assert month.window_end == month.end + timedelta(days=14) and month.window_end.day == 15
    assert year.window_end == datetime(moment.year + 1, 1, 15, tzinfo=SH)
