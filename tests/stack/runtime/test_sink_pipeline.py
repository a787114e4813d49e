"""The sink end to end: real Kafka, real PostgreSQL, the real Faust worker as a subprocess with a steered
clock (tests/support/sinkrun.py has the isolated deployment each test gets). Absence ("nothing was
flushed") is proved after the sink's flush timer has taken further steps with the clock the test set (its
step counter in staging), never after a fixed sleep.
"""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from support.sinkrun import BATCH, NEXT, at, sink_run

pytestmark = pytest.mark.stack


@pytest.fixture
def run(tmp_path, resources):
    yield from sink_run(tmp_path, resources)


def test_boundary_window_watermark_and_late_resubmission(run):
    run.set_clock(at(17))                                    # frozen before the window
    run.start()
    run.send(run.record(1, at(17, 59, 59, 999999)), 10)      # last µs of batch D
    run.send(run.record(2, at(18)), 11)                      # first µs of batch D+1
    for n in range(3, 8):
        run.send(run.record(n, at(9, n)), 10 + n)
    run.marks(at(18, 30))                                    # watermark past D 18:00 + 10m grace
    staged = run.wait("7 staged rows", lambda: len(run.staged()) == 7 and run.staged(), timeout=90)
    assert {k for k, v in staged.items() if v[0] == "pending"} == set(staged)
    with run.stage, run.stage.cursor() as cur:
        cur.execute("SELECT bkey, batch FROM hisbridge.staged WHERE org = %s", (run.org,))
        batches = dict(cur.fetchall())
    assert batches["V00000001"] == BATCH and batches["V00000002"] == NEXT
    run.wait_ticks(3, clock=at(17))                          # several timer steps with the clock at 17:00
    assert run.frontend() == {} and run.ledger(BATCH) == [], "nothing may reach the front-end before 18:00"

    run.set_clock(at(17, 59, 58), speed=1.0)                 # the clock walks into the window
    [first] = run.wait("the first flush of D", lambda: run.ledger(BATCH), timeout=60)
    rows = run.frontend()
    assert set(rows) == {"V00000001"} | {f"V{n:08d}" for n in range(3, 8)}   # not V00000002 (batch D+1)
    assert {r[0] for r in rows.values()} == {first.report_datetime}
    assert at(18).replace(tzinfo=None) <= first.report_datetime < at(18, 1).replace(tzinfo=None)
    assert (first.row_count, first.kind) == (6, "first")

    run.set_clock(at(23))                                    # window over; a late row and a change arrive
    run.send(run.record(20, at(11)), 100)                    # late record of D
    run.send(run.record(3, at(9, 3), fee="4321.00"), 101)    # update of a flushed row
    run.marks(at(23))
    run.wait("late rows staged", lambda: run.staged().get("V00000020") and run.staged()["V00000003"][0] == "pending")
    run.wait_ticks(2, clock=at(23))
    assert "V00000020" not in run.frontend() and len(run.ledger(BATCH)) == 1

    run.marks(at(18, 30, days=1))                           # D+1 closes too
    run.set_clock(at(18, 0, 5, days=1))                      # next window
    run.wait("the resubmission of D", lambda: len(run.ledger(BATCH)) == 2, timeout=60)
    run.wait("the first flush of D+1", lambda: run.ledger(NEXT), timeout=30)
    first_again, resub = run.ledger(BATCH)
    assert first_again == first and (resub.kind, resub.row_count) == ("resubmission", 2)
    rows = run.frontend()
    assert rows["V00000020"][0] == resub.report_datetime and rows["V00000003"][0] == resub.report_datetime
    assert rows["V00000003"][1] == Decimal("4321.00")
    assert rows["V00000004"][0] == first.report_datetime
    [nxt] = run.ledger(NEXT)
    assert (nxt.kind, nxt.row_count) == ("first", 1) and rows["V00000002"][0] == nxt.report_datetime
    assert run.alive(), run.log_tail()


def test_kill_9_while_staging_and_after_flush_then_restart_gives_exact_rows_once(run):
    n_rows, updates = 4000, range(0, 4000, 10)
    run.set_clock(at(17))
    for n in range(n_rows):
        run.send(run.record(n, at(8) + timedelta(seconds=n)), 1000 + n)
    for n in updates:                                        # newer versions of every 10th row
        run.send(run.record(n, at(8) + timedelta(seconds=n), fee="7.77"), 100_000 + n)
    run.marks(at(18, 30))
    run.start()
    seen = run.wait("staging under way", lambda: len(run.staged()), timeout=90, every=0.05)
    run.kill()                                               # mid-run (unless it was already done)
    print(f"killed with {seen}/{n_rows} rows staged")
    run.start()
    run.wait("all rows staged", lambda: len(run.staged()) == n_rows, timeout=120)
    run.wait("the newest versions", lambda: sum(run.staged()[f"V{n:08d}"][2] >= 100_000 for n in updates)
             == len(updates), timeout=60)

    run.set_clock(at(18, 0, 1))
    run.wait("the flush", lambda: run.ledger(BATCH), timeout=60, every=0.05)
    run.kill()                                               # right after the front-end commit
    run.set_clock(at(18, 0, 2))
    run.start()
    run.wait("staging marked flushed", lambda: {v[0] for v in run.staged().values()} == {"flushed"}, timeout=90)
    run.wait_ticks(2, clock=at(18, 0, 2))                   # more steps: nothing flushed a second time
    [entry] = run.ledger(BATCH)
    rows = run.frontend()
    assert len(rows) == n_rows == entry.row_count and entry.kind == "first"
    assert {r[0] for r in rows.values()} == {entry.report_datetime}
    assert {k for k, r in rows.items() if r[1] == Decimal("7.77")} == {f"V{n:08d}" for n in updates}
    assert run.alive(), run.log_tail()
