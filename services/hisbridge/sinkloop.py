"""Sink wiring helpers: what the sink agents and the flush timer do, as functions testable without Kafka.
The topics, keys, headers and marks it reads are hisbridge.contract's.

Watermark of a connector = min over the core partitions of the latest mark seen on each (watermark.py);
a table's watermark = the minimum over the connectors that mark the sink's topics (any of them may feed
it, directly or through a lookup), None while any of them has not reported on every partition.

Pieces:
  stage_chunk(events, …)   a take_events batch → staging rows + mark progress + problems (pure)
  table_watermarks(…)      persisted progress → per-table watermark (pure)
  tick(now, state, io, …)  ONE step of the flush timer: recover once, plan, flush, retry/alert (pure over
                           the SinkIO interface; PgSinkIO is the real adapter)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable, Mapping, Protocol

import psycopg2

from hisbridge import avrocodec, staging
from hisbridge.batching import BatchError, assign_batch
from hisbridge.catalog.model import Table
from hisbridge.contract import BATCH_HEADER, core_topic, is_mark, parse_mark, source_of_headers, text
from hisbridge.flush import (FlushResult, PlannedFlush, WindowClosed, ensure_frontend, flush_batch, open_window,
                             plan_flushes, recover, retry_decision)
from hisbridge.schedule import Schedule
from hisbridge.watermark import ConnectorProgress, Partition, watermark

log = logging.getLogger(__name__)


def tables_by_topic(tables: Iterable[Table], prefix: str) -> dict[str, Table]:
    return {core_topic(prefix, t.name): t for t in tables}


# --- staging a batch of events ----------------------------------------------------------------------------

@dataclass(frozen=True)
class SinkEvent:
    topic: str
    partition: int
    offset: int
    value: bytes | None
    headers: Mapping[str, bytes]


@dataclass(frozen=True)
class StageChunk:
    rows: list[staging.StagedRow]
    progress: dict[tuple[str, str, int], int]     # (connector, topic, partition) → latest mark ms
    problems: list[str]                           # events that cannot be staged (logged, counted)


def _staged_row(table: Table, event: SinkEvent, schemas: Mapping[bytes, avrocodec.AvroSchema]) -> staging.StagedRow:
    record = avrocodec.decode(event.value or b"", schemas)
    source = source_of_headers(event.headers)
    batch = text(event.headers.get(BATCH_HEADER)) or assign_batch(table, record).name
    commit_ms = source.get("commit_time_ms")
    return staging.staged_row(table, record, batch, source.get("lsn"), int(commit_ms) if commit_ms is not None else 0)


def stage_chunk(events: Iterable[SinkEvent], topics: Mapping[str, Table],
                schemas: Mapping[bytes, avrocodec.AvroSchema]) -> StageChunk:
    """Split a consumed batch into staging rows and mark progress. A bad event is a problem (it cannot be
    staged, so it is reported with its position — never identity values), never an exception."""
    rows: list[staging.StagedRow] = []
    progress: dict[tuple[str, str, int], int] = {}
    problems: list[str] = []
    for event in events:
        where = f"{event.topic}[{event.partition}]@{event.offset}"
        try:
            if is_mark(event.headers):
                connector, ms = parse_mark(event.value)
                key = (connector, event.topic, event.partition)
                progress[key] = max(ms, progress.get(key, ms))
                continue
            table = topics.get(event.topic)
            if table is None:
                problems.append(f"{where}: topic is not a catalog table's core topic")
                continue
            rows.append(_staged_row(table, event, schemas))
        except (ValueError, KeyError, TypeError, BatchError, EOFError) as exc:
            # AvroCodecError/JSON/batch/business-key errors; the message names fields, not values
            problems.append(f"{where}: {type(exc).__name__}: {str(exc)[:200]}")
    return StageChunk(rows, progress, problems)


# --- watermarks from persisted progress ---------------------------------------------------------------------

def connector_progress(rows: Iterable[tuple[str, str, int, int]],
                       expected: Iterable[Partition] = ()) -> dict[str, ConnectorProgress]:
    """(connector, topic, partition, ms) rows → progress per connector; every expected partition must report."""
    seen: dict[str, dict[Partition, int]] = {}
    for connector, topic, part, ms in rows:
        seen.setdefault(connector, {})[(topic, part)] = ms
    must = frozenset(expected)
    return {c: ConnectorProgress(seen_ms=s, expected=must) for c, s in seen.items()}


def table_watermarks(progress: Mapping[str, ConnectorProgress], tables: Iterable[str]) -> dict[str, datetime | None]:
    """Each table's watermark: the minimum over all connectors (None if any is unknown, or none reported)."""
    marks = [watermark(p) for p in progress.values()]
    overall = None if not marks or any(m is None for m in marks) else min(marks)
    return {t: overall for t in tables}


# --- the flush timer's step ---------------------------------------------------------------------------------

class FrontendUnavailable(RuntimeError):
    """The front-end database cannot be reached (connection refused, dropped, timed out)."""


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
                   schedule: Schedule) -> str:
    decision = retry_decision(now, window_end, state.attempt, schedule)
    if decision.retry:
        state.attempt += 1
        state.wait_until = now + decision.delay
        log.warning("front-end database unreachable (%s); retry %d in %s", exc, state.attempt, decision.delay)
        return f"front-end unreachable, retry at {state.wait_until.isoformat()}"
    _alert(state, alerts, ("frontend_unreachable", window_end.isoformat()), "frontend_unreachable",
           decision.alert or "front-end database unreachable")
    state.attempt = 0
    state.wait_until = window_end
    return f"front-end unreachable, gave up until {window_end.isoformat()}"


def tick(now: datetime, state: LoopState, io: SinkIO, schedule: Schedule) -> TickReport:
    """One timer step: recover unfinished flushes once, then flush every (table, batch) that is closed by the
    watermark and inside its window; front-end down → back off until the window ends, then alert."""
    flushed: list[FlushResult] = []
    alerts: list[str] = []
    if state.wait_until is not None and now < state.wait_until:
        return TickReport(waiting=f"backing off until {state.wait_until.isoformat()}")
    state.wait_until = None
    plans, stalled = plan_flushes(now, io.staged_batches(), io.watermarks(), schedule)
    for a in stalled:
        _alert(state, alerts, ("stalled_watermark", a.table, a.batch), "stalled_watermark",
               f"{a.table} batch {a.batch}: {a.reason}")
    current: PlannedFlush | None = None
    try:
        if not state.recovered:   # a flush the previous run committed but did not mark (kill -9)
            for done in io.recover():
                log.info("recovered flush %s %s report_datetime=%s", done.table, done.batch, done.report_datetime)
                flushed.append(done)
            state.recovered = True
        for current in plans:
            try:
                result = io.flush(current, now)
            except WindowClosed as exc:   # planned with the same `now`: cannot happen unless the guard changed
                log.error("flush of %s %s refused by the window guard: %s", current.table, current.batch, exc)
                continue
            state.attempt = 0
            if result.outcome != "nothing":
                state.count("flushes")
                state.count("rows_flushed", result.row_count)
                log.info("flushed %s batch %s: %s %d rows, report_datetime=%s (%s)", result.table, result.batch,
                         result.kind, result.row_count, result.report_datetime, current.reason)
            flushed.append(result)
    except FrontendUnavailable as exc:
        pending = [current] if current is not None else plans
        if not pending:   # only the start-up recovery failed and nothing is due: just try again later
            state.wait_until = now + schedule.retry_base
            return TickReport(flushed, alerts, f"front-end unreachable ({exc}); nothing due")
        end = min(_window_end(p, now, schedule) for p in pending)
        return TickReport(flushed, alerts, _frontend_down(state, alerts, now, end, exc, schedule))
    return TickReport(flushed, alerts)


# --- the real adapter ---------------------------------------------------------------------------------------

class PgSinkIO:
    """SinkIO over the staging and front-end PostgreSQL databases (connections opened lazily, reopened
    after a failure). `expected` gives the core partitions every connector must have marked."""

    def __init__(self, tables: Mapping[str, Table], topics: Iterable[str], schedule: Schedule,
                 staging_dsn: str, frontend_dsn: str, frontend_sql: Path, app: str,
                 expected: Callable[[], Iterable[Partition]] = tuple) -> None:
        self.tables, self.topics, self.schedule, self.expected = dict(tables), list(topics), schedule, expected
        self.app = app
        self.staging_dsn, self.frontend_dsn, self.frontend_sql = staging_dsn, frontend_dsn, frontend_sql
        self._stage = None
        self._front = None

    def _staging(self):
        if self._stage is None or self._stage.closed:
            self._stage = psycopg2.connect(self.staging_dsn, connect_timeout=10)
            staging.ensure_schema(self._stage)
        return self._stage

    def _frontend(self):
        if self._front is None or self._front.closed:
            try:
                self._front = psycopg2.connect(self.frontend_dsn, connect_timeout=5)
                ensure_frontend(self._front, self.frontend_sql)
            except psycopg2.OperationalError as exc:
                self._front = None
                raise FrontendUnavailable(str(exc).strip()) from None
        return self._front

    def _on_frontend(self, action):
        front = self._frontend()
        try:
            return action(front)
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            if front.closed or getattr(exc, "pgcode", None) is None:
                self.close_frontend()
                raise FrontendUnavailable(str(exc).strip()) from None
            raise

    def close_frontend(self) -> None:
        if self._front is not None:
            try:
                self._front.close()
            finally:
                self._front = None

    def recover(self) -> list[FlushResult]:
        return self._on_frontend(lambda front: recover(self._staging(), front))

    def staged_batches(self) -> list[staging.StagedBatch]:
        return [b for b in staging.staged_batches(self._staging()) if b.table in self.tables]

    def watermarks(self) -> dict[str, datetime | None]:
        conn = self._staging()
        with conn, conn.cursor() as cur:
            cur.execute("SELECT connector, topic, part, commit_ms FROM hisbridge.progress WHERE topic = ANY(%s)",
                        (self.topics,))
            rows = cur.fetchall()
        return table_watermarks(connector_progress(rows, self.expected()), self.tables)

    def flush(self, plan: PlannedFlush, now: datetime) -> FlushResult:
        table = self.tables[plan.table]
        return self._on_frontend(lambda front: flush_batch(self._staging(), front, table, plan.batch, now,
                                                           self.schedule))

    def record_tick(self, now: datetime) -> None:
        staging.record_tick(self._staging(), self.app, now)

    def reset_staging(self) -> None:
        if self._stage is not None:
            try:
                self._stage.close()
            finally:
                self._stage = None
