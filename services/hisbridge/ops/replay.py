"""Re-submissions through the replay topic (hisbridge.contract): quarantined records re-run after a fix, raw
changes re-run after a mapping change, a delivered batch sent again.

The re-run is the transform's own chain over the record's source message (read back from its raw topic,
at the position its entry names, checked against its source version), with the reference rows as the raw topics hold them now and the mapping,
value maps and rules as they are now: what passes goes to the replay topic (the sink stages it once per
record version and content, and the next window carries it as a `replay` flush); what still fails goes to
the quarantine topic with its new reasons (the open entry takes them). Nothing here touches a core topic,
so live traffic and its lag are undisturbed.
"""
from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from hisbridge.chain import avro, crypto
from hisbridge.chain.chain import CoreRecord, transform
from hisbridge.chain.decode import Change, decode_message
from hisbridge.contract import (KIND_HEADER, QUARANTINE_KIND, REPLAY_BATCH_KIND,
                                REPLAY_HEADER, QuarantineEntry, quarantine_key,
                                quarantine_topic, raw_topics, replay_batch_value,
                                replay_record_headers, replay_topic, serialize_entry)
from hisbridge.runtime.topics import partitions, read_at, read_from_start
from hisbridge.settings import Settings
from hisbridge.state.lookups import ReferenceStore, TableLookups, lookup_topics

Message = tuple[str, bytes | None, bytes | None]     # (topic, key, value)
_SCRATCH_BATCH = 20_000       # rows a scratch reference store keeps in memory before writing them


@dataclass
class ReplayOutcome:
    sent: int = 0                                   # records to the replay topic
    still_failing: list[QuarantineEntry] = field(default_factory=list)
    not_found: list[Any] = field(default_factory=list)     # entries whose source message is gone


# --- pure -----------------------------------------------------------------------------------------------

def version_of(change: Change) -> tuple[int | None, int | None]:
    return change.source.lsn, change.source.commit_time_ms


def entry_version(entry: Mapping[str, Any]) -> tuple[int | None, int | None]:
    source = entry.get("source") or {}
    return source.get("lsn"), source.get("commit_time_ms")


def source_position(entry: Mapping[str, Any]) -> tuple[str, int, int] | None:
    """Where an entry's source message is on its raw topic (every entry names it: contract)."""
    source = entry.get("source") or {}
    topic, part, offset = source.get("topic"), source.get("partition"), source.get("offset")
    return None if topic is None or part is None or offset is None else (str(topic), int(part), int(offset))


def source_change(entry: Mapping[str, Any], message: tuple[bytes | None, bytes | None] | None) -> Change | None:
    """The entry's source change from the message at its position — only if it is that record version
    (a message is never replaced at an offset, but a position from another topic layout must not pass)."""
    position = source_position(entry)
    if message is None or position is None:
        return None
    change = decode_message(position[0], *message)
    return change if isinstance(change, Change) and version_of(change) == entry_version(entry) else None


def outputs_for(run: Callable[[Change], list[Any]], change: Change, table: str | None) -> list[Any]:
    """What the chain makes of a change now (for `table` only when given: a change may feed several)."""
    return [o for o in run(change) if table is None or getattr(o, "table", None) == table]


# --- shell ----------------------------------------------------------------------------------------------

class ReplaySender:
    """A producer to the replay and quarantine topics (acks=all, flushed before the command returns)."""

    def __init__(self, bootstrap: str, core_prefix: str) -> None:
        self.bootstrap, self.core_prefix = bootstrap, core_prefix
        self._producer = None

    @property
    def producer(self):
        if self._producer is None:
            from kafka import KafkaProducer
            self._producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", client_id="hisbridge-replay")
        return self._producer

    def send(self, replay_id: str, outputs: Iterable[Any], outcome: ReplayOutcome) -> None:
        for out in outputs:
            if isinstance(out, CoreRecord):
                self.producer.send(replay_topic(self.core_prefix), key=out.key.encode("utf-8"), value=out.value,
                                   headers=list(replay_record_headers(out.headers, replay_id, out.table)))
                outcome.sent += 1
            elif isinstance(out, QuarantineEntry):
                self.producer.send(quarantine_topic(self.core_prefix), key=quarantine_key(out.table, out.key),
                                   value=serialize_entry(out), headers=[(KIND_HEADER, QUARANTINE_KIND)])
                outcome.still_failing.append(out)

    def request_batch(self, replay_id: str, table: str, batch: str) -> None:
        self.producer.send(replay_topic(self.core_prefix), key=f"{table}|{batch}".encode(),
                           value=replay_batch_value(table, batch),
                           headers=[(KIND_HEADER, REPLAY_BATCH_KIND), (REPLAY_HEADER, replay_id.encode())])

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush()
            self._producer.close()


class Replayer:
    """The chain as the transform runs it (its role included), over the reference rows the raw topics hold
    now: the worker's own reference store read beside it plus the topics' tail since it, or, where that store
    is not on this machine, a store of its own built from the topics in a temporary folder — on disk either
    way, as a hospital's millions of patients do not fit a short-lived command's memory."""

    def __init__(self, settings: Settings, prefix: str | None = None) -> None:
        from hisbridge.catalog import catalog_for
        from hisbridge.chain.identity_mapping import mapping_for_role
        from hisbridge.chain.roles import role_for
        self.settings, self.prefix = settings, prefix or settings.source.topic_prefix
        self.catalog = catalog_for(settings.paths)
        self.mapping = mapping_for_role(self.catalog, settings)
        self.bootstrap = settings.connections.kafka_bootstrap
        self._scratch: tempfile.TemporaryDirectory | None = None
        self.store = self._references()
        self.run = functools.partial(
            transform, catalog=self.catalog, mapping=self.mapping, lookups=TableLookups(self.store,
                                                                                        self.mapping.lookups),
            key=crypto.load_key(settings.sm4), sm4_settings=crypto.sm4_settings(settings.sm4), give_up=True,
            schema_of=functools.partial(avro.load_schema, directory=settings.paths.avro),
            max_bytes=settings.worker.produce_limit, role=role_for(settings, self.store.space("city_owners")))

    def _references(self) -> ReferenceStore:
        from hisbridge.chain.mapping import lookup_updates
        from hisbridge.state.lookups import open_store, open_store_read_only, planned_relayout, store_folder
        w = self.settings.worker
        own = self.prefix == self.settings.source.topic_prefix     # the worker's store holds its own prefix's rows
        store = open_store_read_only(store_folder(w.state_dir, w.app_id)) if own else None
        if store is not None and planned_relayout(store, self.mapping, self.prefix):
            store.close()       # kept for another mapping (the worker not restarted since it changed)
            store = None
        if store is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="hisbridge-replay-")
            store, _ = open_store(Path(self._scratch.name))
        topics = partitions(self.bootstrap, lookup_topics(self.mapping, self.prefix), "hisbridge-replay")
        for topic, key, value in read_from_start(self.bootstrap, topics, "hisbridge-replay",
                                                 from_offsets=store.offsets()):
            change = decode_message(topic, key, value)
            if isinstance(change, Change):
                store.apply(lookup_updates(self.mapping, change))
            if self._scratch is not None and len(store.writes) >= _SCRATCH_BATCH:
                store.commit()          # the scratch store's rows to disk, not all in memory
        return store

    @property
    def beside_worker(self) -> bool:
        """The reference rows are the worker's own store (read beside it), not a store built from the topics."""
        return self._scratch is None

    def close(self) -> None:
        self.store.close()
        if self._scratch is not None:
            self._scratch.cleanup()

    def __enter__(self) -> "Replayer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def driver_topics(self) -> list[str]:
        return raw_topics(self.prefix, self.mapping.by_source)

    def sources(self, topics: Iterable[str], since_ms: int | None = None) -> Iterator[Message]:
        return read_raw(self.bootstrap, topics, since_ms)


def replay_entries(replayer: Replayer, sender: ReplaySender, replay_id: str, entries: list[Any]) -> ReplayOutcome:
    """Open entries (delivery.quarantine.Entry) re-run from their source messages, read at their positions."""
    outcome = ReplayOutcome()
    found = read_at(replayer.bootstrap, [p for p in (source_position(e.entry) for e in entries) if p])
    for entry in entries:
        position = source_position(entry.entry)
        change = source_change(entry.entry, found.get(position) if position else None)
        if change is None:
            outcome.not_found.append(entry)
            continue
        sender.send(replay_id, outputs_for(replayer.run, change, entry.table), outcome)
    return outcome


def replay_raw(replayer: Replayer, sender: ReplaySender, replay_id: str, since_ms: int) -> ReplayOutcome:
    """Every change on the mapping's driver topics since `since_ms` (Kafka timestamp) re-run."""
    outcome = ReplayOutcome()
    for topic, key, value in replayer.sources(replayer.driver_topics(), since_ms):
        change = decode_message(topic, key, value)
        if isinstance(change, Change):
            sender.send(replay_id, outputs_for(replayer.run, change, None), outcome)
    return outcome


def read_raw(bootstrap: str, topics: Iterable[str], since_ms: int | None = None) -> Iterator[Message]:
    """The raw topics' messages up to their ends now, from `since_ms` (Kafka timestamp) or the start."""
    return read_from_start(bootstrap, partitions(bootstrap, topics, "hisbridge-replay"), "hisbridge-replay", since_ms)


def held_waiting(bootstrap: str, app_id: str) -> tuple[int, int, int | None]:
    """(records held for a reference row, of which already quarantined, the oldest wait start ms) as the
    transform's compacted held-records topic has them now (status)."""
    from hisbridge.contract import held_topic
    from hisbridge.state.codec import CodedStore, LoggedStore
    from hisbridge.state.held import HeldRecords
    rows = LoggedStore()
    held = partitions(bootstrap, [held_topic(app_id)], "hisbridge-status")
    rows.restore(read_from_start(bootstrap, held, "hisbridge-status"))
    return HeldRecords(CodedStore(rows)).waiting()
