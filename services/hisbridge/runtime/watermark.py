"""The watermark, both sides: how far the transform has produced every change of a connector (its marks),
and how far the sink has seen them (per connector, the minimum over the core partitions of the latest
mark). A batch closes when the sink's watermark reaches its period end + grace (delivery.schedule.is_closed).

Transform side: connector_mark_ms (the mark a worker may announce), MarkThrottle (at most one a second).
Sink side: ConnectorProgress (latest mark per core partition, from staging), watermark_ms, table_watermarks.
Pure functions over plain values; times are ms since the epoch (UTC) or aware datetimes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable, Mapping

Partition = tuple[str, int]  # (topic, partition)


# --- transform side -------------------------------------------------------------------------------------

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
    """At most one mark per `every_ms` per connector, and only when T moved. While no change came in since
    the last mark (T moved by heartbeats alone: the worker is idle), at most one per `idle_every_ms`: such a
    mark only advances time, and each one is a record on every core partition the sink must consume and
    commit — sent every heartbeat, they kept the sink's lag at 1 per partition while nothing happened."""
    every_ms: int = 1000
    idle_every_ms: int = 0          # 0: the same as every_ms
    last_sent_at: int | None = None
    last_value: int | None = None

    def due(self, now_ms: int, value: int | None, produced: bool = True) -> bool:
        if value is None or value == self.last_value:
            return False
        every = self.every_ms if produced or not self.idle_every_ms else max(self.every_ms, self.idle_every_ms)
        return self.last_sent_at is None or now_ms - self.last_sent_at >= every

    def sent(self, now_ms: int, value: int) -> None:
        self.last_sent_at, self.last_value = now_ms, value


def caught_up(positions: Mapping[Partition, tuple[int | None, int]]) -> list[Partition]:
    """Partitions whose next offset to handle (the oldest buffered one, else the consumer's position) has
    reached the broker's high-water mark: (high-water mark or None, next offset) per partition."""
    return [p for p, (high, nxt) in positions.items() if high is not None and nxt >= high]


@dataclass
class MarkTracker:
    """What a transform worker knows for its connector's mark: the latest source commit per raw partition,
    the latest heartbeat, and when it last sent one."""
    connector: str
    throttle: MarkThrottle
    commits: dict[Partition, int] = field(default_factory=dict)
    heartbeat_ms: int | None = None
    produced: bool = True           # changes came in since the last mark (a fresh worker: assume so)

    def observe(self, commits: Mapping[Partition, int], heartbeats: Mapping[str, int], produced: bool = True) -> None:
        self.produced = self.produced or produced
        for part, ms in commits.items():
            self.commits[part] = max(ms, self.commits.get(part, ms))
        if self.connector in heartbeats:
            self.heartbeat_ms = max(heartbeats[self.connector], self.heartbeat_ms or 0)

    def due(self, now_ms: int, positions: Mapping[Partition, tuple[int | None, int]],
            held_commit_ms: int | None) -> int | None:
        """The mark to send now over these raw partitions, or None (unknown, unchanged, or too soon)."""
        if not positions:
            return None
        last = {p: self.commits.get(p) for p in positions}
        value = connector_mark_ms(last, caught_up(positions), self.heartbeat_ms, held_commit_ms)
        return value if self.throttle.due(now_ms, value, self.produced) else None

    def sent(self, now_ms: int, value: int) -> None:
        self.throttle.sent(now_ms, value)
        self.produced = False

    def free(self, positions: Mapping[Partition, tuple[int | None, int]]) -> int | None:
        """The mark of everything but the held records: how far every other change has been produced (a
        held record whose batch closed before it is given up, so it never holds the close back)."""
        if not positions:
            return None
        return connector_mark_ms({p: self.commits.get(p) for p in positions}, caught_up(positions),
                                 self.heartbeat_ms)


# --- sink side ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ConnectorProgress:
    """Latest mark (source commit ms, UTC) seen per core partition; `expected` must all report first."""
    seen_ms: Mapping[Partition, int] = field(default_factory=dict)
    expected: frozenset[Partition] = frozenset()


def watermark_ms(progress: ConnectorProgress) -> int | None:
    """min over the partitions' latest marks; None until every expected partition has reported."""
    if not progress.seen_ms or any(p not in progress.seen_ms for p in progress.expected):
        return None
    return min(progress.seen_ms.values())


def watermark(progress: ConnectorProgress) -> datetime | None:
    ms = watermark_ms(progress)
    return None if ms is None else from_ms(ms)


def connector_progress(rows: Iterable[tuple[str, str, int, int]],
                       expected: Iterable[Partition] = ()) -> dict[str, ConnectorProgress]:
    """(connector, topic, partition, ms) rows → progress per connector; every expected partition must report."""
    seen: dict[str, dict[Partition, int]] = {}
    for connector, topic, part, ms in rows:
        seen.setdefault(connector, {})[(topic, part)] = ms
    must = frozenset(expected)
    return {c: ConnectorProgress(seen_ms=s, expected=must) for c, s in seen.items()}


def table_watermarks(progress: Mapping[str, ConnectorProgress], tables: Iterable[str]) -> dict[str, datetime | None]:
    """Each table's watermark: the minimum over all connectors (None if any is unknown, or none reported)."""
    marks = [watermark(p) for p in progress.values()]
    overall = None if not marks or any(m is None for m in marks) else min(marks)
    return {t: overall for t in tables}


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("watermark moments must be timezone-aware")
    return int(moment.timestamp() * 1000)
