"""FeedCoverage: what the reference feed read of a partition in this process, for the group's fast path."""
from __future__ import annotations

from hisbridge.runtime.coverage import FeedCoverage

P = ("his.his.pat_master", 0)


def test_what_the_feed_read_is_covered_with_each_messages_commit_time_and_verdict():
    c = FeedCoverage()
    for offset, commit, ok in ((5, 100, True), (6, 100, True), (7, 200, False), (9, 300, True)):   # 8 compacted
        c.read(P, offset, commit, ok)
    assert [c.covers(P, o) for o in (4, 5, 9, 10)] == [False, True, True, False]
    assert [c.skippable(P, o) for o in (5, 6, 7, 8, 9)] == [(True, 100), (True, 100), (False, 200), (True, 300),
                                                           (True, 300)]
    assert c.skippable(P, 4) == c.skippable(("other", 0), 5) == (False, None)   # read before this process: in full


def test_a_snapshot_is_one_run_crediting_no_later_than_each_messages_own_commit_time():
    """A snapshot stamps every row with the clock: one run while the times do not decrease; inside it a
    message is credited the run's first time, its last message the last — the marks lag, never lead."""
    c = FeedCoverage(limit=2)
    for offset in range(1000):
        c.read(P, offset, 5000 + offset // 3, True)
    assert c.covers(P, 0) and len(c.parts[P].runs) == 1
    assert [c.skippable(P, o) for o in (0, 500, 999)] == [(True, 5000), (True, 5000), (True, 5333)]
    c.read(P, 1000, 4000, True)                                             # earlier than the run's last: a new run
    assert c.skippable(P, 1000) == (True, 4000) and c.skippable(P, 999) == (True, 5333)


def test_what_the_group_handled_is_forgotten_and_the_bound_keeps_the_newest():
    c = FeedCoverage(limit=3)
    for offset in range(10):                                                # alternating verdicts: a run each
        c.read(P, offset, 1000 + offset, offset % 2 == 0)
    assert not c.covers(P, 6) and c.skippable(P, 7) == (False, 1007)      # only the 3 newest runs kept
    assert c.skippable(P, 8) == (True, 1008)
    c.handled(P, 7)
    assert not c.covers(P, 7) and c.covers(P, 8)
    c.read(P, 3, 5, True)                                                  # read again from elsewhere: anew
    assert c.covers(P, 3) and not c.covers(P, 8)
