"""Replay's pure parts: a quarantined record's source message, read at the position its entry names, is taken
only when it is the entry's record version."""
from __future__ import annotations

from fixtures.mapping import his_rows as h
from hisbridge.ops.replay import entry_version, source_change, source_position
from support.debezium import Feed


def test_the_source_message_at_the_entrys_position_is_taken_only_with_the_entrys_version():
    feed = Feed()
    event = feed.event("op_visit", h.visit(total_fee=1), commit_ms=2_000)
    entry = {"source": {"topic": event.topic, "partition": 0, "offset": 41, "lsn": 101, "commit_time_ms": 2_000}}
    assert source_position(entry) == (event.topic, 0, 41)
    assert entry_version(entry) == (101, 2_000)
    change = source_change(entry, (event.key, event.value))
    assert change is not None and change.source.commit_time_ms == 2_000 and change.source.lsn == 101
    assert source_change({"source": {**entry["source"], "lsn": 999}}, (event.key, event.value)) is None
    assert source_change(entry, None) is None                                  # compacted or deleted away
    assert source_position({"source": {"topic": event.topic}}) is None
