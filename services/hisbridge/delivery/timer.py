"""The flush timer's step, pure over the SinkIO interface (runtime.sink_io.PgSinkIO is the real adapter):
recover unfinished flushes once, plan (delivery.flush.plan_flushes), flush every (table, batch) closed by
the watermark and inside its window; front-end down while a flush is due → alert at once, back off and
retry until the window ends; one table's flush refused → alert, the others still flushed, it retried at
the next step."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping, Protocol

from hisbridge.clock import local_text, wall_text
from hisbridge.delivery import staging
from hisbridge.delivery.flush import (FlushResult, PlannedFlush, WindowClosed,
                                      open_window, plan_flushes,
                                      retry_decision)
from hisbridge.delivery.schedule import Schedule

log = logging.getLogger(__name__)


class FrontendUnavailable(RuntimeError):
    """The front-end database cannot be reached (connection refused, dropped, timed out)."""


class FlushFailed(RuntimeError):
    """One (table, batch) could not be flushed, the databases reachable: a statement was refused (a column
    the front-end table lacks, a value it cannot hold, a lock timeout). The other tables' flushes go on."""


class SinkIO(Protocol):
    def recover(self) -> list[FlushResult]: ...
    def staged_batches(self) -> list[staging.StagedBatch]: ...
    def watermarks(self) -> Mapping[str, datetime | None]: ...
    def flush(self, plan: PlannedFlush, now: datetime) -> FlushResult: ...


@dataclass
class LoopState:
    recovered: bool = False
    attempt: int = 0                       # failed front-end attempts in a row
    wait_until: datetime | None = None     # back-off (or gave up until the window's end)
    alerted: set[tuple[str, ...]] = field(default_factory=set)
    counters: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n


@dataclass(frozen=True)
class TickReport:
    flushed: list[FlushResult] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)      # raised in this tick (each only once)
    waiting: str | None = None                           # why nothing was attempted


def _alert(state: LoopState, report_alerts: list[str], key: tuple[str, ...], counter: str, message: str) -> None:
    if key in state.alerted:
        return
    state.alerted.add(key)
    state.count(counter)
    report_alerts.append(message)
    log.error("ALERT %s: %s (total %s=%d)", counter, message, counter, state.counters[counter])


def _window_end(plan: PlannedFlush, now: datetime, schedule: Schedule) -> datetime:
    window = open_window(plan.cadence, now, schedule)
    if window is None and schedule.backfill_window:
        window = open_window(schedule.backfill_window, now, schedule)
    return window.window_end if window is not None else now


def _frontend_down(state: LoopState, alerts: list[str], now: datetime, window_end: datetime, exc: Exception,
                   schedule: Schedule, due: list[PlannedFlush]) -> str:
    """A flush is due inside an open window and the front-end cannot be reached: alert at once (once per
    window — the operator has the rest of the window to act, not after it), then back off and retry; at
    the window's end give up until the next one."""
    _alert(state, alerts, ("frontend_unreachable", window_end.isoformat()), "frontend_unreachable",
           f"front-end database unreachable while {', '.join(sorted({f'{p.table} {p.batch}' for p in due}))} "
           f"is due; retrying until the window ends {local_text(window_end)}")
    decision = retry_decision(now, window_end, state.attempt, schedule)
    if decision.retry:
        state.attempt += 1
        state.wait_until = now + decision.delay
        log.warning("front-end database unreachable (%s); retry %d in %s", exc, state.attempt, decision.delay)
        return f"front-end unreachable, retry at {local_text(state.wait_until)}"
    state.count("frontend_window_missed")
    log.error("%s", decision.alert)
    state.attempt = 0
    state.wait_until = window_end
    return f"front-end unreachable, gave up until {local_text(window_end)}"


def tick(now: datetime, state: LoopState, io: SinkIO, schedule: Schedule) -> TickReport:
    """One timer step: recover unfinished flushes once, then flush every (table, batch) that is closed by the
    watermark and inside its window; front-end down → alert once, back off until the window ends."""
    flushed: list[FlushResult] = []
    alerts: list[str] = []
    if state.wait_until is not None and now < state.wait_until:
        return TickReport(waiting=f"backing off until {local_text(state.wait_until)}")
    state.wait_until = None
    plans, stalled = plan_flushes(now, io.staged_batches(), io.watermarks(), schedule)
    for a in stalled:
        _alert(state, alerts, ("stalled_watermark", a.table, a.batch), "stalled_watermark",
               f"{a.table} batch {a.batch}: {a.reason}")
    current: PlannedFlush | None = None
    try:
        if not state.recovered:   # a flush the previous run committed but did not mark (kill -9)
            for done in io.recover():
                log.info("recovered flush %s %s report_datetime=%s", done.table, done.batch,
                         wall_text(done.report_datetime, "microseconds"))
                flushed.append(done)
            state.recovered = True
        for current in plans:
            try:
                result = io.flush(current, now)
            except WindowClosed as exc:   # planned with the same `now`: cannot happen unless the guard changed
                log.error("flush of %s %s refused by the window guard: %s", current.table, current.batch, exc)
                continue
            except FlushFailed as exc:    # this table's alone: the tables after it must not wait for it
                _alert(state, alerts, ("flush_failed", current.table, current.batch, str(exc)), "flush_failed",
                       f"{current.table} batch {current.batch} could not be flushed (retried every step; the "
                       f"other tables go on): {exc}")
                continue
            state.attempt = 0
            if result.outcome != "nothing":
                state.count("flushes")
                state.count("rows_flushed", result.row_count)
                log.info("flushed %s batch %s: %s %d rows, report_datetime=%s (%s)", result.table, result.batch,
                         result.kind, result.row_count,
                         wall_text(result.report_datetime, "microseconds") if result.report_datetime else None,
                         current.reason)
            flushed.append(result)
    except FrontendUnavailable as exc:
        pending = [current] if current is not None else plans
        if not pending:   # only the start-up recovery failed and nothing is due: just try again later
            state.wait_until = now + schedule.retry_base
            return TickReport(flushed, alerts, f"front-end unreachable ({exc}); nothing due")
        end = min(_window_end(p, now, schedule) for p in pending)
        return TickReport(flushed, alerts, _frontend_down(state, alerts, now, end, exc, schedule, pending))
    return TickReport(flushed, alerts)
