"""The flush timer's step over a fake SinkIO: the timer's decisions, not PostgreSQL, are under test here."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hisbridge.clock import SHANGHAI
from hisbridge.delivery.flush import FlushResult
from hisbridge.delivery.schedule import parse
from hisbridge.delivery.staging import StagedBatch
from hisbridge.delivery.timer import FlushFailed, FrontendUnavailable, LoopState, tick


def at(h: int, m: int = 0, s: int = 0, us: int = 0, days: int = 0) -> datetime:
    return datetime(2026, 4, 1, h, m, s, us, tzinfo=SHANGHAI) + timedelta(days=days)


HOSPITAL = parse({})

@dataclass
class FakeIO:
    """The SinkIO interface over lists (the timer's decisions, not PostgreSQL, are under test here)."""
    staged: list[StagedBatch]
    mark: datetime | None
    down: bool = False
    flushed: list[tuple[str, str, datetime]] = field(default_factory=list)
    recovered: int = 0
    refused: set[str] = field(default_factory=set)            # tables whose flush a statement error stops
    attempts: list[str] = field(default_factory=list)

    def recover(self):
        if self.down:
            raise FrontendUnavailable("connection refused")
        self.recovered += 1
        return []

    def staged_batches(self):
        return list(self.staged)

    def watermarks(self):
        return {"mjzzlxx": self.mark, **{b.table: self.mark for b in self.staged}}

    def flush(self, plan, now):
        if self.down:
            raise FrontendUnavailable("connection refused")
        self.attempts.append(plan.table)
        if plan.table in self.refused:
            raise FlushFailed('UndefinedColumn (42703): column "xyz" of relation "basy" does not exist')
        self.flushed.append((plan.table, plan.batch, now))
        self.staged = [b for b in self.staged if (b.table, b.batch) != (plan.table, plan.batch)]
        return FlushResult(plan.table, plan.batch, "flushed", now.replace(tzinfo=None), 3, plan.kind)

def pending(batch: str = "2026-04-01", before: bool = False) -> StagedBatch:
    return StagedBatch("mjzzlxx", "daily", batch, 3, before)

def test_tick_recovers_once_and_flushes_nothing_before_the_window():
    io, state = FakeIO([pending()], at(19)), LoopState()
    assert tick(at(17, 59, 59), state, io, HOSPITAL).flushed == []
    tick(at(17, 59, 59, 999999), state, io, HOSPITAL)
    assert io.flushed == [] and io.recovered == 1 and state.recovered

def test_tick_flushes_a_closed_batch_once_inside_the_window():
    io, state = FakeIO([pending()], at(18, 10)), LoopState()
    report = tick(at(18), state, io, HOSPITAL)
    assert [(r.batch, r.kind) for r in report.flushed] == [("2026-04-01", "first")]
    assert tick(at(18, 1), state, io, HOSPITAL).flushed == []
    assert state.counters == {"flushes": 1, "rows_flushed": 3}

def test_tick_waits_for_the_watermark_then_flushes():
    io, state = FakeIO([pending()], at(18, 9, 59)), LoopState()
    assert tick(at(18, 30), state, io, HOSPITAL).flushed == []
    io.mark = at(18, 10)
    assert [r.batch for r in tick(at(18, 31), state, io, HOSPITAL).flushed] == ["2026-04-01"]

def test_stalled_watermark_alerts_once_near_the_window_end():
    io, state = FakeIO([pending()], at(17)), LoopState()
    assert tick(at(20, 59), state, io, HOSPITAL).alerts == []
    first = tick(at(21, 0), state, io, HOSPITAL)
    again = tick(at(21, 1), state, io, HOSPITAL)
    assert len(first.alerts) == 1 and "not closed" in first.alerts[0] and again.alerts == []
    assert state.counters["stalled_watermark"] == 1 and io.flushed == []

def test_frontend_down_when_the_window_opens_alerts_at_once_then_backs_off_and_flushes_when_back():
    io, state = FakeIO([pending()], at(19), down=True), LoopState()
    report = tick(at(18), state, io, HOSPITAL)
    assert "retry" in report.waiting and state.wait_until == at(18) + HOSPITAL.retry_base
    assert len(report.alerts) == 1 and "mjzzlxx 2026-04-01" in report.alerts[0] and "22:00" in report.alerts[0]
    assert tick(at(18, 0, 4), state, io, HOSPITAL).waiting.startswith("backing off")
    tick(at(18, 0, 5), state, io, HOSPITAL)                  # second failure: longer delay
    assert state.wait_until == at(18, 0, 5) + 2 * HOSPITAL.retry_base
    io.down = False
    report = tick(at(18, 0, 15), state, io, HOSPITAL)
    assert [r.batch for r in report.flushed] == ["2026-04-01"] and state.attempt == 0
    assert state.counters["frontend_unreachable"] == 1 and "frontend_window_missed" not in state.counters

def test_frontend_down_until_the_window_end_alerts_and_waits_for_the_next_window():
    io, state = FakeIO([pending()], at(19), down=True), LoopState()
    assert len(tick(at(18), state, io, HOSPITAL).alerts) == 1       # the alert comes as the window opens
    report = tick(at(21, 59, 58), state, io, HOSPITAL)
    assert report.alerts == [] and "gave up" in report.waiting     # not again as it closes
    assert state.counters["frontend_unreachable"] == 1 and state.counters["frontend_window_missed"] == 1
    assert state.wait_until == at(22)
    io.down = False
    assert tick(at(23), state, io, HOSPITAL).flushed == []    # window closed: nothing until the next one
    report = tick(at(18, 0, 1, days=1), state, io, HOSPITAL)
    assert [(r.batch, r.kind) for r in report.flushed] == [("2026-04-01", "first")]


def test_a_table_whose_flush_is_refused_alerts_once_and_the_tables_after_it_still_flush():
    io = FakeIO([StagedBatch("basy", "daily", "2026-04-01", 2, False), pending()], at(18, 10), refused={"basy"})
    state = LoopState()
    first = tick(at(18), state, io, HOSPITAL)
    assert [r.table for r in first.flushed] == ["mjzzlxx"]            # basy is planned first, and fails
    assert len(first.alerts) == 1 and first.alerts[0].startswith("basy batch 2026-04-01 could not be flushed")
    assert 'column "xyz" of relation "basy" does not exist' in first.alerts[0]
    again = tick(at(18, 1), state, io, HOSPITAL)
    assert again.alerts == [] and io.attempts == ["basy", "mjzzlxx", "basy"]     # retried, alerted once
    io.refused = set()                                             # an operator added the column
    assert [r.table for r in tick(at(18, 2), state, io, HOSPITAL).flushed] == ["basy"]
    assert state.counters["flush_failed"] == 1
