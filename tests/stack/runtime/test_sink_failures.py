"""The sink's failure and schedule paths end to end, with the real Faust worker (tests/support/sinkrun.py:
its own topics, consumer group, staging and front-end databases per run):

- the front-end PostgreSQL down at window open, then up: the worker retries and flushes once, complete;
- the city-relay schedule (D 22:00 – D+1 03:00) across midnight;
- a watermark stalled near the window end, under each stall policy (hold / flush_at_margin).

The front-end-down test runs its front-end database on a throwaway PostgreSQL instance of its own (a
temporary directory, a free port), so stopping it never disturbs the shared stack.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from support.throwaway import ThrowawayPostgres
from support.sinkrun import BATCH, NEXT, SinkRun, at, sink_run

pytestmark = pytest.mark.stack


@pytest.fixture
def throwaway_pg(settings):
    pg = ThrowawayPostgres(settings)
    try:
        pg.start()
        yield pg
    finally:
        pg.remove()


@pytest.fixture
def run(tmp_path, resources):
    yield from sink_run(tmp_path, resources)


@pytest.fixture
def run_on_throwaway(tmp_path, resources, throwaway_pg):
    yield from sink_run(tmp_path, resources, throwaway_pg.inst.port)


def write_schedule(path: Path, **data) -> str:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


def log_count(run: SinkRun, needle: str) -> int:
    return run.log.read_text(errors="replace").count(needle) if run.log.exists() else 0


def stage_batch(run: SinkRun, numbers, days: int = 0, lsn: int = 10) -> None:
    for i, n in enumerate(numbers):
        run.send(run.record(n, at(9, n, days=days)), lsn + i)


def keys(numbers) -> set[str]:
    return {f"V{n:08d}" for n in numbers}


# --- front-end down at window open, then up -----------------------------------------------------------------

RETRY = "front-end database unreachable ("          # the worker's back-off log line
UNREACHABLE_ALERT = "ALERT frontend_unreachable"


def test_frontend_down_at_window_open_is_retried_then_flushed_once_complete(run_on_throwaway, throwaway_pg):
    run = run_on_throwaway
    rows = range(1, 41)
    run.set_clock(at(17))
    run.start()
    stage_batch(run, rows)
    run.marks(at(18, 30))
    run.wait("40 staged rows", lambda: len(run.staged()) == 40, timeout=90)
    run.wait_ticks(2, clock=at(17))               # the worker has talked to the front-end (start-up recovery)
    assert run.frontend() == {}
    run.front.close()
    throwaway_pg.crash()                          # gone before the window opens
    run.set_clock(at(17, 59, 50), speed=60.0)     # then a minute of clock per second: retries come quickly
    # the alert comes as the window opens (not when it would close); repeated retry lines are rate-limited
    run.wait("the unreachable alert at window open", lambda: log_count(run, UNREACHABLE_ALERT) == 1, timeout=30)
    assert log_count(run, RETRY) >= 1
    run.wait_ticks(3, clock=None)                 # steps taken (retried, backing off) while it is down
    assert {v[0] for v in run.staged().values()} == {"pending"} and len(run.staged()) == 40   # nothing lost
    throwaway_pg.start()
    run.connect_front()
    [entry] = run.wait("the flush after the front-end came back", lambda: run.ledger(BATCH), timeout=30)
    run.wait_ticks(3)                             # more steps: nothing flushed a second time
    assert run.ledger(BATCH) == [entry]
    got = run.frontend()
    assert set(got) == keys(rows) and {r[0] for r in got.values()} == {entry.report_datetime}
    assert (entry.kind, entry.row_count) == ("first", 40)
    assert at(18).replace(tzinfo=None) <= entry.report_datetime < at(22).replace(tzinfo=None)
    assert {v[0] for v in run.staged().values()} == {"flushed"}
    assert log_count(run, UNREACHABLE_ALERT) == 1
    assert run.alive(), run.log_tail()


def test_frontend_down_for_the_whole_window_alerts_once_and_the_batch_goes_next_window(run_on_throwaway,
                                                                                         throwaway_pg):
    run = run_on_throwaway
    run.set_clock(at(17))
    run.start()
    stage_batch(run, range(1, 4))
    run.marks(at(18, 30))
    run.wait("3 staged rows", lambda: len(run.staged()) == 3, timeout=90)
    run.front.close()
    throwaway_pg.crash()
    run.set_clock(at(17, 59, 50), speed=60.0)
    run.wait("the unreachable alert at window open", lambda: log_count(run, UNREACHABLE_ALERT) == 1, timeout=30)
    assert log_count(run, RETRY) >= 1
    run.set_clock(at(21, 59, 58))                 # still down as the window ends: give up until the next one
    run.wait("the give-up", lambda: log_count(run, "batch waits for the next window") == 1, timeout=30)
    throwaway_pg.start()
    run.connect_front()
    run.set_clock(at(22, 30))                     # back, but the window is over: nothing may be written
    run.wait_ticks(2, clock=at(22, 30))
    assert run.ledger(BATCH) == [] and run.frontend() == {}
    assert {v[0] for v in run.staged().values()} == {"pending"} and len(run.staged()) == 3
    run.set_clock(at(18, days=1))                 # the next window carries it
    [entry] = run.wait("D in the next window", lambda: run.ledger(BATCH), timeout=30)
    assert (entry.kind, entry.row_count, entry.report_datetime) == ("first", 3, at(18, days=1).replace(tzinfo=None))
    assert set(run.frontend()) == keys(range(1, 4))
    assert log_count(run, UNREACHABLE_ALERT) == 1
    assert run.alive(), run.log_tail()


# --- city relay across midnight -----------------------------------------------------------------------------

def test_city_relay_schedule_flushes_between_22_and_03_including_after_midnight(run):
    run.set_clock(at(21))
    run.start(HISBRIDGE_SCHEDULE_MODE="city_relay")
    stage_batch(run, range(1, 6))                           # batch D, closes on time
    stage_batch(run, range(11, 14), days=1, lsn=100)        # batch D+1, its watermark stalls for a while
    run.marks(at(18, 30))
    run.wait("8 staged rows", lambda: len(run.staged()) == 8, timeout=90)
    run.wait_ticks(2, clock=at(21))                         # D is closed, but 21:00 is no relay time
    assert run.frontend() == {} and run.ledger(BATCH) == []

    run.set_clock(at(23, 30))
    [d] = run.wait("batch D flushed at 23:30", lambda: run.ledger(BATCH), timeout=30)
    assert (d.kind, d.row_count, d.report_datetime) == ("first", 5, at(23, 30).replace(tzinfo=None))

    run.set_clock(at(23, 30, days=1))                       # D+1's relay window, its watermark still short
    run.marks(at(18, 5, days=1))
    run.wait("the short watermark staged", lambda: run.watermark() == at(18, 5, days=1))
    run.wait_ticks(2, clock=at(23, 30, days=1))
    assert run.ledger(NEXT) == []
    run.set_clock(at(1, days=2))                            # past midnight: the watermark closes late
    run.marks(at(19, days=1))
    [d1] = run.wait("batch D+1 flushed at D+2 01:00", lambda: run.ledger(NEXT), timeout=30)
    assert (d1.kind, d1.row_count, d1.report_datetime) == ("first", 3, at(1, days=2).replace(tzinfo=None))
    got = run.frontend()
    assert {k for k, r in got.items() if r[0] == d1.report_datetime} == keys(range(11, 14))
    assert {k for k, r in got.items() if r[0] == d.report_datetime} == keys(range(1, 6))
    assert run.ledger(BATCH) == [d]
    assert run.alive(), run.log_tail()


# --- stalled watermark near the window end ------------------------------------------------------------------

STALL_ALERT = "ALERT stalled_watermark"


@pytest.mark.parametrize("policy", ["hold", "flush_at_margin"])
def test_stalled_watermark_alerts_and_follows_the_configured_policy(run, policy):
    schedule = write_schedule(run.tmp / "schedule.yaml", mode="hospital", grace="10m",
                              stall={"policy": policy, "alert_before": "1h", "margin": "15m"})
    run.set_clock(at(20))
    run.start(HISBRIDGE_SCHEDULE=schedule)
    stage_batch(run, range(1, 7))
    run.marks(at(17, 30))                                   # the source stalls before D 18:00 + grace
    run.wait("6 staged rows", lambda: len(run.staged()) == 6, timeout=90)
    run.wait_ticks(2, clock=at(20))
    assert log_count(run, STALL_ALERT) == 0 and run.ledger(BATCH) == []   # 20:00: not yet near the end

    run.set_clock(at(21, 30))                               # within alert_before of 22:00, before the margin
    run.wait("the stall alert", lambda: log_count(run, STALL_ALERT) == 1, timeout=30)
    run.wait_ticks(2, clock=at(21, 30))
    assert run.ledger(BATCH) == [] and run.frontend() == {}

    run.set_clock(at(21, 46))                               # past window end − margin
    if policy == "flush_at_margin":
        [entry] = run.wait("the flush at the margin", lambda: run.ledger(BATCH), timeout=30)
        assert (entry.kind, entry.row_count, entry.report_datetime) == ("first", 6, at(21, 46).replace(tzinfo=None))
        assert set(run.frontend()) == keys(range(1, 7))
    else:
        run.wait_ticks(2, clock=at(21, 46))
        assert run.ledger(BATCH) == [] and run.frontend() == {}
    assert log_count(run, STALL_ALERT) == 1                 # alerted once, not every tick

    # after the window the source recovers and a late row of D arrives: D goes out in the next window
    expected = 2 if policy == "flush_at_margin" else 1
    run.set_clock(at(22, 30))
    run.send(run.record(7, at(9, 7)), 50)
    run.marks(at(18, 30, days=1))
    run.wait("the late row staged", lambda: "V00000007" in run.staged(), timeout=30)
    run.wait_ticks(2, clock=at(22, 30))
    assert len(run.ledger(BATCH)) == expected - 1                # nothing goes out after 22:00
    run.set_clock(at(18, 5, days=1))
    entries = run.wait("D in the next window", lambda: len(run.ledger(BATCH)) == expected and run.ledger(BATCH),
                       timeout=30)
    last = entries[-1]
    if policy == "flush_at_margin":
        assert (last.kind, last.row_count) == ("resubmission", 1)
    else:
        assert (last.kind, last.row_count) == ("first", 7)
    assert last.report_datetime == at(18, 5, days=1).replace(tzinfo=None)
    assert set(run.frontend()) == keys(range(1, 8))
    assert run.alive(), run.log_tail()
