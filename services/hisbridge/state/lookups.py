"""Reference rows (patient master, dictionaries, every table a mapping joins): one store keyed
"<lookup>\\x1e<key>", seen as the `lookups` mapping the chain reads, and kept current by the reference
tables' own changes (`apply_updates`); rebuilt at start from their compacted raw topics (`restore_lookups`),
as Kafka Streams restores a GlobalKTable from its source topic.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping, MutableMapping

from hisbridge.chain.decode import Change, decode_message
from hisbridge.chain.mapping import LookupUpdate, SourceMapping, lookup_updates
from hisbridge.contract import raw_topics

LOOKUP_SEP = "\x1e"           # record separator: lookup name | lookup key (the key itself uses \x1f)


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
    return raw_topics(prefix, mapping.lookup_sources)


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
