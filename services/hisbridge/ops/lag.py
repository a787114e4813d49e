"""Consumer lag: per group and partition, the end offset against the group's committed offset."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    end: int
    committed: int | None           # None: the group has committed nothing there yet

    @property
    def lag(self) -> int:
        return max(0, self.end - (self.committed or 0))


def partition_lags(admin, groups: Iterable[str], topics: Iterable[str] | None = None) -> list[PartitionLag]:
    """Every partition each group committed on — or, with `topics`, every partition of those topics (a
    partition the group has not committed on yet lags by its whole end offset)."""
    from kafka import TopicPartition
    from kafka.admin import OffsetSpec
    groups = list(groups)
    committed = admin.list_group_offsets({g: None for g in groups}) if groups else {}
    if topics is None:
        wanted = {g: {tp for tp, meta in offsets.items() if meta.offset >= 0} for g, offsets in committed.items()}
    else:
        existing = set(admin.list_topics())
        parts = {TopicPartition(t, p["partition_index"]) for t in set(topics) & existing
                 for p in admin.describe_topics([t])[0]["partitions"]}
        wanted = {g: parts for g in groups}
    tps = set().union(*wanted.values()) if wanted else set()
    ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in tps}) if tps else {}
    out = []
    for group, parts in wanted.items():
        offsets = committed.get(group, {})
        for tp in sorted(parts):
            meta = offsets.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else None
            out.append(PartitionLag(group, tp.topic, tp.partition, ends[tp].offset, done))
    return out


def lag_by_topic(lags: Iterable[PartitionLag]) -> dict[str, dict[str, int]]:
    """group → topic → lag summed over its partitions."""
    out: dict[str, Counter] = {}
    for p in lags:
        out.setdefault(p.group, Counter())[p.topic] += p.lag
    return {g: dict(c) for g, c in out.items()}
