"""What status and the metrics derive from plain values: batch states, the window countdown, open
quarantine, connector views."""
from datetime import datetime

from hisbridge.clock import SHANGHAI
from hisbridge.delivery.schedule import Schedule
from hisbridge.delivery.staging import BatchCounts
from hisbridge.ops.observe import batch_state, batch_views, connector_view, current_or_next_window


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 2, day, hour, minute, tzinfo=SHANGHAI)


def test_batch_states():
    assert batch_state(pending=5, flushed=0, closed=False) == "open"
    assert batch_state(pending=5, flushed=0, closed=True) == "closed"
    assert batch_state(pending=0, flushed=7, closed=True) == "flushed"
    assert batch_state(pending=2, flushed=7, closed=True) == "resubmission_pending"


def test_batch_views_close_by_the_watermark_and_count_down_to_the_window_end():
    counts = [BatchCounts("mjzzlxx", "2026-02-10", 10, 10, 0, 0), BatchCounts("mjzzlxx", "2026-02-01", 3, 0, 3, 0),
              BatchCounts("nope", "2026-02-10", 1, 1, 0, 0)]
    now = at(10, 19)
    views = batch_views(counts, {"mjzzlxx": "daily"}, at(10, 18, 11), Schedule(), now)
    (v,) = views          # an old flushed batch and an unknown table are left out
    assert v.state == "closed" and v.window_seconds_left(now) == 3 * 3600
    (v,) = batch_views(counts[:1], {"mjzzlxx": "daily"}, at(10, 18, 9), Schedule(), now)
    assert v.state == "open"                         # watermark not yet past 18:00 + 10 min grace


def test_current_or_next_window():
    s = Schedule()
    b = current_or_next_window("daily", at(10, 15), s)
    assert b.name == "2026-02-10" and b.window_start == at(10, 18) and not b.in_window(at(10, 15))
    b = current_or_next_window("daily", at(10, 21, 59), s)
    assert b.name == "2026-02-10" and b.in_window(at(10, 21, 59))
    b = current_or_next_window("daily", at(10, 22), s)
    assert b.name == "2026-02-11" and b.window_end == at(11, 22)
    m = current_or_next_window("monthly", at(10, 15), s)
    assert m.name == "2026-01" and m.in_window(at(10, 15))


def test_connector_view_names_the_failure_and_shows_paused():
    failed = connector_view("his", {"connector": {"state": "RUNNING"}, "tasks": [
        {"id": 0, "state": "FAILED", "trace": "org.apache.kafka.connect.errors.ConnectException: x\n"
                                              "Caused by: org.postgresql.util.PSQLException: ERROR: permission denied"}]})
    assert failed.shown_state == "FAILED" and failed.tasks[0].reason == "PSQLException: ERROR: permission denied"
    paused = connector_view("his", {"connector": {"state": "PAUSED"}, "tasks": [{"id": 0, "state": "PAUSED"}]})
    assert paused.shown_state == "PAUSED"
    assert connector_view("his", None).shown_state == "UNKNOWN"
