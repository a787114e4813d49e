"""Transform worker: raw Debezium topics → core topics (Avro) and the quarantine topic (JSON), plus watermark
marks for the sink (hisbridge.contract). Wiring only: a batch is planned by runtime.batch_plan (pure), merged
by runtime.ordering.Merge, marked by runtime.watermark.MarkTracker; this module moves bytes to and from Kafka.

One consumer, driven by the source mapping: it reads the raw topic of every source table the mapping reads
(drivers and lookups) and the connector's heartbeat topic — no code per table. Per batch: plan (decode →
reference rows into the lookups → chain) → `checkpoint`: produce every output and await every ack, release
the held records that went out, write the held-record changes, send a mark → commit the batch's offsets.
At-least-once: a batch's offsets are committed only after its checkpoint; a crash before that re-reads it.

Why a batch consumer (aiokafka getmany, group `<app id>.transform`) inside the Faust worker rather than a Faust
agent over `stream.take`: Faust hands a stream its events one by one (~250 µs of CPU per event here; an agent
that does nothing with take_events(500) tops out at ~4,200 events/s, bench/RESULTS.md "worker"). The Faust app
still runs the worker: this task, the expiry timer, the producer, the sink agent, the web page.

State (hisbridge.state): reference rows in a disk-backed global store (RocksDB under worker.state_dir) fed
by every partition of the reference tables' compacted raw topics through a consumer outside the group
(runtime.reference): before a batch is planned the store catches up to the reference topics' end offsets
seen at that moment, so a visit whose patient row was written before it finds the row, and one whose row
comes later is held as before. The store keeps its applied offsets beside the rows: a restart reads only
the tail; a lost folder is rebuilt from the topics (progress logged). What the feed read is noted
(runtime.coverage), so the group passes a change that only feeds lookups without decoding it twice. Held records in memory, written
through to the compacted held-records topic before a batch's offsets are committed, read back for the
partitions the group assigns (on every assignment: a partition taken over brings its held records along).
A record waits for its reference row until its batch closes (the schedule's period end + grace) by the
watermark of everything else — so it never delays the close — or worker.lookup_wait seconds (on the
deployment's clock, steered in the demo and the tests like the sink's) when an operator set that bound;
then it is quarantined with the missing key and stays held, released (and its entry
resolved by the sink) whenever the row arrives (a 1 s timer and after every batch). A record over worker.produce_limit, or one the broker refuses as too large, is
quarantined as `oversize`; the worker does not stop for it.

Limits: marks name one connector, the topic prefix (all raw topics of this worker); with several transform
workers in one group each marks only its own partitions (records are complete; the sink's watermark may
move on one worker's mark while another's partitions are behind).
"""
from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from dataclasses import replace
from datetime import datetime
from typing import Any, Iterable

from aiokafka import (AIOKafkaConsumer, ConsumerRebalanceListener,
                      TopicPartition)
from aiokafka.errors import (CommitFailedError, MessageSizeTooLargeError,
                             RecordTooLargeError)
from hisbridge.catalog import catalog_for
from hisbridge.chain import avro, crypto
from hisbridge.chain.chain import CoreRecord, transform
from hisbridge.chain.identity_mapping import mapping_for_role
from hisbridge.chain.roles import role_for
from hisbridge.clock import SHANGHAI, clock_for
from hisbridge.logs import Activity
from hisbridge.messages import render
from hisbridge.contract import (KIND_HEADER, QUARANTINE_KIND, WATERMARK_KIND,
                                QuarantineEntry, core_topic, heartbeat_topic,
                                held_topic, mark_value, quarantine_key,
                                quarantine_topic, raw_topics, serialize_entry,
                                transform_group)
from hisbridge.chain.screen import SchemaWatch
from hisbridge.delivery.schedule import load_schedule
from hisbridge.runtime.batch_plan import (BatchPlan, batch_close_ms,
                                          plan_batch, plan_expiry,
                                          plan_present, plan_references,
                                          release_all)
from hisbridge.runtime.coverage import FeedCoverage
from hisbridge.runtime.monitor import monitor_of
from hisbridge.runtime.ordering import Merge, Partition, RawEvent
from hisbridge.runtime.reference import ReferenceFeed
from hisbridge.runtime.topics import (ensure_topics, not_compacted,
                                      read_from_start)
from hisbridge.runtime.watermark import MarkThrottle, MarkTracker
from hisbridge.settings import Settings
from hisbridge.state.codec import CodedStore, LoggedStore, text
from hisbridge.state.held import HeldRecords, held_partition
from hisbridge.state.lookups import (TableLookups, lookup_topics, open_store,
                                     relayout, store_folder)

log = logging.getLogger(__name__)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _part(tp: TopicPartition) -> Partition:
    return (tp.topic, tp.partition)


class RawBatches(ConsumerRebalanceListener):
    """Batches of raw messages from the consumer, merged oldest first across partitions (Merge)."""

    def __init__(self, consumer: AIOKafkaConsumer, take: int, within: float, on_assigned=None, on_revoked=None) -> None:
        self.consumer, self.take = consumer, take
        self.merge = Merge(take, within)
        self.on_assigned, self.on_revoked = on_assigned, on_revoked

    async def next(self) -> list[RawEvent]:
        while True:
            fetched = await self.consumer.getmany(timeout_ms=self.merge.wait_ms, max_records=self.take)
            for tp, messages in fetched.items():
                self.merge.add(_part(tp), [(m.timestamp, RawEvent(m.topic, m.partition, m.offset, m.key, m.value))
                                           for m in messages])
            batch = self.merge.next_batch(await self._behind())
            by_part = {_part(tp): tp for tp in self.consumer.assignment()}
            pause, resume = self.merge.flow(by_part, [_part(tp) for tp in self.consumer.paused()])
            if pause:
                self.consumer.pause(*(by_part[p] for p in pause))
            if resume:
                self.consumer.resume(*(by_part[p] for p in resume if p in by_part))
            if batch:
                return batch

    async def _behind(self) -> list[Partition]:
        """Assigned partitions with messages on the broker not fetched yet (highwater unknown counts)."""
        out = []
        for tp in self.consumer.assignment():
            high = self.consumer.highwater(tp)
            if high is None or await self.consumer.position(tp) < high:
                out.append(_part(tp))
        return out

    async def positions(self, topics: set[str]) -> dict[Partition, tuple[int | None, int]]:
        """(high-water mark, next offset to handle) of every assigned raw partition: the oldest buffered
        message, else the consumer's position (after its last fetch, or where the committed offset put it)."""
        out = {}
        for tp in self.consumer.assignment():
            if tp.topic in topics:
                buffered = self.merge.order.next_offset(_part(tp))
                out[_part(tp)] = (self.consumer.highwater(tp),
                                  buffered if buffered is not None else await self.consumer.position(tp))
        return out

    async def on_partitions_revoked(self, revoked) -> None:
        self.merge.order.drop(_part(tp) for tp in revoked)
        if self.on_revoked is not None:
            await self.on_revoked()

    async def on_partitions_assigned(self, assigned) -> None:
        if self.on_assigned is not None:
            await self.on_assigned({_part(tp) for tp in self.consumer.assignment()})


_TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError)


def too_large_entry(out: Any, exc: BaseException) -> QuarantineEntry:
    """The quarantine entry for an output the broker refused as too large (without its record: that is
    what did not fit)."""
    reason = {"rule": "oversize", "field": None,
              "message": f"消息被 Kafka 拒绝（过大）/ refused by Kafka as too large: {type(exc).__name__}"}
    if isinstance(out, QuarantineEntry):
        return replace(out, reasons=(*out.reasons, reason), record=None)
    return QuarantineEntry(out.table, (reason,), dict(out.source), out.batch, None, out.key_version,
                           datetime.now(SHANGHAI).isoformat(), out.key)


class TransformIO:
    """What the worker writes: outputs to core and quarantine topics, held-record changes, marks — each send
    awaited until the broker acknowledged it (producer acks=all, Faust's default)."""

    def __init__(self, app, core_prefix: str, tables: Iterable[str], held: str, limit: int, metrics=None) -> None:
        self.app, self.core_prefix, self.held, self.limit, self.metrics = app, core_prefix, held, limit, metrics
        self.core_topics = [core_topic(core_prefix, t) for t in sorted(tables)]
        self.quarantine = quarantine_topic(core_prefix)

    async def _send(self, out: Any) -> Any:
        if isinstance(out, CoreRecord):
            return await self.app.producer.send(core_topic(self.core_prefix, out.table), out.key.encode("utf-8"),
                                                out.value, None, None, list(out.headers))
        value = serialize_entry(out)
        if len(value) > self.limit and out.record is not None:    # the entry must fit where it goes
            value = serialize_entry(replace(out, record=None))
        log.debug("quarantined %s key=%s: %s", out.table, out.key, ", ".join(out.rules))
        return await self.app.producer.send(self.quarantine, quarantine_key(out.table, out.key), value,
                                            None, None, [(KIND_HEADER, QUARANTINE_KIND)])

    async def produce(self, outputs: list[Any]) -> None:
        """Every output, acknowledged. A record the broker refuses as too large becomes an `oversize`
        quarantine entry (one record never stops the worker); any other send error raises here, inside
        the batch, before any offset of it may be committed."""
        outputs = [o for o in outputs if isinstance(o, (CoreRecord, QuarantineEntry))]
        results: list[Any] = []
        for out in outputs:
            try:
                results.append(await self._send(out))
            except _TOO_LARGE as exc:          # refused before it left (the producer's max.request.size)
                results.append(exc)
        waiting = [(i, r) for i, r in enumerate(results) if not isinstance(r, BaseException)]
        done = await asyncio.gather(*(r for _, r in waiting), return_exceptions=True) if waiting else []
        for (i, _), result in zip(waiting, done):
            results[i] = result
        refused = [(out, exc) for out, exc in zip(outputs, results) if isinstance(exc, BaseException)]
        for out, exc in refused:
            if not isinstance(exc, _TOO_LARGE):
                raise exc
        self.count([out for out, r in zip(outputs, results) if not isinstance(r, BaseException)])
        if refused:
            await self.produce([too_large_entry(out, exc) for out, exc in refused])

    def count(self, outputs: list[Any]) -> None:
        """Records out per table and outcome (hisbridge_records_total{stage="transform"}), once acknowledged."""
        if self.metrics is None:
            return
        for out in outputs:
            self.metrics.count("transform", out.table, "core" if isinstance(out, CoreRecord) else "quarantine")

    async def save_held(self, writes: list[tuple[str, bytes | None]]) -> None:
        """Held-record writes (None: a release) to their compacted topic, in order."""
        send = self.app.producer.send
        futures = [await send(self.held, key.encode("utf-8"), value, 0, None, None) for key, value in writes]
        if futures:
            await asyncio.gather(*futures)

    async def send_marks(self, connector: str, value: int) -> int:
        """The mark on every partition of every core topic; returns how many were sent."""
        producer = self.app.producer._ensure_producer()   # noqa: SLF001 — partition metadata of topics we only write
        futures = []
        for topic in self.core_topics:
            for part in sorted(await producer.partitions_for(topic)):
                futures.append(await self.app.producer.send(topic, None, mark_value(connector, value), part, None,
                                                            [(KIND_HEADER, WATERMARK_KIND)]))
        await asyncio.gather(*futures)
        return len(futures)


def _output_counts(outputs: list[Any]) -> dict[str, int]:
    core = sum(1 for out in outputs if isinstance(out, CoreRecord))
    quarantined = sum(1 for out in outputs if isinstance(out, QuarantineEntry))
    return {"core": core, "quarantined": quarantined}


class TransformWorker:
    """The transform stage of one worker: its state, its chain, and the loop that feeds them."""

    def __init__(self, app, settings: Settings) -> None:
        catalog = catalog_for(settings.paths)
        self.settings, self.mapping = settings, mapping_for_role(catalog, settings)
        self.catalog, self.prefix = catalog, settings.source.topic_prefix
        self.heartbeats = heartbeat_topic(self.prefix)
        self.topics = raw_topics(self.prefix, self.mapping.sources) + [self.heartbeats]
        self.group, self.held = transform_group(settings.worker.app_id), held_topic(settings.worker.app_id)
        self.held_rows = LoggedStore()
        self.pending = HeldRecords(CodedStore(self.held_rows))
        self.store_dir = store_folder(settings.worker.state_dir, settings.worker.app_id)
        self.store, self.fresh = open_store(self.store_dir)
        self.watch = SchemaWatch(self.store.space("schema"))
        self.coverage = FeedCoverage()
        self.refs = ReferenceFeed(settings.connections.kafka_bootstrap, lookup_topics(self.mapping, self.prefix),
                                  f"{self.group}-reference", settings.worker.transform_take)
        self.monitor = monitor_of(app)
        self.io = TransformIO(app, settings.worker.core_prefix, catalog.tables, self.held, settings.worker.produce_limit,
                              self.monitor.metrics)
        self.monitor.held = self.held_state
        self.marks = MarkTracker(self.prefix, MarkThrottle(int(settings.worker.mark_every * 1000),
                                                           int(settings.worker.idle_mark_every * 1000)))
        self.wait_ms = int(settings.worker.lookup_wait * 1000)
        # how long a record has been held is the deployment's time (steered in the demo and the tests, like
        # the sink's); the marks' pace stays real time, as it paces real traffic
        self.clock = clock_for(settings.clock)
        grace = load_schedule(settings.paths.schedule, settings.worker.schedule_mode).grace
        self.close_of = functools.partial(batch_close_ms, catalog.tables, int(grace.total_seconds() * 1000))
        self.lock = asyncio.Lock()   # the loop, the timer and rebalances never interleave their plan → checkpoint
        self.batches: RawBatches | None = None
        self.activity = Activity(log, "transform")
        self.run_chain = functools.partial(
            transform, catalog=catalog, mapping=self.mapping, lookups=TableLookups(self.store, self.mapping.lookups),
            key=crypto.load_key(settings.sm4), sm4_settings=crypto.sm4_settings(settings.sm4), defer=True,
            schema_of=functools.partial(avro.load_schema, directory=settings.paths.avro), watch=self.watch,
            max_bytes=settings.worker.produce_limit, role=role_for(settings, self.store.space("city_owners")))

    def held_state(self) -> tuple[int, float | None] | None:
        """(records held, seconds the oldest has waited) once restored, for the metrics."""
        if self.batches is None:
            return None
        since = self.pending.oldest_since()
        return len(self.pending), (None if since is None else max(0.0, (self._held_now() - since) / 1000))

    def _held_now(self) -> int:
        return int(self.clock.now().timestamp() * 1000)

    def run(self, message, give_up: bool) -> list[Any]:
        """batch_plan's Run: the chain, leaving a batch's records to be finished together (defer=True)."""
        return self.run_chain(message, give_up=give_up)

    # --- start ------------------------------------------------------------------------------------------
    def declare_topics(self) -> None:
        """Raw topics the connector has not written yet and the held-records topic exist before the consumer
        subscribes (a topic created later is seen at the next metadata refresh, 5 minutes on); a state topic
        that is not compacted is an operator error, logged."""
        c = self.settings.connections
        created = ensure_topics(c.kafka_bootstrap, self.topics, "hisbridge-transform-setup", compacted=True,
                                replication=c.topic_replication)
        if created:
            log.info("created raw topics not written by the connector yet: %s", ", ".join(created))
        ensure_topics(c.kafka_bootstrap, [self.held], "hisbridge-transform-setup", compacted=True,
                      replication=c.topic_replication)
        for topic in not_compacted(c.kafka_bootstrap, lookup_topics(self.mapping, self.prefix) + [self.held]):
            log.error("topic %s is not compacted (cleanup.policy): a restart after its retention loses the rows "
                      "this worker restores from it — set cleanup.policy=compact (connectors/README.md)", topic)

    async def restore(self) -> None:
        """The reference store up to the reference topics' end: the whole topics when its folder was new or
        lost (progress logged every 5 s, bilingual), else only the tail after the offsets it keeps — and the
        whole topic of a lookup the mapping now lays out otherwise than the store kept it (state.lookups)."""
        started = time.monotonic()
        relaid = relayout(self.store, self.mapping, self.prefix)
        if relaid and not self.fresh:
            log.warning(render("reference.relayout", {"folder": self.store_dir, **relaid.said()}, joiner=" / "))
        await self.refs.start(self.store.offsets())
        if self.fresh:
            behind = await self.refs.behind(await self.refs.end_offsets())
            log.info(render("reference.rebuild", {"folder": self.store_dir, "behind": behind}, joiner=" / "))
        applied = await self.catch_up(progress=True)
        log.info(render("reference.ready", {"folder": self.store_dir, "read": applied, "parts": len(self.refs.parts),
                                            "seconds": f"{time.monotonic() - started:.1f}"}, joiner=" / "))

    async def catch_up(self, progress: bool = False) -> int:
        """Read the reference topics up to their end offsets now (every partition, outside the group): rows
        into the store, this worker's held records for them retried. Returns the messages read."""
        ends = await self.refs.end_offsets()
        started = last_log = time.monotonic()
        read = 0
        while (behind := await self.refs.behind(ends)) > 0:
            events = await self.refs.fetch()
            if not events:
                continue
            read += len(events)
            plan = plan_references(events, mapping=self.mapping, lookups=self.store, pending=self.pending,
                                   run=self.run, close_of=self.close_of, watch=self.watch, coverage=self.coverage)
            for (topic, part), offset in plan.offsets.items():
                self.store.note_offset(topic, part, offset + 1)
            await self.checkpoint(plan)
            if progress and time.monotonic() - last_log >= 5:
                last_log = time.monotonic()
                rate = read / (last_log - started)
                log.info(render("reference.progress", {"read": read, "behind": behind - len(events),
                                                       "rate": f"{rate:.0f}",
                                                       "eta": f"{(behind - len(events)) / rate:.0f}"}, joiner=" / "))
        return read

    # --- partitions ---------------------------------------------------------------------------------------
    async def adopt(self, assigned: set[Partition]) -> None:
        """The held records of the partitions the group assigned, from the held-records topic (a partition
        taken over brings what its previous owner held), then those whose row the store holds retried."""
        async with self.lock:
            rows = LoggedStore()
            rows.restore(m for m in await asyncio.to_thread(
                lambda: list(read_from_start(self.settings.connections.kafka_bootstrap, {(self.held, 0): None})))
                if m[1] is not None and held_partition(text(m[1])) in assigned)
            self.held_rows, self.pending = rows, HeldRecords(CodedStore(rows))
            log.info("assigned %d raw partitions, holding %d records for them", len(assigned), len(rows))
            # no mark from inside a rebalance: the consumer's positions are not settled yet
            await self.checkpoint(plan_present(lookups=self.store, pending=self.pending, run=self.run,
                                               close_of=self.close_of), mark=False)

    async def settle(self) -> None:
        """Before partitions are revoked: the batch in progress finishes its checkpoint first."""
        async with self.lock:
            pass

    # --- one batch ----------------------------------------------------------------------------------------
    async def checkpoint(self, plan: BatchPlan, mark: bool = True) -> None:
        """Produce the plan's outputs, then release the held records that went out (only now: a crash before
        this retries them), then write the held-record changes, then the reference store (rows and their
        offsets, one write), then the mark — all acknowledged."""
        await self.io.produce(plan.outputs)
        release_all(self.pending, plan)
        await self.io.save_held(self.held_rows.drain())
        self.store.commit()
        for source, column, change in self.watch.drain():
            log.error("源表结构变化 / schema drift in %s: column %s %s — its records are quarantined as schema_drift",
                      source, column, change)
        data = bool(plan.outputs) or any(topic != self.heartbeats for topic, _ in plan.offsets)
        self.marks.observe(plan.commits, plan.heartbeats, produced=data)
        if mark:
            await self._mark()

    async def _mark(self) -> None:
        if self.batches is None:
            return
        now = _now_ms()
        value = self.marks.due(now, await self.batches.positions(set(self.topics)), self.pending.oldest_commit())
        if value is not None:
            sent = await self.io.send_marks(self.prefix, value)
            self.marks.sent(now, value)
            log.debug("watermark mark %s commit_time_ms=%d on %d partitions", self.prefix, value, sent)

    async def _expiry(self, now: int) -> BatchPlan:
        """Held records to give up on: their batch closed by the mark of everything else (or the bound)."""
        free = None if self.batches is None else self.marks.free(await self.batches.positions(set(self.topics)))
        return plan_expiry(pending=self.pending, run=self.run, now_ms=now, wait_ms=self.wait_ms, free_mark_ms=free)

    async def handle(self, batch: list[RawEvent]) -> dict[Partition, int]:
        """The reference store caught up to the reference topics' end now, then the batch, then the expired
        held records, each through plan → checkpoint; returns the last offset handled per partition."""
        started = time.monotonic()
        consumed: dict[str, int] = {}
        for event in batch:
            consumed[event.topic] = consumed.get(event.topic, 0) + 1
        for topic, n in consumed.items():
            self.monitor.metrics.count("transform", topic, "consumed", n)
        async with self.lock:
            await self.catch_up()
            now = self._held_now()
            plan = plan_batch(batch, mapping=self.mapping, lookups=self.store, pending=self.pending,
                              run=self.run, now_ms=now, watch=self.watch, close_of=self.close_of,
                              coverage=self.coverage)
            await self.checkpoint(plan)
            for part, offset in plan.offsets.items():
                self.coverage.handled(part, offset)
            skipped = {k: n for k, n in plan.counts.items() if k.startswith("skip:") and k != "skip:heartbeat"}
            if skipped:
                log.debug("batch of %d: skipped %s", len(batch), skipped)
            expired = await self._expiry(now)
            await self.checkpoint(expired)
        work = bool(plan.outputs or expired.outputs) or any(e.topic != self.heartbeats for e in batch)
        self.activity.add(time.monotonic() - started, work, raw=len(batch),
                          **_output_counts(plan.outputs + expired.outputs), waiting=len(self.pending))
        return plan.offsets

    @staticmethod
    async def commit(consumer: AIOKafkaConsumer, handled: dict[Partition, int]) -> None:
        """The batch's own offsets: later messages may already be fetched, but are not handled yet."""
        try:
            await consumer.commit({TopicPartition(t, p): offset + 1 for (t, p), offset in handled.items()})
        except CommitFailedError as exc:    # a rebalance took the partitions: their new owner re-reads
            log.warning("offsets of a handled batch not committed (%s): it will be read again", exc)

    async def loop(self) -> None:
        """Restore, then batch after batch: fetch, merge, plan, checkpoint, commit. Nothing is committed for
        a batch that raised: the worker stops (Faust crashes the app on a task's exception), a restart
        re-reads it."""
        await asyncio.to_thread(self.declare_topics)
        await self.restore()
        w = self.settings.worker
        # a fetch per partition big enough for a whole take: at aiokafka's default (1 MiB) a snapshot's patient
        # rows (~6 KB each with schemas) came 160 to a fetch, so a batch ended after 160 (the merge waits for the
        # partition that is behind) and a 20,000-row snapshot took 92 s through the group instead of 15 s
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.connections.kafka_bootstrap, group_id=self.group,
                                    client_id=self.group, enable_auto_commit=False, auto_offset_reset="earliest",
                                    max_poll_records=w.transform_take, max_partition_fetch_bytes=16 * 2**20)
        await consumer.start()
        batches = RawBatches(consumer, w.transform_take, w.transform_within, self.adopt, self.settle)
        consumer.subscribe(self.topics, listener=batches)
        self.batches = batches
        try:
            while True:
                batch = await batches.next()
                try:
                    handled = await self.handle(batch)
                except Exception:
                    log.exception("transform batch of %d raw messages failed: nothing committed", len(batch))
                    raise
                await self.commit(consumer, handled)
        finally:
            self.activity.flush()
            self.batches = None          # the timer leaves the store alone from now on
            async with self.lock:
                await consumer.stop()
                await self.refs.stop()
                self.store.close()

    async def log_activity(self) -> None:
        """The activity line also when the topics went quiet after a burst."""
        self.activity.flush_if_due()

    async def expire(self) -> None:
        """Keep the reference store current and quarantine records whose reference row did not arrive in
        time, also while the driver topics are quiet. A run that cannot finish stops the process: records it
        quarantined but could not release would otherwise be quarantined again and again (a restart
        retries them)."""
        if self.batches is None:
            return
        async with self.lock:
            if self.batches is None:      # stopped while this tick waited
                return
            try:
                await self.catch_up()
            except Exception:   # noqa: BLE001 — the next tick (or batch) catches up again; nothing is lost
                log.warning("reference store catch-up failed: retried in a second", exc_info=True)
                return
            if not self.pending:     # (len(pending) builds its index)
                return
            try:
                await self.checkpoint(await self._expiry(self._held_now()))
            except BaseException:
                log.critical("expiry of %d waiting records not finished: exiting (a restart retries them)",
                             len(self.pending), exc_info=True)
                logging.shutdown()
                os._exit(70)


def register(app, settings: Settings) -> None:
    """The transform's task and expiry timer on the worker's Faust app (called when the worker starts)."""
    worker = TransformWorker(app, settings)
    app.task(worker.loop)
    app.timer(1.0, name="hisbridge.transform.expire_waiting")(worker.expire)
    app.timer(5.0, name="hisbridge.transform.activity_log")(worker.log_activity)

    @app.task
    async def declare_core_topics() -> None:
        """Core and quarantine topics exist before the first mark (marks go to every partition)."""
        for name in worker.io.core_topics + [worker.io.quarantine]:
            await app.topic(name, key_serializer="raw", value_serializer="raw").maybe_declare()
