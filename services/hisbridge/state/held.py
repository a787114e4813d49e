"""Records waiting for a reference row (a visit whose patient row has not arrived yet).

A held record is the raw message itself (topic, partition, offset, key, value): decode + chain are pure, so
re-running them when the reference row arrives gives the record exactly as if the row had been there;
nothing derived (and no plaintext beyond what the raw topic already holds) is stored twice. The store is
written through to the compacted held-records topic (hisbridge.contract.held_topic) and read back at start.

A record waits until its batch closes (`close_ms`: the batch's end + grace, from the schedule), or an
operator's upper bound; then it is quarantined as `missing_lookup` but stays held (`quarantined`), no longer
holding the watermark back, so that the row arriving days later still releases it (its quarantine entry is
resolved when the record is staged).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping, MutableMapping

from hisbridge.state.lookups import LOOKUP_SEP, lookup_store_key


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
    close_ms: int | None = None     # when its batch closes (None: batch unknown, its own commit time counts)
    quarantined: bool = False       # given up waiting: entry sent, still released if the row comes

    @property
    def position(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset, self.table)

    def as_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset, "key": self.key,
                "value": self.value, "since_ms": self.since_ms, "commit_ms": self.commit_ms, "table": self.table,
                "close_ms": self.close_ms, "quarantined": self.quarantined}


def held_from(data: Mapping[str, Any]) -> Held:
    return Held(data["topic"], int(data["partition"]), int(data["offset"]), data.get("key"), data["value"],
                int(data["since_ms"]), data.get("commit_ms"), str(data["table"]), data.get("close_ms"),
                bool(data.get("quarantined", False)))


# A change committed after its batch closed (a late entry, a back-dated load) is given up only once the mark
# of everything else is this far past its own commit: its reference row, committed with or before it, may
# still be on its way on a partition another worker reads, and Debezium may send a heartbeat (the mark of a
# quiet partition) while the rest of that transaction is still being streamed.
SETTLE_MS = 5_000

HELD_SEP = "\x1d"     # group separator: missing-row key | position of the held message


def held_partition(skey: str) -> tuple[str, int]:
    """The raw topic partition of the message a held-record entry holds (from its key)."""
    parts = skey.split(HELD_SEP)
    return parts[1], int(parts[2])


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
        self._meta: dict[str, tuple[str, int, int | None, int | None, bool]] = {}
        # entry → (missing, since_ms, commit_ms, close_ms, quarantined)

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
        self._meta[skey] = (missing, held.since_ms, held.commit_ms, held.close_ms, held.quarantined)

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

    def missing_keys(self) -> list[tuple[str, str]]:
        """The (lookup, key) pairs records are held for."""
        return [tuple(m.split(LOOKUP_SEP, 1)) for m in sorted(self._index())]    # type: ignore[misc]

    def expired(self, now_ms: int, wait_ms: int, free_mark_ms: int | None = None) -> list[tuple[str, Held]]:
        """Records to give up on, oldest first: the watermark of everything else (`free_mark_ms`) has passed
        their batch's close and their own commit, or the operator's bound `wait_ms` (> 0) is over.
        Quarantined ones are not due."""
        self._index()

        def due(since: int, commit: int | None, close: int | None) -> bool:
            if wait_ms > 0 and now_ms - since >= wait_ms:
                return True
            if free_mark_ms is None or (close is None and commit is None):
                return False
            return (close is None or free_mark_ms >= close) and (commit is None or free_mark_ms > commit + SETTLE_MS)

        found = sorted((since, skey) for skey, (_, since, commit, close, given_up) in self._meta.items()
                       if not given_up and due(since, commit, close))
        return [(skey, held_from(self.store[skey])) for _, skey in found]

    def give_up(self, skeys: Iterable[str]) -> None:
        """Quarantined but still held: released if the row arrives, no longer holding the watermark."""
        self._index()
        for skey in skeys:
            if skey in self._meta:
                held = replace(held_from(self.store[skey]), quarantined=True)
                self.store[skey] = held.as_dict()
                self._note(skey, held)

    def oldest_commit(self) -> int | None:
        """The oldest commit among records still waiting (quarantined ones no longer hold the mark)."""
        self._index()
        times = [commit for _, _, commit, _, given_up in self._meta.values() if commit is not None and not given_up]
        return min(times) if times else None

    def waiting(self) -> tuple[int, int, int | None]:
        """(records waiting, of which quarantined, the oldest wait start ms) — for status."""
        self._index()
        starts = [since for _, since, _, _, _ in self._meta.values()]
        return len(starts), sum(1 for m in self._meta.values() if m[4]), min(starts) if starts else None

    def oldest_since(self) -> int | None:
        """When the longest-waiting record started to wait (ms), or None."""
        self._index()
        return min((m[1] for m in self._meta.values()), default=None)

    def __len__(self) -> int:
        self._index()
        return len(self._meta)
