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

State (hisbridge.state): reference rows in memory, rebuilt at start from the reference tables' compacted raw
topics up to the group's committed offsets (where the consumer resumes); held records in memory, written
through to the compacted held-records topic before a batch's offsets are committed, read back whole at
start. A record waits for its reference row until its batch closes (the schedule's period end + grace) by
the watermark of everything else — so it never delays the close — or worker.lookup_wait seconds when an
operator set that bound; then it is quarantined with the missing key and stays held, released (and its
entry resolved by the sink) whenever the row arrives (a 1 s timer and after every batch).

Limits: marks name one connector, the topic prefix (all raw topics of this worker); with several transform
workers in one group each would mark only its own partitions, so run one transform worker per connector.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from typing import Any, Iterable

from aiokafka import (AIOKafkaConsumer, ConsumerRebalanceListener,
                      TopicPartition)
from aiokafka.errors import CommitFailedError
from hisbridge.catalog import catalog_for
from hisbridge.chain import avro, crypto
from hisbridge.chain.chain import CoreRecord, transform
from hisbridge.chain.mapping import load_mapping
from hisbridge.contract import (KIND_HEADER, QUARANTINE_KIND, WATERMARK_KIND,
                                QuarantineEntry, core_topic, heartbeat_topic,
                                held_topic, mark_value, quarantine_key,
                                quarantine_topic, raw_topics, serialize_entry,
                                transform_group)
from hisbridge.delivery.schedule import load_schedule
from hisbridge.runtime.batch_plan import (BatchPlan, batch_close_ms,
                                          plan_batch, plan_expiry,
                                          release_all)
from hisbridge.runtime.ordering import Merge, Partition, RawEvent
from hisbridge.runtime.topics import (committed_offsets, ensure_topics,
                                      not_compacted, read_from_start)
from hisbridge.runtime.watermark import MarkThrottle, MarkTracker
from hisbridge.settings import Settings
from hisbridge.state.codec import CodedStore, LoggedStore
from hisbridge.state.held import HeldRecords
from hisbridge.state.lookups import (TableLookups, lookup_topics,
                                     restore_lookups)

log = logging.getLogger(__name__)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _part(tp: TopicPartition) -> Partition:
    return (tp.topic, tp.partition)


class RawBatches(ConsumerRebalanceListener):
    """Batches of raw messages from the consumer, merged oldest first across partitions (Merge)."""

    def __init__(self, consumer: AIOKafkaConsumer, take: int, within: float) -> None:
        self.consumer, self.take = consumer, take
        self.merge = Merge(take, within)

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

    async def on_partitions_assigned(self, assigned) -> None:
        pass


class TransformIO:
    """What the worker writes: outputs to core and quarantine topics, held-record changes, marks — each send
    awaited until the broker acknowledged it (producer acks=all, Faust's default)."""

    def __init__(self, app, core_prefix: str, tables: Iterable[str], held: str) -> None:
        self.app, self.core_prefix, self.held = app, core_prefix, held
        self.core_topics = [core_topic(core_prefix, t) for t in sorted(tables)]
        self.quarantine = quarantine_topic(core_prefix)

    async def produce(self, outputs: list[Any]) -> None:
        """A send error raises here, inside the batch, before any offset of it may be committed."""
        send, futures = self.app.producer.send, []
        for out in outputs:
            if isinstance(out, CoreRecord):
                futures.append(await send(core_topic(self.core_prefix, out.table), out.key.encode("utf-8"),
                                          out.value, None, None, list(out.headers)))
            elif isinstance(out, QuarantineEntry):
                futures.append(await send(self.quarantine, quarantine_key(out.table, out.key), serialize_entry(out),
                                          None, None, [(KIND_HEADER, QUARANTINE_KIND)]))
                log.warning("quarantined %s key=%s: %s", out.table, out.key, ", ".join(out.rules))
        if futures:
            await asyncio.gather(*futures)

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


class TransformWorker:
    """The transform stage of one worker: its state, its chain, and the loop that feeds them."""

    def __init__(self, app, settings: Settings) -> None:
        catalog = catalog_for(settings.paths)
        self.settings, self.mapping = settings, load_mapping(catalog, settings.paths.mapping, settings.org)
        self.catalog, self.prefix = catalog, settings.source.topic_prefix
        self.topics = raw_topics(self.prefix, self.mapping.sources) + [heartbeat_topic(self.prefix)]
        self.group, self.held = transform_group(app.conf.id), held_topic(app.conf.id)
        self.held_rows = LoggedStore()
        self.pending = HeldRecords(CodedStore(self.held_rows))
        self.lookup_rows: dict[str, Any] = {}
        self.io = TransformIO(app, settings.worker.core_prefix, catalog.tables, self.held)
        self.marks = MarkTracker(self.prefix, MarkThrottle(int(settings.worker.mark_every * 1000)))
        self.wait_ms = int(settings.worker.lookup_wait * 1000)
        grace = load_schedule(settings.paths.schedule, settings.worker.schedule_mode).grace
        self.close_of = functools.partial(batch_close_ms, catalog.tables, int(grace.total_seconds() * 1000))
        self.lock = asyncio.Lock()   # the loop and the expiry timer never interleave their plan → checkpoint
        self.batches: RawBatches | None = None
        self.run_chain = functools.partial(
            transform, catalog=catalog, mapping=self.mapping, lookups=TableLookups(self.lookup_rows, self.mapping.lookups),
            key=crypto.load_key(settings.sm4), sm4_settings=crypto.sm4_settings(settings.sm4), defer=True,
            schema_of=functools.partial(avro.load_schema, directory=settings.paths.avro))

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

    def restore(self) -> None:
        """The reference rows as they stood at the group's committed offsets, where the consumer resumes (a
        first start restores nothing: it reads the topics from the beginning), and the held records."""
        started, bootstrap = time.monotonic(), self.settings.connections.kafka_bootstrap
        until = committed_offsets(bootstrap, self.group, lookup_topics(self.mapping, self.prefix))
        applied = restore_lookups(self.lookup_rows, self.mapping, read_from_start(bootstrap, until))
        self.held_rows.restore(read_from_start(bootstrap, {(self.held, 0): None}))
        log.info("restored %d reference-row changes from %d raw topic partitions (%d keys) and %d held records, "
                 "%.1f s", applied, len(until), len(self.lookup_rows), len(self.held_rows), time.monotonic() - started)

    # --- one batch ----------------------------------------------------------------------------------------
    async def checkpoint(self, plan: BatchPlan) -> None:
        """Produce the plan's outputs, then release the held records that went out (only now: a crash before
        this retries them), then write the held-record changes, then the mark — all acknowledged."""
        await self.io.produce(plan.outputs)
        release_all(self.pending, plan)
        await self.io.save_held(self.held_rows.drain())
        self.marks.observe(plan.commits, plan.heartbeats)
        await self._mark()

    async def _mark(self) -> None:
        if self.batches is None:
            return
        now = _now_ms()
        value = self.marks.due(now, await self.batches.positions(set(self.topics)), self.pending.oldest_commit())
        if value is not None:
            sent = await self.io.send_marks(self.prefix, value)
            self.marks.throttle.sent(now, value)
            log.debug("watermark mark %s commit_time_ms=%d on %d partitions", self.prefix, value, sent)

    async def _expiry(self, now: int) -> BatchPlan:
        """Held records to give up on: their batch closed by the mark of everything else (or the bound)."""
        free = None if self.batches is None else self.marks.free(await self.batches.positions(set(self.topics)))
        return plan_expiry(pending=self.pending, run=self.run, now_ms=now, wait_ms=self.wait_ms, free_mark_ms=free)

    async def handle(self, batch: list[RawEvent]) -> dict[Partition, int]:
        """The batch, then the expired held records, each through plan → checkpoint; returns the last offset
        handled per partition."""
        async with self.lock:
            now = _now_ms()
            plan = plan_batch(batch, mapping=self.mapping, lookups=self.lookup_rows, pending=self.pending,
                              run=self.run, now_ms=now, close_of=self.close_of)
            await self.checkpoint(plan)
            await self.checkpoint(await self._expiry(now))
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
        await asyncio.to_thread(self.restore)
        w = self.settings.worker
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.connections.kafka_bootstrap, group_id=self.group,
                                    client_id=self.group, enable_auto_commit=False, auto_offset_reset="earliest",
                                    max_poll_records=w.transform_take)
        await consumer.start()
        batches = RawBatches(consumer, w.transform_take, w.transform_within)
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
            await consumer.stop()

    async def expire(self) -> None:
        """Quarantine records whose reference row did not arrive in time, also while the topics are quiet.
        A run that cannot finish stops the process: records it quarantined but could not release would
        otherwise be quarantined again and again (a restart retries them)."""
        if self.batches is None or not self.pending:    # (len(pending) builds its index: only once restored)
            return
        async with self.lock:
            try:
                await self.checkpoint(await self._expiry(_now_ms()))
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

    @app.task
    async def declare_core_topics() -> None:
        """Core and quarantine topics exist before the first mark (marks go to every partition)."""
        for name in worker.io.core_topics + [worker.io.quarantine]:
            await app.topic(name, key_serializer="raw", value_serializer="raw").maybe_declare()
