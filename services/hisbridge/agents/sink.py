"""Sink agents: `core.<table>` → staging database, and the flush timer → front-end database.

The contract with the transform side (topics, key, Avro value, headers, watermark marks) is written down
in hisbridge.sinkloop; the timing rules live in hisbridge.flush / schedule / watermark. This module only
wires them to Kafka and runs blocking database work off the event loop.

Settings (hisbridge.settings): connections.staging_dsn / frontend_dsn, worker.core_prefix, worker.sink_take
(events per staging commit), worker.sink_within, worker.sink_tick (flush timer interval, real seconds),
clock.* (an accelerated or steered clock), paths.schedule + worker.schedule_mode.
"""
from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, Callable

import psycopg2

from hisbridge import avrocodec, staging
from hisbridge.catalog import catalog_for
from hisbridge.clock import clock_for
from hisbridge.schedule import load_schedule
from hisbridge.settings import Settings
from hisbridge.sinkloop import LoopState, PgSinkIO, SinkEvent, stage_chunk, tables_by_topic, tick
from hisbridge.topics import ensure_topics
from hisbridge.watermark import Partition

log = logging.getLogger(__name__)


def _in_thread(fn: Callable[[], Any]):
    return asyncio.get_running_loop().run_in_executor(None, fn)


def _event(e) -> SinkEvent:
    return SinkEvent(e.message.topic, e.message.partition, e.message.offset, e.value, dict(e.headers or {}))


class _Stager:
    """The agent's staging connection: one commit per consumed batch, retried until it is durable."""

    def __init__(self, dsn: str) -> None:
        self.dsn, self.conn = dsn, None

    def _commit(self, rows, progress) -> int:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg2.connect(self.dsn, connect_timeout=10)
            staging.ensure_schema(self.conn)
        return staging.upsert_rows(self.conn, rows, progress)

    async def commit(self, rows, progress) -> int:
        delay = 0.5
        while True:
            try:
                return await _in_thread(lambda: self._commit(rows, progress))
            except psycopg2.Error as exc:
                log.error("staging commit failed (%s); retrying in %.1fs — offsets stay where they are",
                          str(exc).strip()[:200], delay)
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)


def register(app, config: Settings) -> None:
    """Declare the sink agent over every catalog table's core topic and the on-leader flush timer."""
    catalog = catalog_for(config.paths)
    topics = tables_by_topic(catalog.tables.values(), config.worker.core_prefix)
    schemas = avrocodec.schemas_by_fingerprint(avrocodec.load_all(config.paths.avro).values())
    schedule = load_schedule(config.paths.schedule, config.worker.schedule_mode)
    clock = clock_for(config.clock)
    take, within, interval = config.worker.sink_take, config.worker.sink_within, config.worker.sink_tick
    # registered when the worker starts (never at import): the core topics must exist before the agent's
    # consumer subscribes, or it sees them only at the next metadata refresh
    ensure_topics(config.connections.kafka_bootstrap, topics, "hisbridge-sink-setup",
                  replication=config.connections.topic_replication)
    core = app.topic(*topics, key_serializer="raw", value_serializer="raw")
    counters: dict[str, int] = {}

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
        stager = _Stager(config.connections.staging_dsn)
        async for events in stream.take_events(take, within=within):
            committed = False
            try:
                chunk = stage_chunk([_event(e) for e in events], topics, schemas)
                for problem in chunk.problems:
                    counters["unstageable"] = counters.get("unstageable", 0) + 1
                    log.error("sink cannot stage %s (total unstageable=%d)", problem, counters["unstageable"])
                await stager.commit(chunk.rows, chunk.progress)
                committed = True
            finally:
                if not committed:
                    log.critical("staging commit not done for %d events: exiting before Faust acks them",
                                 len(events))
                    logging.shutdown()
                    os._exit(70)

    state = LoopState()
    expected: list[Partition] = []   # refreshed from the consumer's metadata before each tick
    io = PgSinkIO(catalog.tables, topics, schedule, config.connections.staging_dsn, config.connections.frontend_dsn,
                  config.paths.frontend_sql / "frontend.sql", app.conf.id, expected=lambda: expected)

    def partitions() -> list[Partition]:
        found = []
        for topic in topics:
            try:
                count = app.consumer.topic_partitions(topic)
            except Exception:  # noqa: BLE001 — metadata not there yet (consumer starting)
                count = None
            found += [(topic, p) for p in range(count or 0)]
        return found

    @app.timer(interval, on_leader=True, name="hisbridge.sink.flush_timer")
    async def flush_timer() -> None:
        """Plan and run flushes with the app's clock; never lets an error stop the timer."""
        expected[:] = partitions()
        now = clock.now()
        def step():
            report = tick(now, state, io, schedule)
            io.record_tick(now)          # the sink's clock, for status (and tests waiting on its steps)
            return report

        try:
            report = await _in_thread(step)
        except Exception as exc:  # noqa: BLE001 — staging down or a bug: log, reconnect, next tick
            log.exception("flush timer step failed at %s: %s", now.isoformat(), exc)
            io.reset_staging()
            io.close_frontend()
            return
        if report.waiting:
            log.info("flush timer: %s", report.waiting)

