"""The watermark, both sides: the mark a transform worker may announce, and the sink's watermark from the
marks it has seen."""
from __future__ import annotations

from datetime import datetime, timedelta

from hisbridge.clock import SHANGHAI
from hisbridge.runtime.watermark import (ConnectorProgress, MarkThrottle,
                                         MarkTracker, caught_up,
                                         connector_mark_ms, connector_progress,
                                         table_watermarks, to_ms, watermark_ms)


def at(h: int, m: int = 0, s: int = 0, us: int = 0, days: int = 0) -> datetime:
    return datetime(2026, 4, 1, h, m, s, us, tzinfo=SHANGHAI) + timedelta(days=days)


def test_mark_is_the_minimum_over_partitions_with_caught_up_ones_at_the_heartbeat():
    a, b, hb = ("his.his.a", 0), ("his.his.b", 0), ("__debezium-heartbeat.his", 0)
    # b behind at 1000: the rest of that transaction may still come, so 999
    assert connector_mark_ms({a: 5_000, b: 1_000, hb: 9_000}, {a, hb}, 9_000) == 999
    assert connector_mark_ms({a: 5_000, b: 1_000, hb: 9_000}, {a, b, hb}, 9_000) == 9_000
    assert connector_mark_ms({a: None, hb: 9_000}, {a, hb}, 9_000) == 9_000      # empty and caught up
    assert connector_mark_ms({a: None, hb: 9_000}, {hb}, 9_000) is None          # behind, nothing seen
    assert connector_mark_ms({a: None}, {a}, None) is None                       # no heartbeat yet
    assert connector_mark_ms({a: 5_000, hb: 9_000}, {a, hb}, 9_000, held_commit_ms=3_000) == 2_999
    assert connector_mark_ms({}, set(), None) is None

def test_mark_throttle_sends_at_most_once_a_second_and_only_when_it_moved():
    t = MarkThrottle(1000)
    assert t.due(0, 5) and not t.due(0, None)
    t.sent(0, 5)
    assert not t.due(500, 6) and not t.due(2000, 5) and t.due(1000, 6)


def test_idle_marks_go_out_at_most_once_per_idle_interval():
    t = MarkThrottle(1000, idle_every_ms=30_000)
    t.sent(0, 5)
    assert t.due(1000, 6, produced=True)                  # changes came in: the usual second
    assert not t.due(1000, 6, produced=False) and not t.due(29_999, 6, produced=False)
    assert t.due(30_000, 6, produced=False)               # heartbeats alone: every 30 s


def test_tracker_is_idle_after_a_mark_until_a_change_comes_in():
    tracker = MarkTracker("his", MarkThrottle(1000, idle_every_ms=30_000))
    a, hb = ("his.his.a", 0), ("__debezium-heartbeat.his", 0)
    tracker.observe({a: 5_000}, {"his": 6_000}, produced=True)
    assert tracker.due(0, {a: (3, 3), hb: (1, 1)}, None) == 6_000
    tracker.sent(0, 6_000)
    tracker.observe({}, {"his": 8_000}, produced=False)   # a heartbeat only
    assert tracker.due(2_000, {a: (3, 3), hb: (2, 2)}, None) is None
    assert tracker.due(30_000, {a: (3, 3), hb: (2, 2)}, None) == 8_000
    tracker.observe({a: 9_000}, {}, produced=True)
    assert tracker.due(2_000, {a: (4, 4), hb: (2, 2)}, None) == 8_000   # a change: the usual second


def test_caught_up_means_the_next_offset_reached_the_high_water_mark():
    positions = {("a", 0): (10, 10), ("b", 0): (10, 7), ("c", 0): (None, 0)}
    assert caught_up(positions) == [("a", 0)]


def test_mark_tracker_keeps_the_latest_commit_per_partition_and_the_heartbeat():
    tracker = MarkTracker("his", MarkThrottle(1000))
    a, hb = ("his.his.a", 0), ("__debezium-heartbeat.his", 0)
    tracker.observe({a: 5_000}, {"his": 9_000, "other": 99_999})
    tracker.observe({a: 4_000}, {})                       # an older commit never moves it back
    assert tracker.commits == {a: 5_000} and tracker.heartbeat_ms == 9_000
    assert tracker.due(0, {a: (3, 3), hb: (1, 1)}, held_commit_ms=None) == 9_000
    assert tracker.due(0, {a: (3, 2), hb: (1, 1)}, held_commit_ms=None) == 4_999    # a is behind
    assert tracker.due(0, {}, held_commit_ms=None) is None
    tracker.throttle.sent(0, 9_000)
    assert tracker.due(500, {a: (3, 3), hb: (1, 1)}, held_commit_ms=None) is None   # unchanged


def test_watermark_is_the_minimum_over_partitions_and_connectors():
    rows = [("a", "core.mjzzlxx", 0, to_ms(at(18, 30))), ("a", "core.mjzzlxx", 1, to_ms(at(18, 5))),
            ("b", "core.mjzzlxx", 0, to_ms(at(19))), ("b", "core.mjzzlxx", 1, to_ms(at(19)))]

    marks = table_watermarks(connector_progress(rows), ["mjzzlxx"])
    assert marks == {"mjzzlxx": at(18, 5)}

def test_no_watermark_until_every_expected_partition_has_a_mark():
    expected = [("core.mjzzlxx", 0), ("core.mjzzlxx", 1)]
    rows = [("a", "core.mjzzlxx", 0, to_ms(at(19)))]
    assert table_watermarks(connector_progress(rows, expected), ["mjzzlxx"]) == {"mjzzlxx": None}
    assert table_watermarks(connector_progress([], expected), ["mjzzlxx"]) == {"mjzzlxx": None}


def test_watermark_ms_is_none_without_marks():
    assert watermark_ms(ConnectorProgress()) is None
    assert watermark_ms(ConnectorProgress({("t", 0): 5}, frozenset({("t", 0)}))) == 5
