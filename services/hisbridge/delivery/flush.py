"""Flush: when a staged (table, batch) may go to the front-end, and the one transaction that sends it.

Pure core:
  open_window(cadence, now, schedule)   the batch whose delivery window contains `now`, if any
  check_window(...)                     THE window guard — every front-end write passes through it
  plan_flushes(now, staged, marks, s)   which (table, batch) go out now, and which alerts to raise
  retry_decision(...)                   front-end unreachable: back off, or give up at window end
Shell: flush_batch(...) — see the protocol in its docstring.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping

import psycopg2.errors
from hisbridge.clock import local_text
from hisbridge.delivery import ledger, replay, staging
from hisbridge.delivery.schedule import (Batch, Schedule, batch_by_name,
                                         batch_for, is_closed)
from hisbridge.messages import cadence_name, render
from hisbridge.settings import defaults
from psycopg2 import sql

log = logging.getLogger(__name__)
KINDS = ledger.KINDS


class WindowClosed(RuntimeError):
    """A write to a front-end table outside a permitted window (and not forced by an operator)."""

    def __init__(self, decision: "GuardDecision") -> None:
        super().__init__(decision.reason)
        self.decision = decision


# --- windows ---------------------------------------------------------------------------------------------

def open_window(cadence: str, now: datetime, schedule: Schedule) -> Batch | None:
    """The batch of `cadence` whose delivery window contains `now` (aware), or None."""
    rule = schedule.windows[cadence]
    # a window opens `open_after` past its batch's end: the latest batch end <= now − open_after
    containing = batch_for(cadence, now - rule.open_after, schedule.windows)
    latest_ended = batch_for(cadence, containing.start - timedelta(microseconds=1), schedule.windows)
    return latest_ended if latest_ended.in_window(now) else None


@dataclass(frozen=True)
class Forced:
    operator: str
    reason: str


@dataclass(frozen=True)
class GuardDecision:
    permitted: bool
    message_id: str                # why, as a hisbridge.messages id with its parameters
    params: Mapping[str, Any]
    window: Batch | None = None   # the open window that carries the write
    forced: bool = False

    @property
    def reason(self) -> str:
        """Why, in English (the ledger's reason column, log lines); times in Asia/Shanghai."""
        return render(self.message_id, self.params, "en")


def check_window(cadence: str, batch: str, now: datetime, schedule: Schedule,
                 forced: Forced | None = None) -> GuardDecision:
    """THE window guard: may a row of `batch` be written to a front-end table at `now`?

    Yes inside the batch's own window, or — for a batch whose window has passed (late rows, updates after
    the flush, back-fill) — inside the next open window of its cadence (or of the back-fill cadence).
    Never before the batch's own window opens. An operator's --force bypasses it (logged by the caller).
    """
    target = batch_by_name(cadence, batch, schedule.windows)
    about = {"cadence": cadence_name(cadence), "batch": batch, "now": now, "start": target.window_start,
             "end": target.window_end}
    if forced is not None:
        return GuardDecision(True, "window.forced", {"operator": forced.operator, "reason": forced.reason},
                             None, forced=True)
    if now < target.window_start:
        return GuardDecision(False, "window.before", about)
    window = open_window(cadence, now, schedule)
    if window is not None and window.end >= target.end:
        return GuardDecision(True, "window.open", {"window": window.name}, window)
    if schedule.backfill_enabled and schedule.backfill_window and now >= target.window_end:
        since = schedule.backfill_since.get(cadence)
        if since is not None and batch < since:
            return GuardDecision(False, "window.backfill_before", {**about, "since": since})
        carrier = open_window(schedule.backfill_window, now, schedule)
        if carrier is not None:
            return GuardDecision(True, "window.backfill", {"window": cadence_name(schedule.backfill_window),
                                                           "carrier": carrier.name}, carrier)
    return GuardDecision(False, "window.closed", about)


def require_window(cadence: str, batch: str, now: datetime, schedule: Schedule,
                   forced: Forced | None = None) -> GuardDecision:
    decision = check_window(cadence, batch, now, schedule, forced)
    if not decision.permitted:
        raise WindowClosed(decision)
    return decision


# --- planning -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlannedFlush:
    table: str
    cadence: str
    batch: str
    kind: str               # first | resubmission
    reason: str


@dataclass(frozen=True)
class Alert:
    table: str
    batch: str
    reason: str


def plan_flushes(now: datetime, staged: Iterable[staging.StagedBatch], watermarks: Mapping[str, datetime | None],
                 schedule: Schedule) -> tuple[list[PlannedFlush], list[Alert]]:
    """Which (table, batch) may be flushed now: closed by the watermark AND inside a permitted window.

    A batch still open near the end of its own window raises an alert; with policy flush_at_margin it
    goes out anyway at window end − margin (rows arriving later follow as a resubmission).
    """
    flushes: list[PlannedFlush] = []
    alerts: list[Alert] = []
    for item in staged:
        if item.pending <= 0:
            continue
        guard = check_window(item.cadence, item.batch, now, schedule)
        if not guard.permitted:
            continue
        kind = "resubmission" if item.flushed_before else "first"
        target = batch_by_name(item.cadence, item.batch, schedule.windows)
        mark = watermarks.get(item.table)
        if is_closed(target, mark, schedule.grace):
            flushes.append(PlannedFlush(item.table, item.cadence, item.batch, kind, guard.reason))
            continue
        decision = _stalled(item, target, guard.window, mark, now, schedule)
        if decision is not None:
            alert, flush_now = decision
            alerts.append(alert)
            if flush_now:
                flushes.append(PlannedFlush(item.table, item.cadence, item.batch, kind,
                                            "watermark stalled: flushing what is there at window end − margin"))
    return flushes, alerts


def _stalled(item: staging.StagedBatch, target: Batch, window: Batch | None, mark: datetime | None, now: datetime,
             schedule: Schedule) -> tuple[Alert, bool] | None:
    if window is None:
        return None
    window_end = window.window_end
    if now < window_end - schedule.stall_alert_before:
        return None
    shown = local_text(mark) if mark else "none"
    reason = (f"batch not closed: watermark {shown} < {local_text(target.end + schedule.grace)}, "
              f"window ends {local_text(window_end)} (policy {schedule.stall_policy})")
    flush_now = schedule.stall_policy == "flush_at_margin" and now >= window_end - schedule.stall_margin
    return Alert(item.table, item.batch, reason), flush_now


# --- front-end unreachable --------------------------------------------------------------------------------

@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    delay: timedelta
    alert: str | None = None


def retry_decision(now: datetime, window_end: datetime, attempt: int, schedule: Schedule) -> RetryDecision:
    """After `attempt` failed connection attempts (0-based): wait and retry, or give up and alert.

    Exponential backoff capped at retry_cap; never sleeps past the window end, since a write after it
    would be refused by the guard anyway.
    """
    delay = min(schedule.retry_cap, schedule.retry_base * (2 ** min(attempt, 30)))
    if now + delay >= window_end:
        return RetryDecision(False, timedelta(0),
                             f"front-end database unreachable after {attempt + 1} attempts; window ended "
                             f"{local_text(window_end)} — batch waits for the next window")
    return RetryDecision(True, delay)


# --- the flush transaction (shell) ------------------------------------------------------------------------
#
# Protocol across the two databases (front-end and staging cannot share a transaction):
#   1 claim    (staging tx)   store the plan (table, batch, report_datetime, kind, cut = highest committed
#                             staging seq, taken while no writer is in flight)
#   2 write    (front-end tx) unless the ledger already has (table, batch, report_datetime): stream the
#                             pending rows above the last cut and at or below this one (staging COPY TO →
#                             front-end COPY FROM), straight into the table or via a temp table and an
#                             upsert, with that report_datetime (each row's stored COPY line behind it);
#                             the ledger's count and checksum are read meanwhile on a second staging
#                             session in the same snapshot; insert the ledger row — one commit
#   3 mark     (staging tx)   one row in hisbridge.flushed (table, batch, cut); ledger copied; plan removed
# A crash after 1 leaves a plan: a rerun in the same window reuses its report_datetime, so step 2 either
# finds its ledger row (committed before the crash → only step 3 runs) or writes once. Any write to a row
# gives it a new seq > cut, so "pending and seq <= cut" is the same set at steps 2 and 3; a row changed
# meanwhile stays pending and goes out next window. Nothing is lost, nothing is written twice.

@dataclass(frozen=True)
class Plan:
    table: str
    batch: str
    report_datetime: datetime   # naive Asia/Shanghai wall-clock
    kind: str
    cut: int                    # highest staging seq the flush carries
    window_batch: str | None
    operator: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class FlushResult:
    table: str
    batch: str
    outcome: str                # flushed | recovered | nothing
    report_datetime: datetime | None = None
    row_count: int = 0
    kind: str | None = None


def lock_frontend_ddl(cur) -> None:
    """One DDL writer at a time on the front-end (a transaction-level advisory lock): the sink's connect,
    another worker's, `catalog migrate-frontend`."""
    cur.execute("SELECT pg_advisory_xact_lock(hashtext('hisbridge.frontend.ddl'))")


def ensure_frontend(conn, ddl_path=None) -> None:
    """Ledger schema, and the catalog's generated front-end DDL (CREATE TABLE IF NOT EXISTS; the checkout's
    schemas/frontend/frontend.sql unless the settings name another)."""
    ledger.ensure_frontend_ledger(conn)
    path = ddl_path or defaults().paths.frontend_sql / "frontend.sql"
    with conn, conn.cursor() as cur:
        lock_frontend_ddl(cur)
        cur.execute(path.read_text(encoding="utf-8"))


def current_plan(staging_conn, table: str, batch: str) -> Plan | None:
    with staging_conn, staging_conn.cursor() as cur:
        cur.execute("""SELECT tbl, batch, report_datetime, kind, cut, window_batch, operator, reason
                       FROM hisbridge.flush_plan WHERE tbl = %s AND batch = %s""", (table, batch))
        row = cur.fetchone()
    return Plan(*row) if row else None


def claim(staging_conn, frontend_conn, table: str, batch: str, now: datetime, window_batch: str | None,
          forced: Forced | None = None) -> Plan | None:
    """Step 1: a new plan with a fresh report_datetime and the cut of rows it carries; None if none pending.
    Rows a replay staged make it a `replay` flush, ledgered with that replay's operator and reason."""
    with frontend_conn, frontend_conn.cursor() as fcur:
        last = ledger.last_report_datetime(fcur, table, batch)
    kind = "forced" if forced else ("resubmission" if last is not None else "first")
    rdt = ledger.local_report_datetime(now, last)
    with staging_conn, staging_conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (staging.WRITE_LOCK,))  # no write in flight
        cur.execute("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM hisbridge.staged_seq")
        cut = cur.fetchone()[0]
        cur.execute("SELECT EXISTS (SELECT 1 FROM hisbridge.staged s WHERE " + staging.pending_predicate() + ")",
                    {"tbl": table, "batch": batch, "cut": cut})
        if not cur.fetchone()[0]:
            return None
        operator, reason = (forced.operator, forced.reason) if forced else (None, None)
        replayed = None if forced else replay.flush_replay(cur, staging.pending_predicate(),
                                                           {"tbl": table, "batch": batch, "cut": cut})
        if replayed is not None:
            kind, operator, reason = "replay", replayed.operator, replayed.reason
        plan = Plan(table, batch, rdt, kind, cut, window_batch, operator, reason)
        cur.execute("""INSERT INTO hisbridge.flush_plan (tbl, batch, report_datetime, kind, cut, window_batch,
                                                         operator, reason) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)""",
                    (table, batch, rdt, kind, cut, window_batch, plan.operator, plan.reason))
    return plan


def _columns(table) -> list[str]:
    return [f.name for f in table.fields]


def _upsert_sql(table) -> sql.Composed:
    cols = _columns(table)
    pk = set(table.primary_key)
    updates = [sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in cols if c not in pk]
    return sql.SQL("""INSERT INTO {t} ({cols}) SELECT {cols} FROM flush_in
                      ON CONFLICT ({pk}) DO UPDATE SET {upd}""").format(
        t=sql.Identifier(table.name), cols=sql.SQL(", ").join(map(sql.Identifier, cols)),
        pk=sql.SQL(", ").join(map(sql.Identifier, table.primary_key)), upd=sql.SQL(", ").join(updates))


def _copied_columns(table) -> list[str]:
    """The front-end columns in the order a flush streams them: the sink-stamped first, then the line."""
    return [*table.stamped_names, *table.carried_names]


def _extract_sql(table, plan: Plan) -> sql.Composed:
    """Staging side: the carried rows as COPY text lines, the plan's report_datetime in front of each
    row's stored line. CSV with delimiter and quote characters a line never holds (copy_line escapes
    every control character) writes the line verbatim, where COPY text would escape its tabs again.
    Parameters: tbl, batch, cut."""
    stamp = plan.report_datetime.isoformat(sep=" ")
    prefix = sql.Literal("".join(stamp + "\t" for _ in table.stamped_names))
    return sql.SQL("COPY (SELECT {prefix} || s.line FROM hisbridge.staged s WHERE {where}) TO STDOUT "
                   "WITH (FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02')").format(
        prefix=prefix, where=sql.SQL(staging.pending_predicate()))


def _copy_in_sql(target: str, table) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(target),
                                                     sql.SQL(", ").join(map(sql.Identifier, _copied_columns(table))))


PIPE_BUFFER = 1 << 20


def _stream(scur, copy_out, fcur, copy_in) -> int:
    """COPY TO STDOUT on staging straight into COPY FROM STDIN on the front-end, through a pipe: both
    servers work at once and nothing is spooled. Returns the rows the front-end took. A failure on the
    staging side raises here (the front-end may have taken a truncated stream: the caller's transaction
    must roll back, which raising does)."""
    read_fd, write_fd = os.pipe()
    reader, writer = os.fdopen(read_fd, "rb", PIPE_BUFFER), os.fdopen(write_fd, "wb", PIPE_BUFFER)
    failed: list[BaseException] = []

    def pump() -> None:
        try:
            scur.copy_expert(copy_out, writer, PIPE_BUFFER)
        except BaseException as exc:  # noqa: BLE001 — re-raised in the caller's thread
            failed.append(exc)
        finally:
            writer.close()

    thread = threading.Thread(target=pump, name="flush-copy-out", daemon=True)
    thread.start()
    try:
        fcur.copy_expert(copy_in, reader, PIPE_BUFFER)
        taken = fcur.rowcount
    finally:
        while reader.read(PIPE_BUFFER):   # the front-end stopped early: let staging finish its COPY
            pass
        reader.close()
        thread.join()
    if failed:
        raise failed[0]
    return taken


class _Beside:
    """One read on a second staging connection in the same snapshot, while the stream runs: the ledger's
    count and checksum scan the carried rows again, and on their own session that scan overlaps the
    front-end's COPY instead of following it.

    The second session takes its locks on the tables it reads before the stream starts, in the caller's
    thread. Otherwise a DDL statement queued between the stream's lock and its own (any ACCESS EXCLUSIVE
    on hisbridge.staged, waiting for the stream's transaction) would queue this read behind it, and the
    caller would wait for the read forever: a deadlock through the application PostgreSQL cannot see."""

    def __init__(self, staging_conn, snapshot: str, read) -> None:
        self._outcome: list = []
        password = staging_conn.info.password   # the dsn shows it masked
        self._conn = psycopg2.connect(staging_conn.dsn, **({"password": password} if password else {}))
        try:
            with self._conn.cursor() as cur:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                cur.execute("SET TRANSACTION SNAPSHOT %s", (snapshot,))
                cur.execute(f"LOCK TABLE {', '.join(staging.PENDING_READS)} IN ACCESS SHARE MODE")
        except BaseException:
            self._conn.close()
            raise
        self._thread = threading.Thread(target=self._run, args=(read,), name="flush-checksum", daemon=True)
        self._thread.start()

    def _run(self, read) -> None:
        try:
            with self._conn, self._conn.cursor() as cur:
                self._outcome.append(read(cur))
        except BaseException as exc:  # noqa: BLE001 — re-raised in the caller's thread
            self._outcome.append(exc)
        finally:
            self._conn.close()

    def wait(self) -> None:
        self._thread.join()

    def result(self):
        self.wait()
        if isinstance(self._outcome[0], BaseException):
            raise self._outcome[0]
        return self._outcome[0]


def _load(scur, fcur, table, plan: Plan) -> int:
    """Send the carried rows; returns how many the front-end table took.

    A first delivery normally meets no existing keys, so it goes straight into the table by COPY (the
    raw-COPY speed). If a key exists already (a record that moved batches, or any resubmission) that
    attempt is rolled back to its savepoint and the rows go through a temp table and INSERT … ON CONFLICT
    — the same final content either way."""
    copy_out = scur.mogrify(_extract_sql(table, plan), {"tbl": plan.table, "batch": plan.batch, "cut": plan.cut})
    if plan.kind == "first":
        fcur.execute("SAVEPOINT flush_direct")
        try:
            taken = _stream(scur, copy_out, fcur, _copy_in_sql(table.name, table).as_string(fcur))
            fcur.execute("RELEASE SAVEPOINT flush_direct")
            return taken
        except psycopg2.errors.UniqueViolation:
            fcur.execute("ROLLBACK TO SAVEPOINT flush_direct")
            log.info("flush %s %s: keys exist on the front-end, upserting instead", plan.table, plan.batch)
    fcur.execute(sql.SQL("CREATE TEMP TABLE flush_in ON COMMIT DROP AS SELECT * FROM {} WITH NO DATA")
                 .format(sql.Identifier(table.name)))
    _stream(scur, copy_out, fcur, _copy_in_sql("flush_in", table).as_string(fcur))
    fcur.execute(_upsert_sql(table))
    return fcur.rowcount


def write_frontend(staging_conn, frontend_conn, table, plan: Plan, before_commit=None):
    """Step 2: the ONE front-end transaction of a flush (rows + ledger); returns (ledger row, written).

    The rows and their count/checksum are read from one REPEATABLE READ snapshot of staging, so the
    ledger describes exactly the rows written (and the two counts are checked against each other)."""
    with frontend_conn, frontend_conn.cursor() as fcur:
        done = ledger.find(fcur, plan.table, plan.batch, plan.report_datetime)
        if done is not None:
            return done, False
        with staging_conn, staging_conn.cursor() as scur:
            scur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            scur.execute("SELECT pg_export_snapshot()")
            beside = _Beside(staging_conn, scur.fetchone()[0],
                             lambda cur: staging.key_checksum(cur, plan.table, plan.batch, plan.cut))
            try:
                count = _load(scur, fcur, table, plan)
            except BaseException:
                beside.wait()   # the stream's own error is the one to report
                raise
            staged_count, checksum = beside.result()
        if staged_count != count:
            raise RuntimeError(f"flush {plan.table} {plan.batch}: front-end took {count} rows, "
                               f"staging carries {staged_count} — rolled back")
        row = ledger.LedgerRow(plan.table, plan.batch, plan.report_datetime, count, checksum, plan.kind,
                               plan.operator, plan.reason)
        ledger.insert(fcur, row)
        if before_commit is not None:
            before_commit()  # tests: crash between the writes and the commit
    return row, True


def mark_flushed(staging_conn, plan: Plan, row: ledger.LedgerRow) -> int:
    """Step 3: the rows the plan carried → flushed with its report_datetime (one cut row); plan removed.
    Returns the ledger's row count."""
    with staging_conn, staging_conn.cursor() as cur:
        staging.mark_flushed(cur, plan.table, plan.batch, plan.cut, plan.report_datetime)
        ledger.copy_to_staging(cur, row)
        cur.execute("DELETE FROM hisbridge.flush_plan WHERE tbl = %s AND batch = %s", (plan.table, plan.batch))
        replay.mark_delivered(cur)
    return row.row_count


def release_plan(staging_conn, plan: Plan) -> None:
    """Abandon a plan whose front-end transaction never committed: its rows simply stay pending."""
    with staging_conn, staging_conn.cursor() as cur:
        cur.execute("DELETE FROM hisbridge.flush_plan WHERE tbl = %s AND batch = %s", (plan.table, plan.batch))


def recover(staging_conn, frontend_conn) -> list[FlushResult]:
    """At start: finish every plan whose front-end transaction committed (from the front-end ledger)."""
    with staging_conn, staging_conn.cursor() as cur:
        cur.execute("""SELECT tbl, batch, report_datetime, kind, cut, window_batch, operator, reason
                       FROM hisbridge.flush_plan""")
        plans = [Plan(*r) for r in cur.fetchall()]
    done = []
    for plan in plans:
        with frontend_conn, frontend_conn.cursor() as fcur:
            row = ledger.find(fcur, plan.table, plan.batch, plan.report_datetime)
        if row is not None:
            mark_flushed(staging_conn, plan, row)
            done.append(FlushResult(plan.table, plan.batch, "recovered", plan.report_datetime, row.row_count,
                                    row.kind))
    return done


def flush_batch(staging_conn, frontend_conn, table, batch: str, now: datetime, schedule: Schedule,
                forced: Forced | None = None, before_commit=None) -> FlushResult:
    """Flush the pending rows of (table, batch) — only through the window guard (or an operator's force)."""
    guard = require_window(table.cadence, batch, now, schedule, forced)
    if forced is not None:
        log.warning("FORCED flush of %s batch %s by %s: %s", table.name, batch, forced.operator, forced.reason)
    window_name = guard.window.name if guard.window else None
    plan = current_plan(staging_conn, table.name, batch)
    if plan is not None:
        recovered = [r for r in recover(staging_conn, frontend_conn) if (r.table, r.batch) == (table.name, batch)]
        if recovered:
            return recovered[0]
        if plan.window_batch != window_name or (forced is not None) != (plan.kind == "forced"):
            # the unfinished attempt belongs to another window (or mode): its transaction is long dead
            release_plan(staging_conn, plan)
            plan = None
    if plan is None:
        plan = claim(staging_conn, frontend_conn, table.name, batch, now, window_name, forced)
        if plan is None:
            return FlushResult(table.name, batch, "nothing")
    # after the claim: its cut may take a row a sink of the catalog before staged up to the last moment
    filled = staging.fill_lines(staging_conn, table, batch)
    if filled:
        log.info("flush %s %s: built the COPY line of %d rows staged without one or under another catalog",
                 table.name, batch, filled)
    row, _wrote = write_frontend(staging_conn, frontend_conn, table, plan, before_commit)
    mark_flushed(staging_conn, plan, row)
    return FlushResult(table.name, batch, "flushed", plan.report_datetime, row.row_count, plan.kind)
