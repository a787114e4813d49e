"""Topics the worker subscribes to by name must exist before it starts: a topic created after its consumer
subscribed is only seen at the next metadata refresh (5 minutes), which would hold a new table's first
changes, or a fresh installation's first delivery, that long. And a few topics are read whole at start
(read_from_start): the reference tables' raw topics and the held-records topic, the transform's state."""
from __future__ import annotations

from typing import Iterable, Iterator, Mapping


def ensure_topics(bootstrap: str, names: Iterable[str], client_id: str = "hisbridge-setup", compacted: bool = False,
                  replication: int = 1) -> list[str]:
    """Create the named topics that do not exist yet (1 partition, `replication` as the connector template
    does; `compacted` for raw CDC topics, which the template also creates compacted). Returns the topics
    created."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id)
    try:
        missing = sorted(set(names) - set(admin.list_topics()))
        for name in missing:
            try:
                admin.create_topics([NewTopic(name, 1, replication,
                                              topic_configs={"cleanup.policy": "compact"} if compacted else {})])
            except TopicAlreadyExistsError:   # someone (the connector, another worker) was faster
                pass
        return missing
    finally:
        admin.close()


def not_compacted(bootstrap: str, names: Iterable[str], client_id: str = "hisbridge-setup") -> list[str]:
    """The named (existing) topics whose cleanup.policy does not compact: a topic read whole at start must
    keep the newest message of every key, not just the last week's."""
    from kafka.admin import (ConfigResource, ConfigResourceType,
                             KafkaAdminClient)

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id)
    try:
        existing = sorted(set(names) & set(admin.list_topics()))
        if not existing:
            return []
        found = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in existing],
                                       config_filter="all").get("topic", {})
    finally:
        admin.close()
    policy = {t: ((found.get(t) or {}).get("cleanup.policy") or {}).get("value") or "" for t in existing}
    return [t for t in existing if "compact" not in policy[t]]


def partitions_of(bootstrap: str, topics: Iterable[str], client_id: str = "hisbridge-setup") -> list[tuple[str, int]]:
    """(topic, partition) of every partition of the named topics that exist."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id=client_id, group_id=None, enable_auto_commit=False)
    try:
        return [(t, p) for t in sorted(topics) for p in sorted(consumer.partitions_for_topic(t) or ())]
    finally:
        consumer.close()


def read_topic(bootstrap: str, topic: str) -> Iterator[tuple[str, bytes | None, bytes | None]]:
    """Every message of every partition of `topic` up to its end now (read_from_start); none if it is absent."""
    return read_from_start(bootstrap, partitions(bootstrap, [topic]))


def partitions(bootstrap: str, topics: Iterable[str],
               client_id: str = "hisbridge-restore") -> dict[tuple[str, int], int | None]:
    """Every partition of `topics` as read_from_start's `until`: each to its end when reading starts."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             client_id=client_id)
    try:
        return {(t, p): None for t in topics for p in (consumer.partitions_for_topic(t) or set())}
    finally:
        consumer.close()


def read_from_start(bootstrap: str, until: Mapping[tuple[str, int], int | None],
                    client_id: str = "hisbridge-restore",
                    since_ms: int | None = None, from_offsets: Mapping[tuple[str, int], int] | None = None
                    ) -> Iterator[tuple[str, bytes | None, bytes | None]]:
    """(topic, key, value) of every message before `until[(topic, partition)]` (None: the end offset when
    reading starts), from the first offset kept — or from the first message timestamped at or after
    `since_ms`, or from `from_offsets[(topic, partition)]` where given —, in offset order per partition. No
    consumer group: nothing is committed."""
    from kafka import KafkaConsumer, TopicPartition

    parts = [TopicPartition(t, p) for (t, p), offset in sorted(until.items()) if offset is None or offset > 0]
    if not parts:
        return
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id=client_id, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        starts = consumer.offsets_for_times({tp: since_ms for tp in parts}) if since_ms is not None else {}
        if since_ms is not None:                       # a partition with nothing that recent has nothing to read
            parts = [tp for tp in parts if starts.get(tp) is not None]
            if not parts:
                return
        consumer.assign(parts)
        if since_ms is None:
            consumer.seek_to_beginning(*parts)
        for tp in parts if since_ms is not None else ():
            consumer.seek(tp, starts[tp].offset)
        for tp in parts if since_ms is None and from_offsets else ():
            if from_offsets.get((tp.topic, tp.partition)):
                consumer.seek(tp, from_offsets[(tp.topic, tp.partition)])
        end = {tp: min(offset, until[(tp.topic, tp.partition)] or offset)
               for tp, offset in consumer.end_offsets(parts).items()}
        # compaction leaves gaps in the offsets: a partition is done when its position reaches its end
        remaining = {tp for tp in parts if consumer.position(tp) < end[tp]}
        while remaining:
            for tp, messages in consumer.poll(timeout_ms=1000).items():
                for m in messages:
                    if m.offset < end[tp]:
                        yield m.topic, m.key, m.value
            remaining = {tp for tp in remaining if consumer.position(tp) < end[tp]}
    finally:
        consumer.close()


Position = tuple[str, int, int]     # (topic, partition, offset)
_SEEK_GAP = 500                     # nearer than this, reading on is cheaper than a seek and a new fetch


def read_at(bootstrap: str, positions: Iterable[Position], client_id: str = "hisbridge-replay"
            ) -> dict[Position, tuple[bytes | None, bytes | None]]:
    """(key, value) of the message at each position that is still there (compaction or retention may have
    removed it: then it is missing from the answer). Seeks to each, so a few positions in a topic of
    millions read a few fetches, not the topic."""
    from kafka import KafkaConsumer, TopicPartition

    wanted: dict[tuple[str, int], list[int]] = {}
    for topic, part, offset in positions:
        wanted.setdefault((topic, part), []).append(offset)
    found: dict[Position, tuple[bytes | None, bytes | None]] = {}
    if not wanted:
        return found
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id=client_id, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        for (topic, part), offsets in sorted(wanted.items()):
            tp = TopicPartition(topic, part)
            consumer.assign([tp])
            first, end = consumer.beginning_offsets([tp])[tp], consumer.end_offsets([tp])[tp]
            todo = {o for o in offsets if first <= o < end}
            for offset in sorted(todo):
                position = consumer.position(tp)
                if offset < position:                 # read with an earlier one's fetch (or compacted away)
                    continue
                if offset >= position + _SEEK_GAP:
                    consumer.seek(tp, offset)
                empty = 0
                while consumer.position(tp) <= offset and empty < 3:   # 3 empty polls: nothing left up to the end
                    got = consumer.poll(timeout_ms=1000).get(tp, [])
                    empty = 0 if got else empty + 1
                    for m in got:
                        if m.offset in todo:
                            found[(topic, part, m.offset)] = (m.key, m.value)
    finally:
        consumer.close()
    return found

