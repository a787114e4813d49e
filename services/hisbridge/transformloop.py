"""Transform wiring helpers: what the transform worker does around `transform.transform`, as plain functions
over plain values (dicts, no Kafka), testable without a broker.

  raw_topics(mapping, prefix)      the raw topics to consume: every driver and lookup source of the mapping
  encode_value / decode_value      exact JSON for held records (datetime, date, time, Decimal…)
  LoggedStore, CodedStore          a dict that logs its writes (produced to a compacted topic), and the
                                   str → Python-value view of it through that JSON
  TableLookups, apply_updates      the reference rows (one store keyed "<lookup>\\x1e<key>") seen as the
                                   `lookups` mapping transform() reads, and `mapping.lookup_updates` applied
  lookup_topics, restore_lookups   that store rebuilt at start from the reference tables' raw topics
  TimeOrder                        fetched messages merged oldest first across partitions
  HeldRecords                      Waiting records held per missing reference row, until it arrives or the
                                   bounded wait (HISBRIDGE_LOOKUP_WAIT) runs out
  plan_batch / plan_expiry         one consumed batch (or one expiry pass) → outputs + what to release
  connector_mark_ms                the watermark a worker may announce for a connector (see its docstring)

A held Waiting record is the raw message itself (topic, partition, offset, key, value): decode + transform
are pure, so re-running them when the reference row arrives gives the record exactly as if the row had been
there; nothing derived (and no plaintext beyond what the raw topic already holds) is stored twice.
"""
from __future__ import annotations

import base64
import heapq
import json
from collections import deque
from dataclasses import dataclass, replace
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator, Mapping, MutableMapping

from hisbridge.contract import raw_topic
from hisbridge.decode import Change, DecodeError, Heartbeat, decode_message
from hisbridge.mapping import LookupUpdate, SourceMapping, lookup_updates
from hisbridge.transform import Waiting, finish_outputs

LOOKUP_SEP = "\x1e"           # record separator: lookup name | lookup key (the key itself uses \x1f)
Partition = tuple[str, int]


# --- topics -----------------------------------------------------------------------------------------------

def raw_topics(mapping: SourceMapping, prefix: str) -> list[str]:
    """The raw topic of every source table the mapping reads (drivers and lookups)."""
    sources = set(mapping.by_source) | set(mapping.lookup_sources)
    return sorted(raw_topic(prefix, source) for source in sources)


# --- exact JSON for table values --------------------------------------------------------------------------

def _tag(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, date):
        return {"$d": value.isoformat()}
    if isinstance(value, time):
        return {"$t": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$dec": str(value)}
    if isinstance(value, (bytes, bytearray)):
        return {"$b": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, Mapping):
        return {"$m": {str(k): _tag(v) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return [_tag(v) for v in value]
    return value


_UNTAG = {"$dt": datetime.fromisoformat, "$d": date.fromisoformat, "$t": time.fromisoformat, "$dec": Decimal,
          "$b": lambda s: base64.b64decode(s)}


def _untag(value: Any) -> Any:
    if isinstance(value, dict):
        (tag, inner), = value.items()
        if tag == "$m":
            return {k: _untag(v) for k, v in inner.items()}
        return _UNTAG[tag](inner)
    if isinstance(value, list):
        return [_untag(v) for v in value]
    return value


def encode_value(value: Any) -> bytes:
    """Rows and held records → JSON that gives back the same Python values (a plain JSON round trip
    would turn datetimes and Decimals into text and change what transform() sees after a restart)."""
    return json.dumps(_tag(value), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode_value(data: bytes | str) -> Any:
    return _untag(json.loads(data))


class LoggedStore(MutableMapping[str, bytes]):
    """A str → bytes dict that also keeps its writes, in order, as (key, value or None for a delete): what the
    wiring produces to a compacted topic after each batch. `restore` rebuilds it from that topic."""

    def __init__(self) -> None:
        self.rows: dict[str, bytes] = {}
        self.writes: list[tuple[str, bytes | None]] = []

    def __getitem__(self, key: str) -> bytes:
        return self.rows[key]

    def __setitem__(self, key: str, value: bytes) -> None:
        self.rows[key] = value
        self.writes.append((key, value))

    def __delitem__(self, key: str) -> None:
        del self.rows[key]
        self.writes.append((key, None))

    def __iter__(self) -> Iterator[str]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def drain(self) -> list[tuple[str, bytes | None]]:
        writes, self.writes = self.writes, []
        return writes

    def restore(self, messages: Iterable[tuple[str, bytes | None, bytes | None]]) -> None:
        """The rows as the topic's messages (topic, key, value; offset order) leave them; no write logged."""
        for _, key, value in messages:
            name = text(key)
            if name is None:
                continue
            if value is None:
                self.rows.pop(name, None)
            else:
                self.rows[name] = bytes(value)


class CodedStore(MutableMapping[str, Any]):
    """A str → bytes store (a LoggedStore) seen as str → Python values, through encode_value/decode_value:
    the value a worker wrote and the value it reads back from the topic after a restart decode the same."""

    def __init__(self, raw: MutableMapping[str, bytes]) -> None:
        self.raw = raw

    def __getitem__(self, key: str) -> Any:
        return decode_value(self.raw[key])

    def get(self, key: str, default: Any = None) -> Any:
        data = self.raw.get(key)
        return default if data is None else decode_value(data)

    def __setitem__(self, key: str, value: Any) -> None:
        self.raw[key] = encode_value(value)

    def __delitem__(self, key: str) -> None:
        del self.raw[key]

    def __contains__(self, key: object) -> bool:
        return key in self.raw

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.raw))

    def __len__(self) -> int:
        return len(self.raw)


# --- reference rows ---------------------------------------------------------------------------------------

def lookup_store_key(lookup: str, key: str) -> str:
    return f"{lookup}{LOOKUP_SEP}{key}"


class _OneLookup(Mapping[str, Any]):
    def __init__(self, store: Mapping[str, Any], lookup: str) -> None:
        self.store, self.lookup = store, lookup

    def __getitem__(self, key: str) -> Any:
        return self.store[lookup_store_key(self.lookup, key)]

    def get(self, key: str, default: Any = None) -> Any:
        return self.store.get(lookup_store_key(self.lookup, key), default)

    def __iter__(self) -> Iterator[str]:   # not used by the transform stage; kept honest for Mapping
        head = self.lookup + LOOKUP_SEP
        return (k[len(head):] for k in list(self.store) if k.startswith(head))

    def __len__(self) -> int:
        return sum(1 for _ in self)


class TableLookups(Mapping[str, Mapping[str, Any]]):
    """`lookups[lookup][key]` over one store (a dict) keyed "<lookup>\\x1e<key>"."""

    def __init__(self, store: Mapping[str, Any], names: Iterable[str]) -> None:
        self.store, self.names = store, frozenset(names)

    def __getitem__(self, lookup: str) -> Mapping[str, Any]:
        if lookup not in self.names:
            raise KeyError(lookup)
        return _OneLookup(self.store, lookup)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.names))

    def __len__(self) -> int:
        return len(self.names)


def apply_updates(store: MutableMapping[str, Any], updates: Iterable[LookupUpdate]) -> list[tuple[str, str]]:
    """Write reference-row updates into the store; returns the (lookup, key) pairs that now hold a row
    (the keys whose held records may be retried). Values are always replaced, never mutated in place, so
    a row handed to a transform stays as it was."""
    arrived: list[tuple[str, str]] = []
    for u in updates:
        skey = lookup_store_key(u.lookup, u.key)
        if u.member is None:
            if u.row is None:
                if skey in store:
                    del store[skey]
            else:
                store[skey] = dict(u.row)
                arrived.append((u.lookup, u.key))
            continue
        group = dict(store.get(skey) or {})
        if u.row is None:
            group.pop(u.member, None)
        else:
            group[u.member] = dict(u.row)
            arrived.append((u.lookup, u.key))
        if group:
            store[skey] = group
        elif skey in store:
            del store[skey]
    return arrived


def lookup_topics(mapping: SourceMapping, prefix: str) -> list[str]:
    """The raw topics of the reference tables: what a worker reads from the beginning at start."""
    return sorted(raw_topic(prefix, source) for source in mapping.lookup_sources)


def restore_lookups(store: MutableMapping[str, Any], mapping: SourceMapping,
                    messages: Iterable[tuple[str, bytes | None, bytes | None]]) -> int:
    """The reference rows rebuilt from their raw topics read from the beginning (topic, key, value in
    offset order per partition); returns the changes applied.

    The raw topics are the state log, as Kafka Streams restores a GlobalKTable from its source topic: the
    connector creates them compacted (the newest row of every key is kept, a delete's tombstone removes
    it), so no changelog copy of every reference row is written and read back. Messages that do not
    decode are skipped here; the agent quarantines them when it consumes them."""
    applied = 0
    for topic, key, value in messages:
        change = decode_message(topic, key, value)
        if isinstance(change, Change):
            apply_updates(store, lookup_updates(mapping, change))
            applied += 1
    return applied


# --- records waiting for a reference row ------------------------------------------------------------------

@dataclass(frozen=True)
class Held:
    """A raw message whose record waits for a reference row; `since_ms` is when it first had to wait
    (the bounded wait counts from there, across re-parking under another missing key)."""
    topic: str
    partition: int
    offset: int
    key: str | None
    value: str
    since_ms: int
    commit_ms: int | None
    table: str                  # the catalog table whose record waits (a change may feed several)

    @property
    def position(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset, self.table)

    def as_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset, "key": self.key,
                "value": self.value, "since_ms": self.since_ms, "commit_ms": self.commit_ms, "table": self.table}


def held_from(data: Mapping[str, Any]) -> Held:
    return Held(data["topic"], int(data["partition"]), int(data["offset"]), data.get("key"), data["value"],
                int(data["since_ms"]), data.get("commit_ms"), str(data["table"]))


def text(data: bytes | str | None) -> str | None:
    if data is None:
        return None
    return data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data


HELD_SEP = "\x1d"     # group separator: missing-row key | position of the held message


class HeldRecords:
    """Records waiting for a reference row, one store entry each, keyed
    "<lookup>\x1e<key>\x1d<topic>\x1d<partition>\x1d<offset>\x1d<table>" so a park or a release writes one
    small value (never a growing list: a thousand records waiting on one key would otherwise rewrite the
    whole list, envelopes included, on every park). An in-memory index (missing key → entries, entry →
    wait start and commit time) is derived from the store on first use — after a restart, from the store
    rebuilt from its compacted topic — and kept in step with every park and release."""

    def __init__(self, store: MutableMapping[str, Any]) -> None:
        self.store = store
        self._by_missing: dict[str, set[str]] | None = None
        self._meta: dict[str, tuple[str, int, int | None]] = {}    # entry → (missing, since_ms, commit_ms)

    def _index(self) -> dict[str, set[str]]:
        if self._by_missing is None:
            self._by_missing = {}
            for skey in list(self.store):
                held = held_from(self.store[skey])
                self._note(skey, held)
        return self._by_missing

    def _note(self, skey: str, held: Held) -> None:
        missing = skey.split(HELD_SEP, 1)[0]
        self._by_missing.setdefault(missing, set()).add(skey)   # type: ignore[union-attr]
        self._meta[skey] = (missing, held.since_ms, held.commit_ms)

    def park(self, lookup: str, key: str, held: Held) -> str | None:
        """Hold `held` until lookup[key] arrives; None when it is held there already (a batch consumed
        again after a crash must not hold — and later produce — the record twice)."""
        self._index()
        skey = HELD_SEP.join((lookup_store_key(lookup, key), held.topic, str(held.partition), str(held.offset),
                              held.table))
        if skey in self._meta:
            return None
        self.store[skey] = held.as_dict()
        self._note(skey, held)
        return skey

    def at(self, lookup: str, key: str) -> list[tuple[str, Held]]:
        """The records held for lookup[key], in the order they were first held."""
        entries = [(skey, held_from(self.store[skey])) for skey in self._index().get(lookup_store_key(lookup, key), ())]
        return sorted(entries, key=lambda e: (e[1].since_ms, e[1].topic, e[1].partition, e[1].offset))

    def release(self, skeys: Iterable[str]) -> None:
        """Forget held records once their outputs are acknowledged."""
        index = self._index()
        for skey in skeys:
            meta = self._meta.pop(skey, None)
            if meta is not None:
                group = index.get(meta[0], set())
                group.discard(skey)
                if not group:
                    index.pop(meta[0], None)
            if skey in self.store:
                del self.store[skey]

    def expired(self, now_ms: int, wait_ms: int) -> list[tuple[str, Held]]:
        """Held records whose bounded wait is over, oldest first."""
        self._index()
        due = sorted((since, skey) for skey, (_, since, _) in self._meta.items() if now_ms - since >= wait_ms)
        return [(skey, held_from(self.store[skey])) for _, skey in due]

    def oldest_commit(self) -> int | None:
        self._index()
        times = [commit for _, _, commit in self._meta.values() if commit is not None]
        return min(times) if times else None

    def __len__(self) -> int:
        self._index()
        return len(self._meta)


# --- watermark marks --------------------------------------------------------------------------------------

def connector_mark_ms(last_commit: Mapping[Partition, int | None], caught_up: Iterable[Partition],
                      heartbeat_ms: int | None, held_commit_ms: int | None = None) -> int | None:
    """The commit time T up to which this worker has consumed (and produced) every change of a connector.

    Per raw partition: caught up (position == high-water mark) → the latest heartbeat ts (or its own last
    commit time if later): nothing older can still come on it; behind → its last commit time seen − 1 ms,
    because the rest of that transaction (same commit time) may be just behind it; nothing seen and
    behind → unknown, so no mark. A record still held for a reference row caps T below its commit time:
    it has not been produced yet. None = no mark may be sent."""
    done = set(caught_up)
    values: list[int] = []
    for part, ms in last_commit.items():
        if part in done:
            known = [v for v in (heartbeat_ms, ms) if v is not None]
            if not known:
                return None
            values.append(max(known))
        elif ms is None:
            return None
        else:
            values.append(ms - 1)
    if held_commit_ms is not None:
        values.append(held_commit_ms - 1)
    return min(values) if values else None


@dataclass
class MarkThrottle:
    """At most one mark per `every_ms` per connector, and only when T moved."""
    every_ms: int = 1000
    last_sent_at: int | None = None
    last_value: int | None = None

    def due(self, now_ms: int, value: int | None) -> bool:
        if value is None or value == self.last_value:
            return False
        return self.last_sent_at is None or now_ms - self.last_sent_at >= self.every_ms

    def sent(self, now_ms: int, value: int) -> None:
        self.last_sent_at, self.last_value = now_ms, value


# --- one consumed batch, planned ---------------------------------------------------------------------------

@dataclass(frozen=True)
class RawEvent:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class BatchPlan:
    """What a batch (or an expiry pass) produces, and what may be forgotten once that is acknowledged."""
    outputs: list[Any]                                   # CoreRecord | QuarantineEntry, in order
    release: list[str]                                   # held records (entries) to forget after the acks
    commits: dict[Partition, int]                        # latest source commit / heartbeat ms per partition
    offsets: dict[Partition, int]                        # last offset handled per partition
    heartbeats: dict[str, int]                           # topic prefix → latest heartbeat ts
    parked: int = 0


# (Change | DecodeError, give_up) → transform outputs; Unfinished ones (transform's defer=True) are finished
# together at the end of the batch
Run = Callable[[Any, bool], list[Any]]


class TimeOrder:
    """Fetched raw messages per partition, handed out oldest first (Kafka timestamp) across partitions.

    A catch-up — the initial snapshot, a restart after an outage — finds a backlog on every table's topic,
    and a consumer reads them side by side: without ordering, a visit is handled long before the patient
    row committed just before it, waits, and is retried. The connector writes every topic from one WAL in
    commit order, so the message timestamps follow that order; merging on them (Kafka Streams does the
    same across the partitions of a task) hands the changes out nearly as the HIS committed them. A
    partition that has more on the broker than fetched (`behind`) and nothing buffered stops the merge:
    its next message may be older than anything buffered. The wiring fetches it, or after a while takes
    what it has (`take(limit, behind=())`) so one slow partition cannot stall the others."""

    def __init__(self) -> None:
        self.buffers: dict[Partition, deque[tuple[int, RawEvent]]] = {}

    def add(self, part: Partition, messages: Iterable[tuple[int, RawEvent]]) -> None:
        self.buffers.setdefault(part, deque()).extend(messages)

    def drop(self, parts: Iterable[Partition]) -> None:
        """Partitions this worker no longer owns: their new owner reads them from the committed offset."""
        for part in parts:
            self.buffers.pop(part, None)

    def buffered(self, part: Partition) -> int:
        return len(self.buffers.get(part, ()))

    def next_offset(self, part: Partition) -> int | None:
        """The offset of the oldest message not handed out yet (None: nothing buffered)."""
        queue = self.buffers.get(part)
        return queue[0][1].offset if queue else None

    def take(self, limit: int, behind: Iterable[Partition]) -> list[RawEvent]:
        waiting = set(behind)
        if any(not self.buffers.get(part) for part in waiting):
            return []
        heap = [(queue[0][0], part) for part, queue in self.buffers.items() if queue]
        heapq.heapify(heap)
        out: list[RawEvent] = []
        while heap and len(out) < limit:
            _, part = heapq.heappop(heap)
            queue = self.buffers[part]
            out.append(queue.popleft()[1])
            if queue:
                heapq.heappush(heap, (queue[0][0], part))
            elif part in waiting:
                break
        return out


def _held_for(event: RawEvent, table: str, now_ms: int, commit_ms: int | None, since_ms: int | None = None) -> Held:
    return Held(event.topic, event.partition, event.offset, text(event.key), text(event.value) or "",
                since_ms if since_ms is not None else now_ms, commit_ms, table)


def _route(plan: BatchPlan, pending: HeldRecords, outputs: list[Any], make_held: Callable[[str], Held],
           only_table: str | None = None) -> None:
    for out in outputs:
        if only_table is not None and getattr(out, "table", None) != only_table:
            continue    # a retried change re-derives every table it feeds: keep the one that waited
        if isinstance(out, Waiting):
            plan.parked += pending.park(out.missing.lookup, out.missing.key, make_held(out.table)) is not None
        else:
            plan.outputs.append(out)


def _retry(plan: BatchPlan, pending: HeldRecords, run: Run, lookup: str, key: str) -> None:
    arrived = lookup_store_key(lookup, key)
    for skey, h in pending.at(lookup, key):
        outputs = run(decode_message(h.topic, h.key, h.value), False)
        # still waiting (for another row now): held again under that key, its wait still counted from since_ms
        _route(plan, pending, outputs, lambda table, h=h: replace(h, table=table), only_table=h.table)
        if not any(isinstance(o, Waiting) and o.table == h.table
                   and lookup_store_key(o.missing.lookup, o.missing.key) == arrived for o in outputs):
            plan.release.append(skey)


def plan_batch(events: Iterable[RawEvent], *, mapping: SourceMapping, lookups: MutableMapping[str, Any],
               pending: HeldRecords, run: Run, now_ms: int) -> BatchPlan:
    """Decode every event in order; reference rows go into `lookups` BEFORE the change is transformed
    (transform's wiring contract), and records held for a row that just arrived are retried right after
    it. Waiting outputs are parked in `pending`. Tombstones are skipped, heartbeats only move the mark."""
    plan = BatchPlan([], [], {}, {}, {})
    for event in events:
        part = (event.topic, event.partition)
        plan.offsets[part] = event.offset
        message = decode_message(event.topic, event.key, event.value)
        if message is None:
            continue
        if isinstance(message, Heartbeat):
            plan.heartbeats[message.prefix] = max(message.ts_ms, plan.heartbeats.get(message.prefix, 0))
            plan.commits[part] = max(message.ts_ms, plan.commits.get(part, 0))
            continue
        if isinstance(message, DecodeError):
            _route(plan, pending, run(message, False), lambda table: _held_for(event, table, now_ms, None))
            continue
        commit_ms = message.source.commit_time_ms
        if commit_ms is not None:
            plan.commits[part] = max(commit_ms, plan.commits.get(part, 0))
        for lookup, key in apply_updates(lookups, lookup_updates(mapping, message)):
            _retry(plan, pending, run, lookup, key)
        _route(plan, pending, run(message, False),
               lambda table, event=event, commit_ms=commit_ms: _held_for(event, table, now_ms, commit_ms))
    plan.outputs = finish_outputs(plan.outputs)
    return plan


def plan_expiry(*, pending: HeldRecords, run: Run, now_ms: int, wait_ms: int) -> BatchPlan:
    """Held records whose bounded wait is over: transformed with give_up=True (quarantine with the missing
    key — or the record itself, should the row have arrived by another path)."""
    plan = BatchPlan([], [], {}, {}, {})
    for skey, h in pending.expired(now_ms, wait_ms):
        outputs = run(decode_message(h.topic, h.key, h.value), True)
        plan.outputs += [o for o in outputs if getattr(o, "table", None) == h.table and not isinstance(o, Waiting)]
        plan.release.append(skey)
    plan.outputs = finish_outputs(plan.outputs)
    return plan


def release_all(pending: HeldRecords, plan: BatchPlan) -> None:
    pending.release(plan.release)
