"""The worker's Prometheus metrics (prometheus-client, served at /metrics on the worker's web port).

Two kinds, one registry per worker:
- events this process counts as they happen (records per stage and table, flushes, connector task restarts):
  counters and a histogram, updated by the stages;
- states read from outside (lag, batches, windows, watermark, last flushes, quarantine, connectors, slots,
  the front-end): gauges built from one `Snapshot` of plain values (ops.observe), swapped in whole after each
  refresh, so a scrape never sees half of one refresh and half of the previous.

Names follow kafka_exporter where they overlap (kafka_consumergroup_lag{consumergroup,topic,partition}).
No label or value ever carries an identity field: tables, rules, batches, connectors, counts and times only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from hisbridge.ops.observe import BATCH_STATES, BatchView, ConnectorView, GroupLag, SlotView

CONNECTOR_STATES = ("RUNNING", "PAUSED", "FAILED", "UNASSIGNED", "RESTARTING", "STOPPED", "UNKNOWN")
# aiohttp (Faust's web driver) takes the charset apart from the content type; the text format is UTF-8
CONTENT_TYPE = CONTENT_TYPE_LATEST.split(";")[0] + "; version=0.0.4"


@dataclass
class Snapshot:
    """One refresh's worth of outside state; a section that could not be read is None (and its source 0)."""
    at: float                                             # epoch seconds of the refresh
    sources: dict[str, bool] = field(default_factory=dict)  # kafka, connect, staging, frontend, his → read ok
    lags: list[GroupLag] | None = None
    batches: list[BatchView] | None = None
    windows: list[tuple[str, str, float, float, bool]] | None = None   # cadence, batch, opens in, closes in, open
    watermarks: Mapping[str, datetime] | None = None
    quarantine: Mapping[tuple[str, str], int] | None = None
    connectors: list[ConnectorView] | None = None
    slots: list[SlotView] | None = None
    held: tuple[int, float | None] | None = None          # held records, age of the oldest (seconds)
    clock: datetime | None = None                         # the sink's clock at the refresh
    last_flushes: Mapping[str, datetime] | None = None    # table → report_datetime of its last flush


def _gauge(name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def lag_families(lags: list[GroupLag]) -> list[GaugeMetricFamily]:
    lag = _gauge("kafka_consumergroup_lag", "records a consumer group has not committed yet",
                 ["consumergroup", "topic", "partition"])
    age = _gauge("kafka_consumergroup_lag_seconds", "age of the oldest record a group has not consumed (0: none)",
                 ["consumergroup", "topic", "partition"])
    offset = _gauge("kafka_consumergroup_current_offset", "the group's committed offset",
                    ["consumergroup", "topic", "partition"])
    total = _gauge("kafka_consumergroup_lag_sum", "records a consumer group has not committed, all partitions",
                   ["consumergroup"])
    for g in lags:
        for p in g.partitions:
            labels = [g.group, p.topic, str(p.partition)]
            lag.add_metric(labels, p.lag)
            age.add_metric(labels, g.ages.get((p.topic, p.partition), 0.0) if p.lag else 0.0)
            offset.add_metric(labels, p.committed or 0)
        total.add_metric([g.group], g.total)
    return [lag, age, offset, total]


def batch_families(batches: list[BatchView], now: datetime) -> list[GaugeMetricFamily]:
    state = _gauge("hisbridge_batch_state", "1 for the state each staged (table, batch) is in",
                   ["table", "cadence", "batch", "state"])
    pending = _gauge("hisbridge_batch_pending_rows", "staged rows of a batch no flush has carried yet",
                     ["table", "cadence", "batch"])
    left = _gauge("hisbridge_batch_window_close_seconds",
                  "seconds until the batch's delivery window closes (negative: closed that long ago)",
                  ["table", "cadence", "batch", "state"])
    for b in batches:
        for s in BATCH_STATES:
            state.add_metric([b.table, b.cadence, b.batch, s], 1.0 if s == b.state else 0.0)
        pending.add_metric([b.table, b.cadence, b.batch], b.pending)
        left.add_metric([b.table, b.cadence, b.batch, b.state], b.window_seconds_left(now))
    return [state, pending, left]


def window_families(windows: list[tuple[str, str, float, float, bool]]) -> list[GaugeMetricFamily]:
    is_open = _gauge("hisbridge_window_open", "1 while the cadence's delivery window is open", ["cadence", "batch"])
    opens = _gauge("hisbridge_window_open_seconds", "seconds until the next window opens (0: open now)",
                   ["cadence", "batch"])
    closes = _gauge("hisbridge_window_close_seconds", "seconds until the current (or next) window closes",
                    ["cadence", "batch"])
    for cadence, batch, opens_in, closes_in, open_now in windows:
        is_open.add_metric([cadence, batch], 1.0 if open_now else 0.0)
        opens.add_metric([cadence, batch], max(0.0, opens_in))
        closes.add_metric([cadence, batch], closes_in)
    return [is_open, opens, closes]


def watermark_families(marks: Mapping[str, datetime], at: float) -> list[GaugeMetricFamily]:
    ts = _gauge("hisbridge_watermark_timestamp_seconds", "the sink's watermark (source commit time)", ["connector"])
    age = _gauge("hisbridge_watermark_age_seconds", "real time since the watermark's source commit time",
                 ["connector"])
    for connector, mark in sorted(marks.items()):
        ts.add_metric([connector], mark.timestamp())
        age.add_metric([connector], max(0.0, at - mark.timestamp()))
    return [ts, age]


def quarantine_families(counts: Mapping[tuple[str, str], int]) -> list[GaugeMetricFamily]:
    g = _gauge("hisbridge_quarantine_open", "open quarantine entries by table and rule", ["table", "rule"])
    for (table, rule), n in sorted(counts.items()):
        g.add_metric([table, rule], n)
    return [g]


def connector_families(connectors: list[ConnectorView]) -> list[GaugeMetricFamily]:
    state = _gauge("hisbridge_connector_state", "1 for the connector's state", ["connector", "state"])
    task = _gauge("hisbridge_connector_task_state", "1 for each task's state", ["connector", "task", "state"])
    failed = _gauge("hisbridge_connector_task_failed_info", "a FAILED task with its trace summary",
                    ["connector", "task", "reason"])
    for c in connectors:
        for s in CONNECTOR_STATES:
            state.add_metric([c.name, s], 1.0 if c.state == s else 0.0)
        for t in c.tasks:
            for s in CONNECTOR_STATES:
                task.add_metric([c.name, str(t.id), s], 1.0 if t.state == s else 0.0)
            if t.state == "FAILED":
                failed.add_metric([c.name, str(t.id), (t.reason or "")[:200]], 1.0)
    return [state, task, failed]


def slot_families(slots: list[SlotView]) -> list[GaugeMetricFamily]:
    retained = _gauge("hisbridge_replication_slot_retained_wal_bytes",
                      "WAL the HIS keeps for the slot (current LSN − restart_lsn)", ["slot"])
    lost = _gauge("hisbridge_replication_slot_lost", "1 when max_slot_wal_keep_size invalidated the slot", ["slot"])
    active = _gauge("hisbridge_replication_slot_active", "1 while a connector streams from the slot", ["slot"])
    safe = _gauge("hisbridge_replication_slot_safe_wal_bytes",
                  "WAL the slot may still fall behind before it is invalidated", ["slot"])
    for s in slots:
        retained.add_metric([s.name], s.retained_bytes or 0)
        lost.add_metric([s.name], 1.0 if s.lost else 0.0)
        active.add_metric([s.name], 1.0 if s.active else 0.0)
        if s.safe_wal_size is not None:
            safe.add_metric([s.name], s.safe_wal_size)
    return [retained, lost, active, safe]


def snapshot_families(snap: Snapshot) -> list[GaugeMetricFamily]:
    out: list[GaugeMetricFamily] = []
    sources = _gauge("hisbridge_source_up", "1 when the last refresh could read the service", ["source"])
    for name, ok in sorted(snap.sources.items()):
        sources.add_metric([name], 1.0 if ok else 0.0)
    out.append(sources)
    refreshed = _gauge("hisbridge_metrics_refreshed_timestamp_seconds", "when the outside state was last read")
    refreshed.add_metric([], snap.at)
    out.append(refreshed)
    if "frontend" in snap.sources:
        up = _gauge("hisbridge_frontend_up", "1 when the front-end database answers")
        up.add_metric([], 1.0 if snap.sources["frontend"] else 0.0)
        out.append(up)
    if snap.lags is not None:
        out += lag_families(snap.lags)
    if snap.batches is not None and snap.clock is not None:
        out += batch_families(snap.batches, snap.clock)
    if snap.windows is not None:
        out += window_families(snap.windows)
    if snap.watermarks is not None:
        out += watermark_families(snap.watermarks, snap.at)
    if snap.quarantine is not None:
        out += quarantine_families(snap.quarantine)
    if snap.connectors is not None:
        out += connector_families(snap.connectors)
    if snap.slots is not None:
        out += slot_families(snap.slots)
    if snap.held is not None:
        held = _gauge("hisbridge_held_records", "records waiting for a reference row")
        held.add_metric([], snap.held[0])
        oldest = _gauge("hisbridge_held_oldest_age_seconds", "how long the oldest held record has waited (0: none)")
        oldest.add_metric([], snap.held[1] or 0.0)
        out += [held, oldest]
    if snap.last_flushes is not None:
        last = _gauge("hisbridge_last_flush_timestamp_seconds",
                      "report_datetime of the table's last flush (the ledger's)", ["table"])
        for table, moment in sorted(snap.last_flushes.items()):
            last.add_metric([table], moment.timestamp())
        out.append(last)
    if snap.clock is not None:
        clock = _gauge("hisbridge_sink_clock_timestamp_seconds", "the sink's clock (steered in the demo and tests)")
        clock.add_metric([], snap.clock.timestamp())
        out.append(clock)
    return out


class _SnapshotCollector:
    def __init__(self) -> None:
        self.families: list[GaugeMetricFamily] = []

    def collect(self):
        return list(self.families)


class Metrics:
    """The registry of one worker and its event metrics; `publish(snapshot)` swaps the state gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.records = Counter("hisbridge_records", "records per stage, table and outcome",
                               ["stage", "table", "outcome"], registry=r)
        self.flush_seconds = Histogram("hisbridge_flush_duration_seconds", "one flush transaction, seconds",
                                       ["table"], registry=r,
                                       buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600))
        self.flush_rows = Counter("hisbridge_flush_rows", "rows written to the front-end", ["table", "kind"],
                                  registry=r)
        self.flushes = Counter("hisbridge_flushes", "flushes by outcome", ["table", "kind"], registry=r)
        self.flush_failures = Counter("hisbridge_flush_failures", "flush attempts a database refused",
                                      ["table"], registry=r)
        self.restarts = Counter("hisbridge_connector_task_restarts", "FAILED tasks the worker restarted",
                                ["connector", "task"], registry=r)
        self.consecutive = _Consecutive()
        self._snapshot = _SnapshotCollector()
        r.register(self._snapshot)
        r.register(self.consecutive)

    def count(self, stage: str, table: str, outcome: str, n: int = 1) -> None:
        if n:
            self.records.labels(stage, table, outcome).inc(n)

    def expect_flushes(self, tables: Iterable[str], kinds: Iterable[str]) -> None:
        """Every table's flush series at 0 from the first scrape: a counter that first appears with its
        first flush has one sample then, and `increase`/`rate` over one sample is no series at all (an empty
        dashboard panel, a silent alert) until a second flush."""
        kinds = tuple(kinds)
        for table in tables:
            self.flush_seconds.labels(table)
            self.flush_failures.labels(table)
            for kind in kinds:
                self.flushes.labels(table, kind)
                self.flush_rows.labels(table, kind)

    def flushed(self, table: str, kind: str, rows: int, seconds: float) -> None:
        self.flush_seconds.labels(table).observe(seconds)
        self.flushes.labels(table, kind).inc()
        self.flush_rows.labels(table, kind).inc(rows)

    def flush_failed(self, table: str) -> None:
        self.flush_failures.labels(table).inc()

    def publish(self, snapshot: Snapshot) -> None:
        self._snapshot.families = snapshot_families(snapshot)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Consecutive:
    """Restarts of a task since it last ran for a while (the supervisor's back-off step)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def collect(self):
        g = _gauge("hisbridge_connector_task_consecutive_restarts",
                   "restarts of a task without it staying RUNNING in between", ["connector", "task"])
        for (connector, task), n in sorted(self.counts.items()):
            g.add_metric([connector, task], n)
        return [g]
