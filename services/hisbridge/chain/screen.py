"""Screen stage: a decoded change checked against what the mapping reads, before it is mapped or kept as a
reference row. A change that fails is quarantined whole (no record, no lookup update) with a specific reason:

  empty_row     an insert/update/read whose `after` is {} (or a delete whose `before` is): nothing to map
  missing_key   a reference row without a value in one of its lookup's key columns: it could never be found
  schema_drift  a column the mapping reads is no longer in the envelope's schema, or its Connect type
                changed incompatibly since it was first seen (SchemaWatch): silently NULL otherwise

Type changes are judged against the first type seen per (source table, column), kept in a store the
worker persists beside its reference rows; widening an integer or a float is compatible, anything else is
not. Each new drift is reported once (`SchemaWatch.drain`) for the worker's ERROR line.
"""
from __future__ import annotations

from typing import Any, MutableMapping

from hisbridge.chain.decode import Change
from hisbridge.chain.mapping import SourceMapping, source_name

RULES = ("empty_row", "missing_key", "schema_drift")      # catalog.rules.PIPELINE_REASONS names them too
_INTS = ("int8", "int16", "int32", "int64")
_FLOATS = ("float32", "float64")
_SEP = "\x1e"


def compatible(old: str, new: str) -> bool:
    """Whether values of Connect type `new` still read as the mapping expects of `old` (same type, or a
    plain integer / float widened)."""
    if old == new:
        return True
    for family in (_INTS, _FLOATS):
        if old in family and new in family:
            return family.index(new) >= family.index(old)
    return False


class SchemaWatch:
    """The first Connect type seen per (source table, column) the mapping reads, and the drifts found."""

    def __init__(self, store: MutableMapping[str, str] | None = None) -> None:
        self.store = store if store is not None else {}
        self.reported: set[tuple[str, str, str]] = set()
        self.new: list[tuple[str, str, str]] = []     # (source, column, change) not reported yet
        # decode hands every message of one envelope schema the same `columns` object: its verdict is known
        # after the first (a store read per column per message cost more than the rest of the screen)
        self.known: dict[tuple[str, int], tuple[Any, frozenset[str], list[tuple[str, str]]]] = {}

    def check(self, source: str, columns: dict[str, str] | Any, reads: frozenset[str]) -> list[tuple[str, str]]:
        """(column, change) of every read column that is gone or changed incompatibly."""
        known = self.known.get((source, id(columns)))
        if known is not None and known[0] is columns and known[1] is reads:
            return known[2]
        out = self._check(source, columns, reads)
        if len(self.known) >= 4096:
            self.known.clear()
        self.known[(source, id(columns))] = (columns, reads, out)
        return out

    def _check(self, source: str, columns: dict[str, str] | Any, reads: frozenset[str]) -> list[tuple[str, str]]:
        out = []
        for column in sorted(reads):
            if column not in columns:
                out.append((column, "no longer in the source table"))
                continue
            key = f"{source}{_SEP}{column}"
            seen, now = self.store.get(key), columns[column]
            if seen is None:
                self.store[key] = now
            elif not compatible(seen, now):
                out.append((column, f"type {seen} → {now}"))
        for column, change in out:
            if (source, column, change) not in self.reported:
                self.reported.add((source, column, change))
                self.new.append((source, column, change))
        return out

    def drain(self) -> list[tuple[str, str, str]]:
        new, self.new = self.new, []
        return new


def _reason(rule: str, field: str | None, message: str) -> dict[str, Any]:
    return {"rule": rule, "field": field, "message": message}


def _row_of(change: Change) -> dict[str, Any] | None:
    return change.before if change.op == "d" else change.after


def screen(mapping: SourceMapping, change: Change, watch: SchemaWatch | None = None) -> list[dict[str, Any]]:
    """The reasons this change cannot be mapped or kept as a reference row (none: it can)."""
    source, row = source_name(change), _row_of(change)
    if change.op == "t":
        return []
    if row is not None and not row:
        side = "before" if change.op == "d" else "after"
        return [_reason("empty_row", None, f"{source} op '{change.op}' 的 {side} 为空 / has an empty '{side}' row")]
    reasons = []
    if change.columns is not None and watch is not None and source in mapping.source_reads:
        for column, what in watch.check(source, change.columns, mapping.source_reads[source]):
            reasons.append(_reason("schema_drift", column, f"源表结构变化 / schema drift: {source}.{column} {what}"))
    if row is not None:
        keys = {c: l.name for l in mapping.lookups.values() if l.source == source for c in (*l.key, *l.member)}
        for column, lookup in sorted(keys.items()):
            if row.get(column) in (None, ""):
                reasons.append(_reason("missing_key", column, f"参照数据 {source} 缺少键列 {column} / reference "
                                                              f"row of {source} has no {column} (lookup {lookup})"))
    return reasons
