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


def test_what_the_group_handled_is_forgotten_and_the_bound_keeps_the_newest():
    c = FeedCoverage(limit=3)
    for offset in range(10):
        c.read(P, offset, 1000 + offset, True)
    assert not c.covers(P, 6) and c.skippable(P, 7) == (True, 1007)       # only the 3 newest runs kept
    c.handled(P, 7)
    assert not c.covers(P, 7) and c.covers(P, 8)
    c.read(P, 3, 5, True)                                                  # read again from elsewhere: anew
    assert c.covers(P, 3) and not c.covers(P, 8)
