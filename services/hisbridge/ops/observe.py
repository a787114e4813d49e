"""What an operator watches, read once and shared by `hisbridge status` and the worker's /metrics: connectors
and tasks, replication slots, consumer lag (records and age), per (table, batch) delivery state and the window
countdown, the watermark, open quarantine, the front-end's reachability.

Readers take a connection target and a short timeout and return plain values; every down service raises
`Unreachable` quickly (a few seconds), never hangs. The states and countdowns are pure functions.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping

from hisbridge.clock import SHANGHAI, as_shanghai
from hisbridge.delivery.schedule import Batch, Schedule, batch_by_name, batch_for, is_closed
from hisbridge.ops.lag import PartitionLag


class Unreachable(RuntimeError):
    """A service (Kafka, Connect, a database) did not answer within the timeout."""


# --- connectors ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskView:
    id: int
    state: str                 # RUNNING, FAILED, PAUSED, UNASSIGNED, RESTARTING
    reason: str | None = None  # the trace summary of a FAILED task


@dataclass(frozen=True)
class ConnectorView:
    name: str
    state: str
    tasks: tuple[TaskView, ...] = ()
    reason: str | None = None

    @property
    def shown_state(self) -> str:
        """One word for a screen: FAILED when anything failed, else the connector's own state (PAUSED…)."""
        if self.state == "FAILED" or any(t.state == "FAILED" for t in self.tasks):
            return "FAILED"
        if self.state == "RUNNING" and not self.tasks:
            return "UNASSIGNED"
        return self.state


def connector_view(name: str, status: Mapping[str, Any] | None) -> ConnectorView:
    from hisbridge.ops.connectors import failure_reason
    if not status:
        return ConnectorView(name, "UNKNOWN")
    conn = status.get("connector", {})
    tasks = tuple(TaskView(int(t.get("id", 0)), t.get("state", "UNKNOWN"),
                           failure_reason(t.get("trace", "")) if t.get("state") == "FAILED" else None)
                  for t in status.get("tasks", []))
    reason = failure_reason(conn.get("trace", "")) if conn.get("state") == "FAILED" else None
    return ConnectorView(name, conn.get("state", "UNKNOWN"), tasks, reason)


def read_connectors(connect_url: str, timeout: float) -> list[ConnectorView]:
    from hisbridge.ops.connectors import ConnectClient, ConnectorError
    client = ConnectClient(connect_url)
    try:
        status, body = client.request("GET", "/connectors?expand=status", timeout=timeout)
    except ConnectorError as exc:
        raise Unreachable(f"Kafka Connect {connect_url}: {exc.__cause__ or exc}") from None
    if status != 200 or not isinstance(body, dict):
        raise Unreachable(f"Kafka Connect {connect_url}: HTTP {status}")
    return [connector_view(name, doc.get("status")) for name, doc in sorted(body.items())]


# --- replication slots -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SlotView:
    name: str
    active: bool
    wal_status: str | None     # reserved / extended / unreserved / lost (PostgreSQL 13+)
    retained_bytes: int | None  # current WAL position − restart_lsn: what the HIS keeps for this slot
    safe_wal_size: int | None   # bytes left before max_slot_wal_keep_size invalidates it (None: no limit)

    @property
    def lost(self) -> bool:
        return self.wal_status == "lost"


SLOTS_SQL = """SELECT slot_name, active, wal_status,
                      pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, safe_wal_size
               FROM pg_replication_slots WHERE slot_type = 'logical' ORDER BY slot_name"""


def read_slots(dsn: str, timeout: float) -> list[SlotView]:
    """Logical slots of a PostgreSQL HIS (pg_replication_slots is readable by any role, the CDC role too)."""
    rows = _query(dsn, timeout, SLOTS_SQL)
    return [SlotView(n, bool(a), w, int(r) if r is not None else None, int(s) if s is not None else None)
            for n, a, w, r, s in rows]


def _connect(dsn: str, timeout: float):
    import psycopg2
    try:
        return psycopg2.connect(dsn, connect_timeout=max(1, int(timeout)))
    except psycopg2.OperationalError as exc:
        raise Unreachable(first_line(exc)) from None


def _query(dsn: str, timeout: float, sql: str, params: tuple = ()) -> list[tuple]:
    return query_if_exists(dsn, timeout, None, sql, params)


def query_if_exists(dsn: str, timeout: float, relation: str | None, sql: str, params: tuple = ()) -> list[tuple]:
    """The rows of `sql`, or none while `relation` does not exist yet (nothing has written there)."""
    conn = _connect(dsn, timeout)
    try:
        with conn, conn.cursor() as cur:
            if relation is not None:
                cur.execute("SELECT to_regclass(%s)", (relation,))
                if cur.fetchone()[0] is None:
                    return []
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def database_up(dsn: str, timeout: float) -> bool:
    try:
        _query(dsn, timeout, "SELECT 1")
    except Unreachable:
        return False
    return True


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


# --- consumer lag ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GroupLag:
    group: str
    state: str
    partitions: tuple[PartitionLag, ...]
    ages: Mapping[tuple[str, int], float] = field(default_factory=dict)  # (topic, partition) → seconds

    @property
    def total(self) -> int:
        return sum(p.lag for p in self.partitions)


def admin_client(bootstrap: str, timeout: float, client_id: str):
    """A kafka-python admin client that gives up after `timeout` seconds when the broker is down."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError
    ms = int(timeout * 1000)
    try:
        return KafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id, request_timeout_ms=ms,
                                bootstrap_timeout_ms=ms, connections_max_idle_ms=max(ms * 3, 10000))
    except (KafkaError, OSError, ValueError) as exc:
        raise Unreachable(f"Kafka {bootstrap}: {first_line(exc)}") from None


def read_lag(bootstrap: str, timeout: float, groups: Iterable[str] | None = None) -> list[GroupLag]:
    """Lag of every consumer group (or `groups`) per partition it committed on, and the age of the oldest
    unconsumed record where there is lag. Connect's own sink groups (connect-*) are left out."""
    from hisbridge.ops.lag import partition_lags
    from kafka.errors import KafkaError
    admin = admin_client(bootstrap, timeout, "hisbridge-observe")
    try:
        states = {g["group_id"]: g.get("group_state") or "?" for g in admin.list_groups()}
        wanted = sorted(g for g in (groups if groups is not None else states) if not g.startswith("connect-"))
        lags = partition_lags(admin, [g for g in wanted if g in states])
    except KafkaError as exc:
        raise Unreachable(f"Kafka {bootstrap}: {first_line(exc)}") from None
    finally:
        admin.close()
    ages = record_ages(bootstrap, timeout, [p for p in lags if p.lag > 0])
    by_group: dict[str, list[PartitionLag]] = {}
    for p in lags:
        by_group.setdefault(p.group, []).append(p)
    return [GroupLag(g, states.get(g, "?"), tuple(by_group.get(g, ())),
                     {(p.topic, p.partition): ages[(p.topic, p.partition, p.committed or 0)]
                      for p in by_group.get(g, ()) if (p.topic, p.partition, p.committed or 0) in ages})
            for g in wanted if g in states]


def record_ages(bootstrap: str, timeout: float, lagging: list[PartitionLag]) -> dict[tuple[str, int, int], float]:
    """(topic, partition, offset) → seconds since the record at that offset (the oldest one a group has not
    consumed) was written, read with one throwaway consumer outside every group."""
    if not lagging:
        return {}
    from kafka import KafkaConsumer, TopicPartition
    wanted = {(p.topic, p.partition, p.committed or 0) for p in lagging}
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             request_timeout_ms=int(timeout * 1000) + 1000,
                             bootstrap_timeout_ms=int(timeout * 1000), consumer_timeout_ms=500)
    out: dict[tuple[str, int, int], float] = {}
    try:
        for topic, part, offset in sorted(wanted):
            tp = TopicPartition(topic, part)
            consumer.assign([tp])
            consumer.seek(tp, offset)
            # the committed offset may have been compacted or deleted away: the next record is the oldest left
            for records in consumer.poll(timeout_ms=int(timeout * 1000), max_records=1).values():
                for r in records[:1]:
                    out[(topic, part, offset)] = max(0.0, time.time() - r.timestamp / 1000)
    finally:
        consumer.close()
    return out


# --- batches and windows ---------------------------------------------------------------------------------

BATCH_STATES = ("open", "closed", "flushed", "resubmission_pending")


@dataclass(frozen=True)
class BatchView:
    table: str
    cadence: str
    batch: str
    state: str
    staged: int
    pending: int
    window_start: datetime
    window_end: datetime

    def window_seconds_left(self, now: datetime) -> float:
        return (self.window_end - now).total_seconds()


def batch_state(pending: int, flushed: int, closed: bool) -> str:
    """open: the watermark has not passed the batch's end + grace; closed: it has, rows wait for the window;
    flushed: every staged row went out; resubmission_pending: delivered before, changed rows wait."""
    if pending == 0:
        return "flushed"
    if flushed > 0:
        return "resubmission_pending"
    return "closed" if closed else "open"


def batch_views(counts: Iterable[Any], cadence_of: Mapping[str, str], watermark: datetime | None,
                schedule: Schedule, now: datetime, keep: timedelta = timedelta(days=2)) -> list[BatchView]:
    """The state of each staged (table, batch) (staging.BatchCounts) whose window has not ended more than
    `keep` ago, or that still has pending rows."""
    out = []
    for c in counts:
        cadence = cadence_of.get(c.table)
        if cadence is None:
            continue
        b = batch_by_name(cadence, c.batch, schedule.windows)
        if c.pending == 0 and b.window_end < now - keep:
            continue
        state = batch_state(c.pending, c.flushed, is_closed(b, watermark, schedule.grace))
        out.append(BatchView(c.table, cadence, c.batch, state, c.staged, c.pending, b.window_start, b.window_end))
    return out


def current_or_next_window(cadence: str, now: datetime, schedule: Schedule) -> Batch:
    """The batch whose delivery window is open at `now`, else the one whose window opens next."""
    rule = schedule.windows[cadence]
    candidate = batch_for(cadence, now - rule.open_after, schedule.windows)
    previous = batch_for(cadence, candidate.start - timedelta(microseconds=1), schedule.windows)
    if previous.in_window(now):
        return previous
    if candidate.window_end > now:
        return candidate
    return batch_for(cadence, candidate.end, schedule.windows)


# --- staging: batches, watermark, the sink's clock -------------------------------------------------------

@dataclass(frozen=True)
class StagingView:
    counts: list[Any]                            # staging.BatchCounts, newest first
    watermarks: Mapping[str, datetime]          # connector → min over core partitions of the latest mark
    sink_clock: datetime | None                 # the flush timer's clock at its last step
    sink_tick_at: datetime | None
    # table → report_datetime of its last flush, from the ledger: it outlives a restart and counts every
    # worker's, a recovery's and the CLI's flushes, which no one process sees all of
    last_flushes: Mapping[str, datetime] = field(default_factory=dict)


def read_staging(dsn: str, timeout: float, limit: int = 500) -> StagingView | None:
    """None while the staging schema does not exist (the sink has not run)."""
    from hisbridge.delivery import ledger, staging
    from hisbridge.runtime.watermark import from_ms
    conn = _connect(dsn, timeout)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass('hisbridge.staged'), to_regclass('hisbridge.sink_ticks')")
            staged, ticks = cur.fetchone()
            if staged is None:
                return None
            cur.execute("SELECT connector, min(commit_ms) FROM hisbridge.progress GROUP BY connector")
            marks = {c: from_ms(ms) for c, ms in cur.fetchall()}
            clock = at = None
            if ticks is not None:
                cur.execute("SELECT clock, at FROM hisbridge.sink_ticks ORDER BY at DESC LIMIT 1")
                row = cur.fetchone()
                clock, at = row if row else (None, None)
            last = {t: as_shanghai(moment) for t, moment in ledger.last_report_datetimes(cur).items()}
        return StagingView(staging.batch_counts(conn, limit=limit), marks, clock, at, last)
    finally:
        conn.close()


# --- quarantine ------------------------------------------------------------------------------------------

def read_open_quarantine(staging_dsn: str, timeout: float) -> dict[tuple[str, str], int]:
    """(table, rule) → open quarantine entries (delivery.quarantine's life cycle: resolved and dismissed ones
    no longer count; an entry with two rules counts under each) — what `hisbridge quarantine list` shows.
    The one place status and the metrics count quarantine from."""
    from hisbridge.delivery import quarantine
    conn = _connect(staging_dsn, timeout)
    try:
        if not quarantine.exists(conn):
            return {}
        return {(table, rule): n for rule, table, _, n in quarantine.counts(conn, state="open")}
    finally:
        conn.close()


def as_json(value: Any) -> Any:
    """Views → JSON-ready values (`status --json`)."""
    if hasattr(value, "__dataclass_fields__"):
        return {k: as_json(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, Mapping):
        return {(k if isinstance(k, str) else json.dumps(as_json(k))): as_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_json(v) for v in value]
    if isinstance(value, datetime):
        return value.astimezone(SHANGHAI).isoformat()
    return value
