"""Reference rows (patient master, dictionaries, every table a mapping joins): one global store keyed
"<lookup>\\x1e<key>", seen as the `lookups` mapping the chain reads (`TableLookups`).

Every worker keeps the whole store, fed by the reference tables' own compacted raw topics read in full by a
consumer outside the transform's group (runtime.reference), as Kafka Streams feeds a GlobalKTable: N workers
with one app id each hold every row, whichever driver partitions the group gave them.

`ReferenceStore` holds, beside each row, the source position (LSN / binlog order) it came from — a row is
replaced only by a newer position, an older replayed version is ignored and counted — and, beside the data,
the raw-topic offsets applied, written together (one RocksDB write batch), so a restart reads only the tail.
Rows keep only the columns the mapping reads (mapping.lookup_updates). A delete leaves a marker with its
position, so a replayed older insert cannot bring the row back.

Each lookup's layout (its source, key and member columns, the columns kept: `lookup_layouts`) is kept beside
its rows. A worker started with a mapping that lays a lookup out otherwise (a column read now that was
projected away, another key) first drops that lookup's rows and re-reads its source topic from the start
(`relayout`): rows kept under the old layout would read as NULL or be missed without a word.

Backends: RocksDB through rocksdict (`open_store`, disk: the store outlives the process and its memory), or
a dict (tests, benchmarks).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, MutableMapping

import orjson
from hisbridge.chain.mapping import LookupUpdate, SourceMapping
from hisbridge.contract import raw_topics
from hisbridge.state.codec import decode_value, encode_value

log = logging.getLogger(__name__)

LOOKUP_SEP = "\x1e"           # record separator: lookup name | lookup key (the key itself uses \x1f)
_ROW, _OFFSET, _LAYOUT = b"r", b"o", b"l"    # key spaces of the backend: rows, applied offsets, layouts
_CACHE_MAX = 50_000


def lookup_store_key(lookup: str, key: str) -> str:
    return f"{lookup}{LOOKUP_SEP}{key}"


@dataclass
class Applied:
    """What a set of updates did: the (lookup, key) pairs that now hold a row (held records waiting for
    them may be retried), and how many updates were older than the version already kept (ignored)."""
    arrived: list[tuple[str, str]] = field(default_factory=list)
    applied: int = 0
    older: int = 0
    same: int = 0                 # the very version already kept (another path applied it first)


def _newer(position: int | None, kept: int | None) -> int:
    """1 newer, 0 the same, -1 older; an unknown position on either side counts as newer (arrival order)."""
    if position is None or kept is None:
        return 1
    return (position > kept) - (position < kept)


class ReferenceStore(Mapping[str, Any]):
    """Reference rows by "<lookup>\\x1e<key>" → the row (one-row lookups) or {member: row} (many-row), with
    each row's source position and the raw-topic offsets applied. Writes stay in memory until `commit`,
    which writes them and the offsets in one batch."""

    def __init__(self, backend: MutableMapping[bytes, bytes] | None = None, writer: Any = None) -> None:
        self.db = backend if backend is not None else {}
        self.writer = writer                       # the rocksdict Rdict (write batches), None for a dict
        self.writes: dict[bytes, bytes | None] = {}
        self.dropped: list[bytes] = []                # key heads whose every key the next commit deletes first
        self.cache: dict[str, tuple[Any, int | None]] = {}    # skey → (view, position)
        self.space_cache: dict[bytes, bytes | None] = {}       # the spaces' (StoreSpace) values, by raw key
        self.older = self.same = 0

    # --- reading ------------------------------------------------------------------------------------------
    def _entry(self, skey: str) -> Any:
        raw_key = _ROW + skey.encode("utf-8")
        data = self.writes[raw_key] if raw_key in self.writes else self.db.get(raw_key)
        return None if data is None else decode_value(data)

    def _cached(self, skey: str) -> tuple[Any, int | None]:
        hit = self.cache.get(skey)
        if hit is None:
            entry = self._entry(skey)
            hit = (_view(entry), None if entry is None else _positions(entry))
            if len(self.cache) >= _CACHE_MAX:
                self.cache.clear()
            self.cache[skey] = hit
        return hit

    def get(self, skey: str, default: Any = None) -> Any:
        view = self._cached(skey)[0]
        return default if view is None else view

    def position(self, skey: str) -> int | None:
        """The source position of a one-row lookup's kept row (None: no row, a many-row lookup, unknown)."""
        view, position = self._cached(skey)
        return None if view is None or isinstance(position, dict) else position

    def member_positions(self, skey: str) -> dict[str, int | None]:
        """Member → source position of a many-row lookup's live members ({} for anything else)."""
        position = self._cached(skey)[1]
        return position if isinstance(position, dict) else {}

    def __getitem__(self, skey: str) -> Any:
        view = self.get(skey)
        if view is None:
            raise KeyError(skey)
        return view

    def keys_with(self, head: bytes) -> list[bytes]:
        """Backend and pending keys starting with `head`, sorted (RocksDB: a range scan from `head`)."""
        if self.writer is None:
            stored = [k for k in self.db if k.startswith(head)]
        else:
            stored = []
            for k in self.db.keys(from_key=head):
                if not k.startswith(head):
                    break
                stored.append(k)
        return sorted(set(stored) | {k for k in self.writes if k.startswith(head)})

    def _row_keys(self) -> Iterator[str]:
        return (k[1:].decode("utf-8") for k in self.keys_with(_ROW))

    def __iter__(self) -> Iterator[str]:     # not on the transform's path: tests, status
        return (k for k in self._row_keys() if self.get(k) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    # --- writing ------------------------------------------------------------------------------------------
    def _put(self, skey: str, entry: Any) -> None:
        self.writes[_ROW + skey.encode("utf-8")] = encode_value(entry)
        self.cache.pop(skey, None)

    def apply(self, updates: Iterable[LookupUpdate]) -> Applied:
        """Each update replaces its row only when its source position is newer than the kept one's; values
        are replaced, never mutated in place, so a row handed to a transform stays as it was."""
        done = Applied()
        for u in updates:
            skey = lookup_store_key(u.lookup, u.key)
            entry = self._entry(skey) or ({"m": {}} if u.member is not None else {"p": None, "r": None})
            slot = entry["m"].get(u.member) if u.member is not None else entry
            verdict = _newer(u.position, slot.get("p") if slot else None)
            if verdict < 0 or (verdict == 0 and slot is not None):
                done.older += verdict < 0
                done.same += verdict == 0
                continue
            new = {"p": u.position, "r": dict(u.row) if u.row is not None else None}
            self._put(skey, {"m": {**entry["m"], u.member: new}} if u.member is not None else new)
            done.applied += 1
            if u.row is not None:
                done.arrived.append((u.lookup, u.key))
        self.older += done.older
        self.same += done.same
        return done

    # --- offsets and durability ---------------------------------------------------------------------------
    def offsets(self) -> dict[tuple[str, int], int]:
        """The next offset to read per reference-topic partition, as last committed with the rows."""
        out = {}
        for key in self.keys_with(_OFFSET):
            data = self.writes[key] if key in self.writes else self.db.get(key)
            topic, _, part = key[1:].decode("utf-8").rpartition(LOOKUP_SEP)
            out[(topic, int(part))] = int(data)
        return out

    def note_offset(self, topic: str, partition: int, next_offset: int) -> None:
        self.writes[_OFFSET + f"{topic}{LOOKUP_SEP}{partition}".encode("utf-8")] = str(next_offset).encode()

    def drop(self, head: bytes) -> None:
        """Every key starting with `head` deleted at the next commit, before that commit's writes (which may
        write such keys again); commit before reading."""
        self.dropped.append(head)

    def commit(self) -> None:
        """Rows and offsets written since the last commit, in one write batch (all or nothing on disk)."""
        if not self.writes and not self.dropped:
            return
        if self.writer is None:
            for head in self.dropped:
                for key in [k for k in self.db if k.startswith(head)]:
                    del self.db[key]
            for key, value in self.writes.items():
                if value is None:
                    self.db.pop(key, None)
                else:
                    self.db[key] = value
        else:
            from rocksdict import WriteBatch
            batch = WriteBatch(raw_mode=True)
            for head in self.dropped:
                batch.delete_range(head, _after(head))
            for key, value in self.writes.items():
                batch.put(key, value) if value is not None else batch.delete(key)
            self.writer.write(batch)
        if self.dropped:
            self.cache.clear()
            self.space_cache.clear()
        self.writes, self.dropped = {}, []

    def space(self, name: str) -> "StoreSpace":
        """A str → str mapping kept in this store (written with its rows), e.g. the schema watch's types."""
        return StoreSpace(self, b"s" + name.encode("utf-8") + LOOKUP_SEP.encode())

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _after(head: bytes) -> bytes:
    """The least key above every key that starts with `head` (the end of its range)."""
    head = head.rstrip(b"\xff")
    return head[:-1] + bytes([head[-1] + 1])


class StoreSpace(MutableMapping[str, str]):
    def __init__(self, store: ReferenceStore, head: bytes) -> None:
        self.store, self.head = store, head

    def _key(self, key: str) -> bytes:
        return self.head + key.encode("utf-8")

    def __getitem__(self, key: str) -> str:
        raw = self._key(key)
        cache = self.store.space_cache
        if raw in cache:        # the schema watch asks for every column of every change
            data = cache[raw]
        else:
            data = self.store.writes[raw] if raw in self.store.writes else self.store.db.get(raw)
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            cache[raw] = data
        if data is None:
            raise KeyError(key)
        return data.decode("utf-8")

    def __setitem__(self, key: str, value: str) -> None:
        raw, data = self._key(key), value.encode("utf-8")
        self.store.writes[raw] = self.store.space_cache[raw] = data

    def __delitem__(self, key: str) -> None:
        raw = self._key(key)
        self.store.writes[raw] = self.store.space_cache[raw] = None

    def __iter__(self) -> Iterator[str]:
        return (k[len(self.head):].decode("utf-8") for k in self.store.keys_with(self.head))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _positions(entry: Any) -> Any:
    """A one-row entry's position, or {member: position} of a many-row entry's live members."""
    if "m" in entry:
        return {m: slot["p"] for m, slot in entry["m"].items() if slot["r"] is not None}
    return entry["p"]


def _view(entry: Any) -> Any:
    """What the chain sees of a stored entry: the row, {member: row} of the live members, or None."""
    if entry is None:
        return None
    if "m" in entry:
        members = {m: slot["r"] for m, slot in entry["m"].items() if slot["r"] is not None}
        return members or None
    return entry["r"]


class StoreLocked(RuntimeError):
    """Another process has the reference store's folder open: an operator must give each worker its own."""


def store_folder(state_dir: Path, app_id: str) -> Path:
    """Where a worker of `app_id` keeps its reference store (a replay reads it there, beside the worker)."""
    return state_dir / app_id / "reference"


def _options():
    """RocksDB options of the store. A bloom filter per table file (10 bits a key, ~1 % false positives):
    every row applied is first looked up, and a key the store does not hold yet (all of them while it is
    rebuilt) is otherwise searched for in every level's file."""
    from rocksdict import BlockBasedOptions, Options

    table = BlockBasedOptions()
    table.set_bloom_filter(10, False)
    options = Options(raw_mode=True)
    options.set_block_based_table_factory(table)
    return options


def open_store(folder: Path) -> tuple[ReferenceStore, bool]:
    """The RocksDB reference store in `folder`; (store, True) when the folder was new or lost, so the rows
    must be rebuilt from the topics."""
    from rocksdict import Rdict

    fresh = not (folder / "CURRENT").exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        db = Rdict(str(folder), options=_options())
    except Exception as exc:   # noqa: BLE001 — rocksdict raises a bare Exception for a held lock
        if "lock" in str(exc).lower():
            raise StoreLocked(f"参照数据存储 {folder} 已被另一进程占用，请为每个 worker 设置独立的 HISBRIDGE_STATE_DIR / "
                              f"reference store {folder} is open in another process: give each worker its own "
                              f"HISBRIDGE_STATE_DIR") from None
        raise
    return ReferenceStore(db, db), fresh


def open_store_read_only(folder: Path) -> ReferenceStore | None:
    """A worker's RocksDB reference store opened beside it, read-only (RocksDB's read-only mode takes no
    lock: the worker keeps writing), as it was last flushed; None when the folder holds no store. What is
    applied to it stays in memory (`writes`, never committed): e.g. the topics' tail since its offsets."""
    from rocksdict import AccessType, Rdict

    if not (folder / "CURRENT").exists():
        return None
    db = Rdict(str(folder), options=_options(), access_type=AccessType.read_only())
    return ReferenceStore(db, _ReadOnly(db))


class _ReadOnly:
    """The writer of a read-only store: range scans like a RocksDB one, commits refused."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def write(self, batch: Any) -> None:
        raise RuntimeError("a read-only reference store is never committed")

    def close(self) -> None:
        self.db.close()


class _OneLookup(Mapping[str, Any]):
    def __init__(self, store: Mapping[str, Any], lookup: str) -> None:
        self.store, self.lookup = store, lookup

    def __getitem__(self, key: str) -> Any:
        return self.store[lookup_store_key(self.lookup, key)]

    def get(self, key: str, default: Any = None) -> Any:
        return self.store.get(lookup_store_key(self.lookup, key), default)

    def position(self, key: str) -> int | None:
        """The kept row's source position (chain.mapping's `newer: skip`); None where the store keeps none."""
        of = getattr(self.store, "position", None)
        return None if of is None else of(lookup_store_key(self.lookup, key))

    def member_positions(self, key: str) -> dict[str, int | None]:
        of = getattr(self.store, "member_positions", None)
        return {} if of is None else of(lookup_store_key(self.lookup, key))

    def __iter__(self) -> Iterator[str]:   # not used by the transform stage; kept honest for Mapping
        head = self.lookup + LOOKUP_SEP
        return (k[len(head):] for k in list(self.store) if k.startswith(head))

    def __len__(self) -> int:
        return sum(1 for _ in self)


class TableLookups(Mapping[str, Mapping[str, Any]]):
    """`lookups[lookup][key]` over one store keyed "<lookup>\\x1e<key>"."""

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


def lookup_layouts(mapping: SourceMapping) -> dict[str, bytes]:
    """Per lookup, what its kept rows are made of: its source table, key and member columns, and the columns
    kept (null: the whole row, as lookup_updates keeps it when the mapping names none)."""
    return {name: orjson.dumps([l.source, list(l.key), list(l.member), sorted(mapping.lookup_reads.get(name) or ())
                                or None]) for name, l in sorted(mapping.lookups.items())}


@dataclass(frozen=True)
class Relaid:
    """What `relayout` did: lookups whose rows were dropped to be read again (laid out otherwise than the
    store kept them, or new to a store that holds rows), lookups gone from the mapping, topics re-read."""
    rebuilt: tuple[str, ...] = ()
    gone: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.rebuilt or self.gone)

    def said(self) -> dict[str, str]:
        """The `lookups` and `topics` of the messages that tell an operator about it."""
        return {"lookups": ", ".join(self.rebuilt + self.gone), "topics": ", ".join(self.topics) or "-"}


def _layout_key(name: str) -> bytes:
    return _LAYOUT + (name + LOOKUP_SEP).encode("utf-8")


def _kept_layouts(store: ReferenceStore) -> dict[str, bytes | None]:
    return {k[len(_LAYOUT):-1].decode("utf-8"): store.db.get(k) for k in store.keys_with(_LAYOUT)}


def planned_relayout(store: ReferenceStore, mapping: SourceMapping, prefix: str) -> Relaid:
    """What `relayout` would do to the store for this mapping, doing none of it (a read-only store will do)."""
    return _plan(store, mapping, prefix, lookup_layouts(mapping))


def _plan(store: ReferenceStore, mapping: SourceMapping, prefix: str, wanted: Mapping[str, bytes]) -> Relaid:
    kept = _kept_layouts(store)
    stale = tuple(name for name, layout in wanted.items() if kept.get(name) != layout)
    gone = tuple(sorted(set(kept) - set(wanted)))
    return Relaid(stale, gone, tuple(raw_topics(prefix, sorted({mapping.lookups[n].source for n in stale}))))


def relayout(store: ReferenceStore, mapping: SourceMapping, prefix: str) -> Relaid:
    """Bring a store to the mapping's layouts (committed at once, in one write batch): a lookup kept under
    another layout, or not kept yet, loses its rows and its source topic's applied offsets, so the reference
    feed reads that topic again from its start; a lookup the mapping no longer has loses its rows. A store
    from before layouts were kept counts as laid out otherwise. The other lookups' rows stay: their changes
    read again are versions kept already."""
    wanted = lookup_layouts(mapping)
    plan = _plan(store, mapping, prefix, wanted)
    for name in plan.rebuilt + plan.gone:
        store.drop(_ROW + (name + LOOKUP_SEP).encode("utf-8"))
        store.writes[_layout_key(name)] = wanted.get(name)
    for topic in plan.topics:
        store.drop(_OFFSET + (topic + LOOKUP_SEP).encode("utf-8"))
    store.commit()
    return plan


def lookup_topics(mapping: SourceMapping, prefix: str) -> list[str]:
    """The raw topics of the reference tables: what every worker reads in full into its store."""
    return raw_topics(prefix, mapping.lookup_sources)
