"""Watermark: per source connector, the source commit time up to which every change has been consumed.

Each partition the sink reads for a connector (its data topics and its heartbeat topic) reports the latest
Debezium source commit time (`source.ts_ms`, heartbeats' ts_ms) consumed on it; the connector's watermark
is the minimum over its partitions. A partition the wiring knows to be caught up (consumer position = end
offset) does not hold the watermark back, otherwise a quiet table would stall every batch.
A batch closes when the watermark reaches its period end + grace. Pure functions over plain values.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Iterable, Mapping

from hisbridge.batching import Batch

Partition = tuple[str, int]  # (topic, partition)


@dataclass(frozen=True)
class ConnectorProgress:
    """Latest source commit time (ms since epoch, UTC) seen per partition, and partitions caught up."""
    seen_ms: Mapping[Partition, int] = field(default_factory=dict)
    caught_up: frozenset[Partition] = frozenset()
    expected: frozenset[Partition] = frozenset()  # partitions that must report before there is a watermark


def observe(progress: ConnectorProgress, partition: Partition, commit_ms: int) -> ConnectorProgress:
    """Record a consumed change or heartbeat; commit times never move a partition backwards."""
    seen = dict(progress.seen_ms)
    if commit_ms > seen.get(partition, -1):
        seen[partition] = commit_ms
    return replace(progress, seen_ms=seen, caught_up=progress.caught_up - {partition})


def mark_caught_up(progress: ConnectorProgress, partitions: Iterable[Partition]) -> ConnectorProgress:
    return replace(progress, caught_up=progress.caught_up | frozenset(partitions))


def watermark_ms(progress: ConnectorProgress) -> int | None:
    """min over partitions still behind; None until every expected partition has reported."""
    if any(p not in progress.seen_ms for p in progress.expected):
        return None
    if not progress.seen_ms:
        return None
    behind = [ms for p, ms in progress.seen_ms.items() if p not in progress.caught_up]
    # all caught up: everything produced so far is consumed, so the newest time seen is the watermark
    return min(behind) if behind else max(progress.seen_ms.values())


def watermark(progress: ConnectorProgress) -> datetime | None:
    ms = watermark_ms(progress)
    return None if ms is None else from_ms(ms)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("watermark moments must be timezone-aware")
    return int(moment.timestamp() * 1000)


def closes_at(batch: Batch, grace: timedelta) -> datetime:
    return batch.end + grace


def is_closed(batch: Batch, mark: datetime | None, grace: timedelta) -> bool:
    """Batch D (daily) closes when the watermark reaches D 18:00 + grace; monthly/yearly at period end."""
    return mark is not None and mark >= closes_at(batch, grace)


def table_watermarks(connector_marks: Mapping[str, datetime | None],
                     table_connector: Mapping[str, str]) -> dict[str, datetime | None]:
    """Per catalog table, the watermark of the connector that feeds it (None when unknown)."""
    return {table: connector_marks.get(conn) for table, conn in table_connector.items()}
