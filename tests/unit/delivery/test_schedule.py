from datetime import datetime, timedelta

import pytest
from hisbridge.clock import SHANGHAI
from hisbridge.delivery.flush import (Forced, check_window, open_window,
                                      plan_flushes, retry_decision)
from hisbridge.delivery.schedule import (ScheduleError, batch_by_name,
                                         is_closed, load_schedule, parse)
from hisbridge.delivery.staging import StagedBatch
from hisbridge.settings import load_settings

HOSPITAL, RELAY = parse({}), parse({"mode": "city_relay"})


def t(day: int, h: int, m: int = 0, s: int = 0, month: int = 3, year: int = 2026) -> datetime:
    return datetime(year, month, day, h, m, s, tzinfo=SHANGHAI)


def test_checked_in_schedule_file_parses_and_the_mode_setting_overrides_it():
    assert load_schedule().mode == "hospital"
    settings = load_settings({"HISBRIDGE_SCHEDULE_MODE": "city_relay"})
    assert load_schedule(settings.paths.schedule, settings.worker.schedule_mode).mode == "city_relay"


@pytest.mark.parametrize("data", [{"mode": "province"}, {"stall": {"policy": "ignore"}}, {"grace": "soon"},
                                  {"windows": {"weekly": {"open_after": "0h", "close_after": "1h"}}}])
def test_bad_configuration_is_an_operator_error(data):
    with pytest.raises(ScheduleError):
        parse(data)


@pytest.mark.parametrize("now, expected", [
    (t(1, 17, 59, 59), None), (t(1, 18), "2026-03-01"), (t(1, 21, 59, 59), "2026-03-01"), (t(1, 22), None)])
def test_hospital_daily_window_is_1800_to_2200(now, expected):
    window = open_window("daily", now, HOSPITAL)
    assert (window.name if window else None) == expected


@pytest.mark.parametrize("now, expected", [
    (t(1, 21, 59), None), (t(1, 22), "2026-03-01"), (t(2, 0, 30), "2026-03-01"), (t(2, 2, 59, 59), "2026-03-01"),
    (t(2, 3), None)])
def test_city_relay_window_runs_across_midnight(now, expected):
    window = open_window("daily", now, RELAY)
    assert (window.name if window else None) == expected


def test_monthly_window_is_first_to_fifteenth_and_yearly_first_fortnight_of_january():
    assert open_window("monthly", t(14, 23, 59), HOSPITAL).name == "2026-02"
    assert open_window("monthly", t(15, 0), HOSPITAL) is None
    assert open_window("yearly", t(10, 12, month=1), HOSPITAL).name == "2025"
    assert open_window("yearly", t(16, 12, month=1), HOSPITAL) is None


def test_guard_never_permits_a_batch_before_its_own_window():
    assert not check_window("daily", "2026-03-02", t(1, 19), HOSPITAL).permitted   # D+1 in D's window
    assert check_window("daily", "2026-03-01", t(1, 19), HOSPITAL).permitted
    late = check_window("daily", "2026-02-27", t(1, 19), HOSPITAL)                 # old batch, next window
    assert late.permitted and late.window.name == "2026-03-01"
    assert not check_window("daily", "2026-02-27", t(1, 23), HOSPITAL).permitted
    assert check_window("daily", "2026-03-02", t(1, 19), HOSPITAL, forced=Forced("ops", "test")).permitted


def test_backfill_carries_historic_monthly_batches_in_daily_windows_from_since_on():
    backfill = parse({"backfill": {"enabled": True, "since": {"monthly": "2022-01"}, "window": "daily"}})
    assert not check_window("monthly", "2022-03", t(20, 19), HOSPITAL).permitted
    assert check_window("monthly", "2022-03", t(20, 19), backfill).permitted
    assert not check_window("monthly", "2021-12", t(20, 19), backfill).permitted
    assert not check_window("monthly", "2022-03", t(20, 12), backfill).permitted   # outside any window


def _staged(batch: str, flushed_before: bool = False, table: str = "mjzzlxx") -> StagedBatch:
    return StagedBatch(table, "daily", batch, 3, flushed_before)


def test_plan_flushes_only_closed_batches_inside_the_window():
    staged = [_staged("2026-03-01"), _staged("2026-02-27", flushed_before=True), _staged("2026-03-02")]
    closed = {"mjzzlxx": t(1, 18, 10)}
    plans, alerts = plan_flushes(t(1, 18, 30), staged, closed, HOSPITAL)
    assert [(p.batch, p.kind) for p in plans] == [("2026-03-01", "first"), ("2026-02-27", "resubmission")]
    assert alerts == []
    assert plan_flushes(t(1, 17, 0), staged, closed, HOSPITAL) == ([], [])
    not_yet = {"mjzzlxx": t(1, 18, 9, 59)}
    assert [p.batch for p in plan_flushes(t(1, 18, 30), staged, not_yet, HOSPITAL)[0]] == ["2026-02-27"]


def test_stalled_watermark_alerts_and_follows_the_policy():
    staged, stalled = [_staged("2026-03-01")], {"mjzzlxx": t(1, 17, 0)}
    assert plan_flushes(t(1, 20, 30), staged, stalled, HOSPITAL) == ([], [])
    plans, alerts = plan_flushes(t(1, 21, 1), staged, stalled, HOSPITAL)
    assert plans == [] and len(alerts) == 1 and "hold" in alerts[0].reason
    margin = parse({"stall": {"policy": "flush_at_margin", "margin": "15m"}})
    assert plan_flushes(t(1, 21, 44), staged, stalled, margin)[0] == []
    plans, alerts = plan_flushes(t(1, 21, 45), staged, stalled, margin)
    assert [p.batch for p in plans] == ["2026-03-01"] and len(alerts) == 1


def test_retry_backs_off_exponentially_and_gives_up_at_window_end():
    end = t(1, 22)
    delays = [retry_decision(t(1, 18), end, n, HOSPITAL).delay for n in range(8)]
    assert delays[:4] == [timedelta(seconds=s) for s in (5, 10, 20, 40)]
    assert max(delays) == HOSPITAL.retry_cap
    last = retry_decision(t(1, 21, 59, 58), end, 9, HOSPITAL)
    assert not last.retry and "window ended" in last.alert


def test_daily_batch_closes_at_1800_plus_grace():
    batch = batch_by_name("daily", "2026-03-01")
    grace = timedelta(minutes=10)
    just_before = datetime(2026, 3, 1, 18, 9, 59, 999000, tzinfo=SHANGHAI)
    assert not is_closed(batch, just_before, grace)
    assert is_closed(batch, just_before + timedelta(milliseconds=1), grace)
    assert not is_closed(batch, None, grace)

def test_monthly_and_yearly_close_at_period_end_plus_grace():
    grace = timedelta(minutes=5)
    month, year = batch_by_name("monthly", "2026-02"), batch_by_name("yearly", "2025")
    assert is_closed(month, datetime(2026, 3, 1, 0, 5, tzinfo=SHANGHAI), grace)
    assert not is_closed(month, datetime(2026, 3, 1, 0, 4, 59, tzinfo=SHANGHAI), grace)
    assert is_closed(year, datetime(2026, 1, 1, 0, 5, tzinfo=SHANGHAI), grace)
    assert not is_closed(year, datetime(2025, 12, 31, 23, 59, tzinfo=SHANGHAI), grace)
