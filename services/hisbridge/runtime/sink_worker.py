"""Sink worker: core topics → staging database (the Faust agent), and the flush timer → front-end database.

Wiring only: what a consumed batch becomes is delivery.intake.stage_chunk, one timer step is
delivery.timer.tick, the databases are runtime.sink_io.PgSinkIO; this module connects them to Kafka and
runs blocking database work off the event loop.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

import psycopg2
from hisbridge.catalog import catalog_for
from hisbridge.chain import avro
from hisbridge.clock import clock_for, log_text
from hisbridge.delivery import ledger, staging
from hisbridge.contract import quarantine_topic, replay_topic
from hisbridge.delivery.intake import (SinkEvent, StageChunk, stage_chunk,
                                       tables_by_topic)
from hisbridge.delivery.schedule import load_schedule
from hisbridge.delivery.timer import LoopState, tick
from hisbridge.indicators import crosscheck, definitions
from hisbridge.runtime.monitor import monitor_of
from hisbridge.logs import Activity
from hisbridge.runtime.sink_io import PgSinkIO
from hisbridge.runtime.topics import ensure_topics
from hisbridge.runtime.watermark import Partition
from hisbridge.settings import Settings

log = logging.getLogger(__name__)


def _in_thread(fn: Callable[[], Any]):
    return asyncio.get_running_loop().run_in_executor(None, fn)


def _event(e) -> SinkEvent:
    return SinkEvent(e.message.topic, e.message.partition, e.message.offset, e.value, dict(e.headers or {}))


@dataclass
class Backoff:
    """Retry delays while a database is down: `first`, doubling, at most `cap` seconds."""
    first: float = 0.5
    cap: float = 30.0
    current: float = 0.0

    def next(self) -> float:
        self.current = min(self.current * 2, self.cap) if self.current else self.first
        return self.current


class StagingWriter:
    """The agent's staging connection: one commit per consumed batch, retried until it is durable."""

    def __init__(self, dsn: str, sleep: Callable[[float], Any] = asyncio.sleep, hold: Callable | None = None) -> None:
        self.dsn, self.conn, self.sleep, self.hold = dsn, None, sleep, hold

    def _commit(self, chunk: StageChunk) -> int:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg2.connect(self.dsn, connect_timeout=10)
            staging.ensure_schema(self.conn)
        return staging.upsert_rows(self.conn, chunk.rows, chunk.progress, chunk.entries, chunk.replays, self.hold)

    async def commit(self, chunk: StageChunk) -> int:
        backoff = Backoff()
        while True:
            try:
                return await _in_thread(lambda: self._commit(chunk))
            except psycopg2.Error as exc:
                delay = backoff.next()
                log.error("staging commit failed (%s); retrying in %.1fs — offsets stay where they are",
                          str(exc).strip()[:200], delay)
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                await self.sleep(delay)


def register(app, config: Settings) -> None:
    """The sink agent over every catalog table's core topic, the quarantine topic (entries → their life cycle
    in staging) and the replay topic, and the on-leader flush timer (called when the worker starts: the
    topics are created here, before the agent's consumer subscribes, or it would see them only at the next
    metadata refresh)."""
    catalog = catalog_for(config.paths)
    topics = tables_by_topic(catalog.tables.values(), config.worker.core_prefix)
    schemas = avro.schemas_by_fingerprint(avro.load_all(config.paths.avro).values())
    schedule = load_schedule(config.paths.schedule, config.worker.schedule_mode)
    # evaluation rows are cross-checked against their month's staged detail before they are staged
    indicator_hold = crosscheck.hold_for(definitions.load(config.paths.indicators, catalog))
    clock = clock_for(config.clock)
    w, c = config.worker, config.connections
    extra = [quarantine_topic(w.core_prefix), replay_topic(w.core_prefix)]
    ensure_topics(c.kafka_bootstrap, [*topics, *extra], "hisbridge-sink-setup", replication=c.topic_replication)
    core = app.topic(*topics, *extra, key_serializer="raw", value_serializer="raw")
    counters: dict[str, int] = {}
    metrics = monitor_of(app).metrics
    metrics.expect_flushes(catalog.tables, ledger.KINDS)

    async def commit_offsets(events) -> None:
        """Ack the staged events and commit their offsets now, not at Faust's next commit interval (2.8 s):
        marks arrive every second while changes flow, so the interval alone never let the committed offset
        reach the end (lag stayed 1 per core partition on an idle, drained pipeline). A message's ack is
        idempotent, so take_events' own ack after the loop body finds them acked."""
        for e in events:
            e.message.ack(app.consumer)
        try:
            await app.consumer.commit()
        except Exception as exc:  # noqa: BLE001 — broker away: the acks stand, Faust's own commit retries
            log.warning("sink offsets not committed now (%s); Faust's periodic commit retries", exc)
    activity = Activity(log, "sink")

    @app.agent(core, name="hisbridge.sink.stage_core")
    async def stage_core(stream):
        """One staging transaction per take_events batch (rows and mark progress together).

        Why nothing is acked before the staging commit: take_events disables the stream's automatic acks
        and acks a batch's events only in the `finally` after the `yield`, i.e. when this loop body hands
        control back; Faust commits only acked offsets. The body awaits the commit (retrying while the
        database is down). Should the body ever be left without a commit (cancelled during shutdown while
        retrying, or a bug), that `finally` would still ack the events — so we exit the process at once
        instead: a hard stop is a crash the design survives (re-consumption, idempotent upsert), a silent
        ack would be a loss.
        """
        writer = StagingWriter(c.staging_dsn, hold=indicator_hold)
        try:
            async for events in stream.take_events(w.sink_take, within=w.sink_within):
                committed, started = False, time.monotonic()
                try:
                    chunk = stage_chunk([_event(e) for e in events], topics, schemas)
                    for problem in chunk.problems:
                        counters["unstageable"] = counters.get("unstageable", 0) + 1
                        log.error("sink cannot stage %s (total unstageable=%d)", problem, counters["unstageable"])
                    staged = await writer.commit(chunk)
                    committed = True
                    await commit_offsets(events)
                    for row in chunk.rows:
                        metrics.count("sink", row.table, "revoked" if row.revoked else "staged")
                    work = bool(chunk.rows or chunk.entries or chunk.replays or chunk.problems)
                    activity.add(time.monotonic() - started, work, events=len(events), rows=len(chunk.rows),
                                 staged=staged or 0, unstageable=len(chunk.problems))
                finally:
                    if not committed:
                        log.critical("staging commit not done for %d events: exiting before Faust acks them",
                                     len(events))
                        logging.shutdown()
                        os._exit(70)
        finally:
            activity.flush()        # what the last interval did, also at shutdown

    state = LoopState()
    expected: list[Partition] = []   # refreshed from the consumer's metadata before each tick
    io = PgSinkIO(catalog.tables, topics, schedule, c.staging_dsn, c.frontend_dsn,
                  config.paths.frontend_sql / "frontend.sql", w.app_id, expected=lambda: expected,
                  on_flush=metrics.flushed, on_failed=metrics.flush_failed)

    def partitions() -> list[Partition]:
        found = []
        for topic in topics:
            try:
                count = app.consumer.topic_partitions(topic)
            except Exception:  # noqa: BLE001 — metadata not there yet (consumer starting)
                count = None
            found += [(topic, p) for p in range(count or 0)]
        return found

    def step(now):
        report = tick(now, state, io, schedule)
        io.record_tick(now)          # the sink's clock, for status (and tests waiting on its steps)
        return report

    @app.timer(w.sink_tick, on_leader=True, name="hisbridge.sink.flush_timer")
    async def flush_timer() -> None:
        """Plan and run flushes with the app's clock; never lets an error stop the timer."""
        expected[:] = partitions()
        now = clock.now()
        try:
            report = await _in_thread(lambda: step(now))
        except Exception as exc:  # noqa: BLE001 — staging down or a bug: log, reconnect, next tick
            log.exception("flush timer step failed at %s: %s", log_text(now), exc)
            io.reset_staging()
            io.close_frontend()
            return
        activity.flush_if_due()
        if report.waiting:     # the front-end is down: a warning, rate-limited like every repeated one
            log.warning("flush timer: %s", report.waiting)
