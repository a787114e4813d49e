"""Replay's pure parts: a quarantined record's source message found again by its source version."""
from __future__ import annotations

from fixtures.mapping import his_rows as h
from hisbridge.ops.replay import entry_version, match_sources
from support.debezium import Feed


def test_the_source_message_is_found_by_topic_and_source_version():
    feed = Feed()
    events = [feed.event("op_visit", h.visit(), commit_ms=1_000), feed.event("op_visit", h.visit(total_fee=1),
                                                                             commit_ms=2_000)]
    messages = [(e.topic, e.key, e.value) for e in events]
    wanted = {(events[1].topic, 102, 2_000), (events[1].topic, 999, 2_000)}
    found = match_sources(messages, wanted)
    assert list(found) == [(events[1].topic, 102, 2_000)]
    assert found[(events[1].topic, 102, 2_000)].source.commit_time_ms == 2_000
    assert entry_version({"source": {"lsn": 102, "commit_time_ms": 2_000}}) == (102, 2_000)
