"""The worker's monitoring, wired onto its Faust app: /metrics and /health on the web port, a timer that
reads the outside state into the metrics (ops.observe → ops.metrics.Snapshot), and the connector supervisor
(ops.supervisor) on the leader. The stages count their own events through `monitor_of(app).metrics`.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from hisbridge.ops import observe
from hisbridge.ops.metrics import CONTENT_TYPE, Metrics, Snapshot
from hisbridge.ops.supervisor import Policy, Supervisor, restart, task_label
from hisbridge.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Monitor:
    metrics: Metrics = field(default_factory=Metrics)
    held: Callable[[], tuple[int, float | None] | None] | None = None   # set by the transform stage
    started: float = field(default_factory=time.time)
    refreshed: float | None = None


def monitor_of(app) -> Monitor:
    """The app's one Monitor (created on first use: the stages and the wiring below share it)."""
    found = getattr(app, "_hisbridge_monitor", None)
    if found is None:
        found = Monitor()
        app._hisbridge_monitor = found   # noqa: SLF001 — the Faust app is the worker's only global
    return found


def his_monitor_dsn(settings: Settings) -> str | None:
    """The HIS as the CDC role sees it (pg_replication_slots is readable by any role); None for a binlog HIS."""
    if settings.source.kind != "postgres":
        return None
    from hisbridge.ops.connectors import cdc_password
    s = settings.source
    try:
        password = cdc_password(settings)
    except Exception:  # noqa: BLE001 — no password known: the slot section reports the HIS as unreadable
        return None
    return f"host={s.host} port={s.port} dbname={s.db} user={s.user} password={password}"


class Reader:
    """Reads every section of a Snapshot; one section down never hides the others."""

    def __init__(self, settings: Settings, monitor: Monitor) -> None:
        from hisbridge.catalog import catalog_for
        from hisbridge.clock import clock_for
        from hisbridge.contract import transform_group
        from hisbridge.delivery.schedule import load_schedule
        self.settings, self.monitor = settings, monitor
        catalog = catalog_for(settings.paths)
        self.cadence_of = {name: t.cadence for name, t in catalog.tables.items()}
        self.schedule = load_schedule(settings.paths.schedule, settings.worker.schedule_mode)
        self.clock = clock_for(settings.clock)
        self.groups = [transform_group(settings.worker.app_id), settings.worker.app_id]
        c = settings.connections
        self.timeout = c.connect_timeout
        self.his_dsn = his_monitor_dsn(settings)
        self.failing: set[str] = set()

    def _section(self, snap: Snapshot, source: str, read: Callable[[], None]) -> None:
        try:
            read()
            snap.sources.setdefault(source, True)
            self.failing.discard(source)
        except Exception as exc:  # noqa: BLE001 — a down service is a metric (hisbridge_source_up 0)
            snap.sources[source] = False
            if source not in self.failing:   # once per outage, not once per refresh
                self.failing.add(source)
                log.warning("metrics: %s unreadable: %s", source, observe.first_line(exc))

    def read(self) -> Snapshot:
        snap = Snapshot(at=time.time(), clock=self.clock.now())
        s, c = self.settings, self.settings.connections
        self._section(snap, "kafka", lambda: setattr(snap, "lags", observe.read_lag(c.kafka_bootstrap, self.timeout,
                                                                                   self.groups)))
        self._section(snap, "staging", lambda: setattr(snap, "quarantine", observe.read_open_quarantine(
            c.staging_dsn, self.timeout)))
        self._section(snap, "staging", self._read_staging(snap))
        self._section(snap, "connect", lambda: setattr(snap, "connectors", [
            v for v in observe.read_connectors(c.connect_url, self.timeout) if v.name in s.ops.connectors]))
        if self.his_dsn is not None:
            self._section(snap, "his", lambda: setattr(snap, "slots", observe.read_slots(self.his_dsn, self.timeout)))
        snap.sources["frontend"] = observe.database_up(c.frontend_dsn, self.timeout)
        snap.windows = self._windows(snap)
        return snap

    def _read_staging(self, snap: Snapshot) -> Callable[[], None]:
        def read() -> None:
            view = observe.read_staging(self.settings.connections.staging_dsn, self.timeout)
            if view is None:
                snap.batches, snap.watermarks, snap.last_flushes = [], {}, {}
                return
            mark = min(view.watermarks.values()) if view.watermarks else None
            snap.watermarks, snap.last_flushes = dict(view.watermarks), dict(view.last_flushes)
            snap.batches = observe.batch_views(view.counts, self.cadence_of, mark, self.schedule, snap.clock)
        return read

    def _windows(self, snap: Snapshot) -> list[tuple[str, str, float, float, bool]]:
        out = []
        for cadence in sorted(set(self.cadence_of.values())):
            b = observe.current_or_next_window(cadence, snap.clock, self.schedule)
            out.append((cadence, b.name, (b.window_start - snap.clock).total_seconds(),
                        (b.window_end - snap.clock).total_seconds(), b.in_window(snap.clock)))
        return out


def register(app, settings: Settings) -> None:
    """/metrics, /health, the refresh timer and (on the leader) the connector supervisor."""
    monitor = monitor_of(app)
    reader: list[Reader] = []    # built in the timer: the catalog and schedule are read off the event loop

    @app.page("/metrics")
    async def metrics_page(web, request):
        return web.bytes(monitor.metrics.render(), content_type=CONTENT_TYPE)

    @app.page("/health")
    async def health_page(web, request):
        held = monitor.held() if monitor.held is not None else None
        return web.json({"status": "ok", "app": settings.worker.app_id, "agents": list(settings.worker.agents),
                         "since": monitor.started, "metrics_refreshed": monitor.refreshed,
                         "held": None if held is None else {"records": held[0], "oldest_seconds": held[1]}})

    @app.timer(settings.ops.metrics_every, name="hisbridge.monitor.refresh")
    async def refresh() -> None:
        if not reader:
            reader.append(await asyncio.to_thread(Reader, settings, monitor))
        snap = await asyncio.to_thread(reader[0].read)
        if monitor.held is not None:      # on the event loop: the transform changes its held records there
            snap.held = monitor.held()
        monitor.metrics.publish(snap)
        monitor.refreshed = snap.at

    if not settings.ops.supervise_connectors:
        return
    o = settings.ops
    supervisor = Supervisor(Policy(o.restart_first, o.restart_cap, o.restart_reset))

    @app.timer(settings.ops.metrics_every, on_leader=True, name="hisbridge.monitor.supervise_connectors")
    async def supervise() -> None:
        from hisbridge.ops.connectors import ConnectClient
        c = settings.connections
        try:
            views = await asyncio.to_thread(observe.read_connectors, c.connect_url, c.connect_timeout)
        except observe.Unreachable:
            return    # the refresh timer reports Connect down (hisbridge_source_up{source="connect"})
        client = ConnectClient(c.connect_url)
        watched = [v for v in views if v.name in o.connectors]
        for v in watched:
            for t in v.tasks:     # a task never restarted still shows its counter, at 0
                monitor.metrics.restarts.labels(v.name, str(t.id))
        for r in supervisor.step(watched, time.time()):
            task = task_label(r.task)
            try:
                await asyncio.to_thread(restart, client, r)
            except Exception as exc:  # noqa: BLE001 — Connect refused or went away: the next step retries
                log.error("connector %s %s FAILED; restart %d refused: %s", r.connector, task, r.attempt,
                          observe.first_line(exc))
                continue
            monitor.metrics.restarts.labels(r.connector, task).inc()
            # formatted here: every restart is its own (back-off-spaced) event, never folded as a repeat
            log.error(f"连接器任务失败，已重启 / connector {r.connector} task {task} FAILED ({r.reason}); restarted "
                      f"(attempt {r.attempt} in a row, next back-off {supervisor.policy.delay(r.attempt):.0f}s)")
        monitor.metrics.consecutive.counts = supervisor.consecutive()
