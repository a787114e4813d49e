"""Transform agent: raw Debezium topics → `core.<table>` (Avro) and `core.quarantine` (JSON), plus watermark
marks for the sink (the wire contract is hisbridge.contract; the chain hisbridge.transform).

One consumer, driven by the source mapping: it reads the raw topic of every source table the mapping reads
(drivers and lookups) and the connector's heartbeat topic — no code per table. Per batch: decode → reference
rows into the lookups → transform → produce → await every ack → watermark marks → commit the batch's offsets.
The pure part of a batch is hisbridge.transformloop.plan_batch; this module only wires it to Kafka.
Raw topics the connector has not written yet are created at start (hisbridge.topics.ensure_topics), so a
table's first changes are not left unread until the consumer's next metadata refresh.

Why a batch consumer (aiokafka getmany, consumer group `<app id>.transform`) in the Faust worker rather than
a Faust agent over `stream.take`: Faust hands a stream its events one by one through its conductor, channel
queues and per-event acks, ~250 µs of CPU per event here — an agent that does nothing with take_events(500)
tops out at ~4,200 events/s on this machine (bench/RESULTS.md, "worker"), below the 5,000 records/s the
transform must sustain before doing any work. getmany returns a fetch's records as one list. The Faust app
still runs the worker: the expiry timer, the producer, the sink agent, the web page.
At-least-once: a batch's offsets are committed only after its outputs and its held-record writes are
acknowledged; a crash before that re-reads the batch.

State:
  reference rows      (patient master, dictionaries…) in memory, as the mapping's lookups read them. At
                      start they are rebuilt from the reference tables' raw topics, read from the beginning
                      up to the group's committed offsets — where the agent resumes, so it goes on from the
                      state it had there (transformloop.restore_lookups) — before the first batch is
                      handled; the connector creates those topics compacted, so they keep the newest row
                      of every key (a delete's tombstone removes it). No changelog copy: a Faust table here
                      wrote and read back every reference row once more, which was most of the worker's time
                      (bench/RESULTS.md, "worker"). A row compaction removed below the committed offset
                      while a newer version lies above it is missing until that version is read again:
                      records needing it wait for it, as for any late reference row.
  held records        records waiting for a reference row, one entry per record, keyed by the missing key +
                      the record's raw position (transformloop.HeldRecords), in memory and written through to
                      the compacted topic `<app id>.transform-held` (one partition) after every batch, before
                      its offsets are committed; read back whole at start.
A record still waiting after HISBRIDGE_LOOKUP_WAIT seconds is quarantined with the missing key (checked by
a 1 s timer and after every batch).

Settings (hisbridge.settings): paths.mapping, source.topic_prefix (the connector named in watermark marks),
worker.core_prefix, sm4.* (key, key file, mode…), worker.lookup_wait, worker.transform_take,
worker.transform_within, worker.mark_every.

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

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError

from hisbridge import avrocodec, crypto
from hisbridge.catalog import catalog_for
from hisbridge.mapping import load_mapping
from hisbridge.contract import (KIND_HEADER, QUARANTINE_KIND, WATERMARK_KIND, QuarantineEntry, core_topic,
                                heartbeat_topic, held_topic, mark_value, quarantine_key, quarantine_topic,
                                serialize_entry, transform_group)
from hisbridge.settings import Settings
from hisbridge.topics import committed_offsets, ensure_topics, not_compacted, read_from_start
from hisbridge.transform import CoreRecord, transform
from hisbridge.transformloop import (BatchPlan, CodedStore, HeldRecords, LoggedStore, MarkThrottle,
                                     Partition, RawEvent, TableLookups, TimeOrder, connector_mark_ms,
                                     lookup_topics, plan_batch, plan_expiry, raw_topics, release_all, restore_lookups)

log = logging.getLogger(__name__)


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Wiring:
    """The agent's I/O: produce a plan's outputs and marks, and know where each raw partition stands."""

    def __init__(self, app, catalog_tables: Iterable[str], connector: str, topics: list[str], core_prefix: str,
                 mark_every: float) -> None:
        self.app, self.connector, self.topics, self.core_prefix = app, connector, set(topics), core_prefix
        self.core_topics = [core_topic(core_prefix, t) for t in sorted(catalog_tables)]
        self.quarantine = quarantine_topic(core_prefix)
        self.consumer: Any = None           # the raw topics' AIOKafkaConsumer, once started
        self.order: TimeOrder = TimeOrder()  # its fetched messages not handled yet
        self.commits: dict[Partition, int] = {}
        self.heartbeat_ms: int | None = None
        self.throttle = MarkThrottle(int(mark_every * 1000))
        self.counters: dict[str, int] = {}

    async def produce(self, outputs: list[Any]) -> None:
        """Send every output and wait until the broker acknowledged each one (producer acks=all, Faust's
        default): a send error raises here, inside the batch, before any offset of it may be committed."""
        send = self.app.producer.send
        futures = []
        for out in outputs:
            if isinstance(out, CoreRecord):
                futures.append(await send(core_topic(self.core_prefix, out.table), out.key.encode("utf-8"), out.value, None, None,
                                          list(out.headers)))
                self._count("core_records")
            elif isinstance(out, QuarantineEntry):
                futures.append(await send(self.quarantine, quarantine_key(out.table, out.key), serialize_entry(out), None, None,
                                          [(KIND_HEADER, QUARANTINE_KIND)]))
                self._count("quarantined")
                log.warning("quarantined %s key=%s: %s", out.table, out.key, ", ".join(out.rules))
        if futures:
            await asyncio.gather(*futures)

    async def save(self, topic: str, writes: list[tuple[str, bytes | None]]) -> None:
        """Held-record writes (None: a release) to their compacted topic, in order, every one acknowledged."""
        send = self.app.producer.send
        futures = [await send(topic, key.encode("utf-8"), value, 0, None, None) for key, value in writes]
        if futures:
            await asyncio.gather(*futures)

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def observe(self, plan: BatchPlan) -> None:
        for part, ms in plan.commits.items():
            self.commits[part] = max(ms, self.commits.get(part, ms))
        if self.connector in plan.heartbeats:
            self.heartbeat_ms = max(plan.heartbeats[self.connector], self.heartbeat_ms or 0)

    async def mark_ms(self, pending) -> int | None:
        consumer = self.consumer
        if consumer is None:
            return None
        mine = [tp for tp in consumer.assignment() if tp.topic in self.topics]
        if not mine:
            return None
        caught_up = []
        for tp in mine:
            high = consumer.highwater(tp)
            # the next offset this worker handles on tp: the oldest buffered one, else the consumer's
            # position (after its last fetch, or where the group's committed offset put it)
            buffered = self.order.next_offset((tp.topic, tp.partition))
            position = buffered if buffered is not None else await consumer.position(tp)
            if high is not None and position >= high:
                caught_up.append((tp.topic, tp.partition))
        last = {(tp.topic, tp.partition): self.commits.get((tp.topic, tp.partition)) for tp in mine}
        return connector_mark_ms(last, caught_up, self.heartbeat_ms, pending.oldest_commit())

    async def marks(self, pending) -> None:
        """After a batch's outputs are acknowledged: tell every partition of every core topic how far this
        worker has produced (throttled; only when the mark moved)."""
        now = _now_ms()
        value = await self.mark_ms(pending)
        if not self.throttle.due(now, value):
            return
        producer = self.app.producer._ensure_producer()   # noqa: SLF001 — partition metadata of topics we only write
        futures = []
        for topic in self.core_topics:
            for part in sorted(await producer.partitions_for(topic)):
                futures.append(await self.app.producer.send(topic, None, mark_value(self.connector, value), part,
                                                            None, [(KIND_HEADER, WATERMARK_KIND)]))
        await asyncio.gather(*futures)
        self.throttle.sent(now, value)
        log.info("watermark mark %s commit_time_ms=%d on %d partitions", self.connector, value, len(futures))


def _exit_unfinished(what: str, count: int) -> None:
    """A timer run that cannot finish its produce → release steps stops the process: held records it
    quarantined but could not release would otherwise be quarantined again and again."""
    log.critical("%s not finished for %d records: exiting (a restart retries them)", what, count)
    logging.shutdown()
    os._exit(70)


class _RawBatches(ConsumerRebalanceListener):
    """Batches of raw messages from the consumer, merged oldest first across partitions (TimeOrder)."""

    def __init__(self, consumer: AIOKafkaConsumer, take: int, within: float) -> None:
        self.consumer, self.take, self.within = consumer, take, within
        self.order = TimeOrder()
        self.wait_ms = int(within * 1000)
        self.stalled_since: float | None = None

    async def next(self) -> list[RawEvent]:
        while True:
            fetched = await self.consumer.getmany(timeout_ms=self.wait_ms, max_records=self.take)
            for tp, messages in fetched.items():
                self.order.add((tp.topic, tp.partition), [(m.timestamp, RawEvent(m.topic, m.partition, m.offset,
                                                                                  m.key, m.value)) for m in messages])
            batch = self.order.take(self.take, await self._behind())
            buffered = any(self.order.buffers.values())
            if not batch and buffered:
                # a partition with more on the broker keeps the merge waiting, but not for ever
                self.stalled_since = self.stalled_since or time.monotonic()
                if time.monotonic() - self.stalled_since >= self.within:
                    batch = self.order.take(self.take, ())
            self._flow()
            if batch:
                # no wait while a backlog is being merged: the next call adds only what is fetched already
                self.stalled_since, self.wait_ms = None, 0
                return batch
            # waiting for one partition's next fetch: poll briefly; nothing buffered: wait for news
            self.wait_ms = 10 if buffered else int(self.within * 1000)

    async def _behind(self) -> list[Partition]:
        """Assigned partitions with messages on the broker not fetched yet (highwater unknown counts)."""
        out = []
        for tp in self.consumer.assignment():
            high = self.consumer.highwater(tp)
            if high is None or await self.consumer.position(tp) < high:
                out.append((tp.topic, tp.partition))
        return out

    def _flow(self) -> None:
        """Bounded memory while merging: a partition with a few batches buffered is not fetched further
        until the others have caught up with it."""
        size = self.order.buffered
        full = [tp for tp in self.consumer.assignment() if size((tp.topic, tp.partition)) >= 2 * self.take]
        ready = [tp for tp in self.consumer.paused() if size((tp.topic, tp.partition)) < self.take]
        if full:
            self.consumer.pause(*full)
        if ready:
            self.consumer.resume(*ready)

    async def on_partitions_revoked(self, revoked) -> None:
        self.order.drop((tp.topic, tp.partition) for tp in revoked)

    async def on_partitions_assigned(self, assigned) -> None:
        pass


def register(app, config: Settings) -> None:
    catalog = catalog_for(config.paths)
    mapping = load_mapping(catalog, config.paths.mapping, config.org)
    key = crypto.load_key(config.sm4)
    settings = crypto.sm4_settings(config.sm4)
    bootstrap, replication = config.connections.kafka_bootstrap, config.connections.topic_replication
    prefix = config.source.topic_prefix
    topics = raw_topics(mapping, prefix) + [heartbeat_topic(prefix)]
    wait_ms = int(config.worker.lookup_wait * 1000)
    take = config.worker.transform_take
    within = config.worker.transform_within
    held = held_topic(app.conf.id)

    def declare_state_topics() -> None:
        """Raw topics the connector has not written yet, and the held-records topic, exist before the
        consumer subscribes; a state topic that is not compacted is an operator error, logged."""
        created = ensure_topics(bootstrap, topics, "hisbridge-transform-setup", compacted=True, replication=replication)
        if created:
            log.info("created raw topics not written by the connector yet: %s", ", ".join(created))
        ensure_topics(bootstrap, [held], "hisbridge-transform-setup", compacted=True, replication=replication)
        for topic in not_compacted(bootstrap, lookup_topics(mapping, prefix) + [held], "hisbridge-transform-setup"):
            log.error("topic %s is not compacted (cleanup.policy): a restart after its retention loses the rows "
                      "this worker restores from it — set cleanup.policy=compact (connectors/README.md)", topic)
    held_rows = LoggedStore()
    pending = HeldRecords(CodedStore(held_rows))
    lookup_rows: dict[str, Any] = {}
    lookups = TableLookups(lookup_rows, mapping.lookups)
    restored = asyncio.Event()
    wiring = _Wiring(app, catalog.tables, prefix, topics, config.worker.core_prefix, config.worker.mark_every)
    lock = asyncio.Lock()   # the agent and the expiry timer never interleave their read-produce-release steps

    schema_of = functools.partial(avrocodec.load_schema, directory=config.paths.avro)

    def run(message, give_up: bool) -> list[Any]:
        return transform(message, catalog=catalog, mapping=mapping, lookups=lookups, key=key, sm4_settings=settings,
                         give_up=give_up, defer=True, schema_of=schema_of)   # plan_batch finishes a batch together

    async def finish(plan: BatchPlan) -> None:
        await wiring.produce(plan.outputs)
        release_all(pending, plan)      # only now: a crash before this retries the held records again
        await wiring.save(held, held_rows.drain())
        wiring.observe(plan)
        await wiring.marks(pending)

    group = transform_group(app.conf.id)

    async def restore_state() -> None:
        """The reference rows as they stood at the group's committed offsets, where the consumer resumes
        (a first start restores nothing: it reads the topics from the beginning), and the held records."""
        started = time.monotonic()
        await asyncio.to_thread(declare_state_topics)
        until = await asyncio.to_thread(committed_offsets, bootstrap, group, lookup_topics(mapping, prefix))
        applied = await asyncio.to_thread(restore_lookups, lookup_rows, mapping, read_from_start(bootstrap, until))
        await asyncio.to_thread(held_rows.restore, read_from_start(bootstrap, {(held, 0): None}))
        log.info("restored %d reference-row changes from %d raw topic partitions (%d keys) and %d held records, "
                 "%.1f s", applied, len(until), len(lookup_rows), len(held_rows), time.monotonic() - started)

    async def handle(batch: list[RawEvent]) -> dict[Partition, int]:
        """The batch through plan → produce → release → marks; returns the last offset handled per partition."""
        async with lock:
            now = _now_ms()
            plan = plan_batch(batch, mapping=mapping, lookups=lookup_rows, pending=pending, run=run, now_ms=now)
            await finish(plan)
            await finish(plan_expiry(pending=pending, run=run, now_ms=now, wait_ms=wait_ms))
        return plan.offsets

    async def commit(consumer: AIOKafkaConsumer, handled: dict[Partition, int]) -> None:
        """The batch's own offsets: later messages may already be fetched, but are not handled yet."""
        try:
            await consumer.commit({TopicPartition(t, p): offset + 1 for (t, p), offset in handled.items()})
        except CommitFailedError as exc:    # a rebalance took the partitions: their new owner re-reads
            log.warning("offsets of a handled batch not committed (%s): it will be read again", exc)

    @app.task
    async def raw_to_core() -> None:
        """Restore, then batch after batch: fetch, merge the partitions oldest first (TimeOrder), plan
        (pure), produce the outputs and held-record writes, await every broker ack, commit. Nothing is
        committed for a batch that raised: the worker stops (Faust crashes the app on a task's exception)
        and a restart re-reads it."""
        await restore_state()
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, client_id=group,
                                    enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=take)
        await consumer.start()
        batches = _RawBatches(consumer, take, within)
        consumer.subscribe(topics, listener=batches)
        wiring.consumer, wiring.order = consumer, batches.order
        restored.set()
        try:
            while True:
                batch = await batches.next()
                try:
                    handled = await handle(batch)
                except Exception:
                    log.exception("transform batch of %d raw messages failed: nothing committed", len(batch))
                    raise
                await commit(consumer, handled)
        finally:
            await consumer.stop()

    @app.timer(1.0, name="hisbridge.transform.expire_waiting")
    async def expire_waiting() -> None:
        """Quarantine records whose reference row did not arrive in time, also while the topics are quiet."""
        if not restored.is_set() or not pending:    # (len(pending) builds its index: only once restored)
            return
        async with lock:
            done = False
            try:
                await finish(plan_expiry(pending=pending, run=run, now_ms=_now_ms(), wait_ms=wait_ms))
                done = True
            except Exception:
                log.exception("expiry of waiting records failed")
                raise
            finally:
                if not done:
                    _exit_unfinished("expiry of waiting records", len(pending))

    @app.task
    async def declare_core_topics() -> None:
        """Core and quarantine topics exist before the first mark (marks go to every partition)."""
        for name in wiring.core_topics + [wiring.quarantine]:
            await app.topic(name, key_serializer="raw", value_serializer="raw").maybe_declare()

