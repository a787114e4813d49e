"""Transform agent: raw Debezium topics → `core.<table>` (Avro) and `core.quarantine` (JSON), plus watermark
marks for the sink (the contract is in hisbridge.sinkloop's docstring; the chain in hisbridge.transform).

One agent, driven by the source mapping: it consumes the raw topic of every source table the mapping reads
(drivers and lookups) and the connector's heartbeat topic — no code per table. Per batch (take_events):
decode → reference rows into the lookup table → transform → produce → await every ack → watermark marks.
The pure part of a batch is hisbridge.transformloop.plan_batch; this module only wires it to Kafka.
Raw topics the connector has not written yet are created at start (hisbridge.topics.ensure_topics), so a
table's first changes are not left unread until the consumer's next metadata refresh.

State, in two Faust GlobalTables (changelog-backed: a restart rebuilds them, every worker holds all rows):
  <app>-hisbridge-transform-lookups   reference rows (patient master, dictionaries…) from their CDC topics
  <app>-hisbridge-transform-pending   records waiting for a reference row, one entry per record, keyed by
                                      the missing key + the record's raw position (transformloop.HeldRecords)
A record still waiting after HISBRIDGE_LOOKUP_WAIT seconds is quarantined with the missing key (checked by
a 1 s timer and after every batch). Both tables have a one-partition changelog written to partition 0, so
the timer may write them too, outside stream iteration.

Environment:
  HISBRIDGE_MAPPING           source-mapping file (default schemas/mapping/demo_hospital.yaml)
  HISBRIDGE_TOPIC_PREFIX      Debezium topic.prefix = the connector named in watermark marks (default his)
  HISBRIDGE_CORE_PREFIX       core topic prefix (default core)
  HISBRIDGE_SM4_KEY / HISBRIDGE_SM4_KEY_FILE   the SM4 key (32 hex); HISBRIDGE_SM4_KEY_VERSION optional
  HISBRIDGE_SM4_MODE/_PADDING/_ENCODING/_UPPERCASE/_IV   default SM4/ECB/PKCS7, lowercase hex
  HISBRIDGE_LOOKUP_WAIT       seconds a record waits for a missing reference row (default 300)
  HISBRIDGE_TRANSFORM_TAKE    events per batch (default 500)
  HISBRIDGE_TRANSFORM_WITHIN  seconds to wait for a fuller batch (default 1.0)
  HISBRIDGE_MARK_EVERY        minimum seconds between two watermark marks (default 1.0)

Limits: marks name one connector, the topic prefix (all raw topics of this worker); with several transform
workers in one group each would mark only its own partitions, so run one transform worker per connector.
Table changelog writes are flushed by Faust before it commits offsets, but their delivery is not awaited
like the core produces are.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Iterable

from faust.tables.globaltable import GlobalTable

from hisbridge import config, crypto
from hisbridge.app import app
from hisbridge.catalog import load_catalog
from hisbridge.mapping import load_mapping
from hisbridge.quarantine import QuarantineEntry, serialize_entry
from hisbridge.sinkloop import KIND_HEADER, WATERMARK_KIND, core_topic
from hisbridge.topics import ensure_topics
from hisbridge.transform import CoreRecord, transform
from hisbridge.transformloop import (BatchPlan, CodedStore, MarkThrottle, Partition, RawEvent, TableLookups,
                                     HeldRecords, connector_mark_ms, heartbeat_topic, mark_value, plan_batch,
                                     plan_expiry, raw_topics, release_all, sm4_settings_from_env)

log = logging.getLogger(__name__)
QUARANTINE_KIND = b"quarantine"


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Wiring:
    """The agent's I/O: produce a plan's outputs and marks, and know where each raw partition stands."""

    def __init__(self, app, catalog_tables: Iterable[str], connector: str, topics: list[str]) -> None:
        self.app, self.connector, self.topics = app, connector, set(topics)
        self.core_topics = [core_topic(t) for t in sorted(catalog_tables)]
        self.quarantine = core_topic("quarantine")
        self.commits: dict[Partition, int] = {}
        self.offsets: dict[Partition, int] = {}
        self.heartbeat_ms: int | None = None
        self.throttle = MarkThrottle(int(float(config.env_str("HISBRIDGE_MARK_EVERY", "1.0")) * 1000))
        self.counters: dict[str, int] = {}

    async def produce(self, outputs: list[Any]) -> None:
        """Send every output and wait until the broker acknowledged each one (producer acks=all, Faust's
        default): a send error raises here, inside the batch, before any offset of it may be committed."""
        send = self.app.producer.send
        futures = []
        for out in outputs:
            if isinstance(out, CoreRecord):
                futures.append(await send(core_topic(out.table), out.key.encode("utf-8"), out.value, None, None,
                                          list(out.headers)))
                self._count("core_records")
            elif isinstance(out, QuarantineEntry):
                key = f"{out.table}|{out.key}".encode("utf-8") if out.key else None
                futures.append(await send(self.quarantine, key, serialize_entry(out), None, None,
                                          [(KIND_HEADER, QUARANTINE_KIND)]))
                self._count("quarantined")
                log.warning("quarantined %s key=%s: %s", out.table, out.key, ", ".join(out.rules))
        if futures:
            await asyncio.gather(*futures)

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def observe(self, plan: BatchPlan) -> None:
        for part, ms in plan.commits.items():
            self.commits[part] = max(ms, self.commits.get(part, ms))
        self.offsets.update(plan.offsets)
        if self.connector in plan.heartbeats:
            self.heartbeat_ms = max(plan.heartbeats[self.connector], self.heartbeat_ms or 0)

    def _position(self, tp) -> int | None:
        """Next offset this worker will handle on tp: after the last one it handled, else where the group's
        committed offset left it (Faust keeps it after its seek at assignment)."""
        part = (tp.topic, tp.partition)
        if part in self.offsets:
            return self.offsets[part] + 1
        committed = self.app.consumer._committed_offset.get(tp)   # noqa: SLF001 — no public accessor
        return committed if committed is not None else 0

    def mark_ms(self, pending) -> int | None:
        consumer = self.app.consumer
        mine = [tp for tp in consumer.assignment() if tp.topic in self.topics]
        if not mine:
            return None
        caught_up = []
        for tp in mine:
            high = consumer.highwater(tp)
            if high is not None and (self._position(tp) or 0) >= high:
                caught_up.append((tp.topic, tp.partition))
        last = {(tp.topic, tp.partition): self.commits.get((tp.topic, tp.partition)) for tp in mine}
        return connector_mark_ms(last, caught_up, self.heartbeat_ms, pending.oldest_commit())

    async def marks(self, pending) -> None:
        """After a batch's outputs are acknowledged: tell every partition of every core topic how far this
        worker has produced (throttled; only when the mark moved)."""
        now = _now_ms()
        value = self.mark_ms(pending)
        if not self.throttle.due(now, value):
            return
        producer = self.app.producer._ensure_producer()   # noqa: SLF001 — partition metadata of topics we only write
        futures = []
        for topic in self.core_topics:
            for part in sorted(await producer.partitions_for(topic)):
                futures.append(await self.app.producer.send(topic, None, mark_value(self.connector, value), part,
                                                            None, [(KIND_HEADER, WATERMARK_KIND.encode())]))
        await asyncio.gather(*futures)
        self.throttle.sent(now, value)
        log.info("watermark mark %s commit_time_ms=%d on %d partitions", self.connector, value, len(futures))


def _exit_unfinished(what: str, count: int) -> None:
    """Leaving a take_events body without finishing would let Faust ack the batch (see the agent's
    docstring): stop the process instead — a crash is re-consumed, a silent ack would be a loss."""
    log.critical("%s not finished for %d events: exiting before Faust acks them", what, count)
    logging.shutdown()
    os._exit(70)


class _OnePartitionTable(GlobalTable):
    """A GlobalTable whose changelog has one partition, written to partition 0 whoever writes. Faust takes
    the partition from the current event (none in a timer, nor in a take_events body, whose events are
    read by a background task) or, with use_partitioner, from producer metadata that may not know a
    just-created changelog topic yet: both fail at random, a fixed partition cannot."""

    def partition_for_key(self, key: Any) -> int:
        return 0


def _global_table(app, name: str) -> GlobalTable:
    """recovery_buffer_size=1 as Faust advises against GlobalTable recovery loops. Values are raw bytes
    of exact JSON (CodedStore): datetimes and Decimals come back as they went in after a restart."""
    table = _OnePartitionTable(app, name=name, beacon=app.tables.beacon, partitions=1, key_type=str,
                               value_type=bytes, recovery_buffer_size=1, standby_buffer_size=1, is_global=True)
    return app.tables.add(table)


def register(app) -> None:
    catalog = load_catalog()
    mapping = load_mapping(catalog)
    key = crypto.load_key(key_file=os.environ.get("HISBRIDGE_SM4_KEY_FILE") or None)
    settings = sm4_settings_from_env()
    prefix = config.raw_topic_prefix()
    topics = raw_topics(mapping, prefix) + [heartbeat_topic(prefix)]
    created = ensure_topics(topics, "hisbridge-transform-setup")
    if created:
        log.info("created raw topics not written by the connector yet: %s", ", ".join(created))
    wait_ms = int(float(config.env_str("HISBRIDGE_LOOKUP_WAIT", "300")) * 1000)
    take = config.env_int("HISBRIDGE_TRANSFORM_TAKE", 500)
    within = float(config.env_str("HISBRIDGE_TRANSFORM_WITHIN", "1.0"))
    tables = [_global_table(app, "hisbridge-transform-lookups"), _global_table(app, "hisbridge-transform-pending")]
    lookup_rows, pending = CodedStore(tables[0]), HeldRecords(CodedStore(tables[1]))
    lookups = TableLookups(lookup_rows, mapping.lookups)
    wiring = _Wiring(app, catalog.tables, prefix, topics)
    lock = asyncio.Lock()   # the agent and the expiry timer never interleave their read-produce-release steps
    raw = app.topic(*topics, key_serializer="raw", value_serializer="raw")

    def run(message, give_up: bool) -> list[Any]:
        return transform(message, catalog=catalog, mapping=mapping, lookups=lookups, key=key, sm4_settings=settings,
                         give_up=give_up, defer=True)    # plan_batch finishes a batch's records together

    async def finish(plan: BatchPlan) -> None:
        await wiring.produce(plan.outputs)
        release_all(pending, plan)      # only now: a crash before this retries the held records again
        wiring.observe(plan)
        await wiring.marks(pending)

    @app.agent(raw, name="hisbridge.transform.raw_to_core")
    async def raw_to_core(stream):
        """One take_events batch at a time: plan (pure), produce, await every broker ack, then marks.

        How this is at-least-once with Faust: take_events turns the stream's automatic acks off and acks
        the batch's events only in the `finally` after its `yield`, i.e. when this loop body returns
        control; Faust commits per partition only the highest offset below which every event is acked, and
        flushes its producer (the tables' changelog writes) before committing. Our produces are sent with
        the transport producer directly (not attached to the event) and awaited here, so no offset of a
        batch is committed before all of its outputs are acknowledged. Should the body be left early (a
        send error, cancellation at shutdown), that `finally` would ack anyway: we exit the process instead.
        """
        async for events in stream.take_events(take, within=within):
            done = False
            try:
                batch = [RawEvent(e.message.topic, e.message.partition, e.message.offset, e.key, e.value)
                         for e in events]
                async with lock:
                    now = _now_ms()
                    await finish(plan_batch(batch, mapping=mapping, lookups=lookup_rows, pending=pending, run=run,
                                            now_ms=now))
                    await finish(plan_expiry(pending=pending, run=run, now_ms=now, wait_ms=wait_ms))
                done = True
            except Exception:
                log.exception("transform batch failed")
                raise
            finally:
                if not done:
                    _exit_unfinished("transform batch", len(events))

    @app.timer(1.0, name="hisbridge.transform.expire_waiting")
    async def expire_waiting() -> None:
        """Quarantine records whose reference row did not arrive in time, also while the topics are quiet."""
        if not pending:
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


register(app)
