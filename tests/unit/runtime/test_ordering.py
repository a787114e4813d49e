"""Fetched raw messages merged oldest first across partitions, and the merge's decisions (no consumer)."""
from __future__ import annotations

from hisbridge.runtime.ordering import Merge, RawEvent, TimeOrder


def _event(topic: str, offset: int) -> RawEvent:
    return RawEvent(topic, 0, offset, None, None)

def test_fetched_partitions_are_handed_out_oldest_first_and_wait_for_a_partition_behind():
    order = TimeOrder()
    order.add(("visits", 0), [(10, _event("visits", 0)), (40, _event("visits", 1)), (50, _event("visits", 2))])
    order.add(("patients", 0), [(5, _event("patients", 7)), (30, _event("patients", 8))])
    # the patients' partition has more on the broker: after its last buffered row the merge must stop
    taken = order.take(10, behind=[("patients", 0)])
    assert [(e.topic, e.offset) for e in taken] == [("patients", 7), ("visits", 0), ("patients", 8)]
    assert order.take(10, behind=[("patients", 0)]) == []          # nothing buffered for it: wait
    assert order.next_offset(("visits", 0)) == 1 and order.next_offset(("patients", 0)) is None
    order.add(("patients", 0), [(45, _event("patients", 9))])
    assert [(e.topic, e.offset) for e in order.take(2, behind=[])] == [("visits", 1), ("patients", 9)]
    assert [(e.topic, e.offset) for e in order.take(10, behind=[("other", 0)])] == []
    assert [(e.topic, e.offset) for e in order.take(10, behind=())] == [("visits", 2)]
    order.add(("visits", 0), [(60, _event("visits", 3))])
    order.drop([("visits", 0)])
    assert order.buffered(("visits", 0)) == 0 and order.take(10, ()) == []


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_lagging_partition_holds_the_merge_back_for_at_most_within_seconds():
    clock = Clock()
    merge = Merge(take=10, within=1.0, clock=clock)
    merge.add(("visits", 0), [(10, _event("visits", 0))])
    assert merge.next_batch(behind=[("patients", 0)]) == [] and merge.wait_ms == 10   # poll briefly for it
    clock.now = 0.5
    assert merge.next_batch(behind=[("patients", 0)]) == []
    clock.now = 1.0                                      # waited long enough: take what is buffered
    assert [e.offset for e in merge.next_batch(behind=[("patients", 0)])] == [0]
    assert merge.wait_ms == 0 and merge.stalled_since is None
    assert merge.next_batch(behind=()) == [] and merge.wait_ms == 1000              # nothing buffered: wait for news


def test_flow_pauses_a_partition_two_batches_ahead_and_resumes_it_below_one():
    merge = Merge(take=2, within=1.0)
    merge.add(("visits", 0), [(n, _event("visits", n)) for n in range(4)])
    merge.add(("patients", 0), [(0, _event("patients", 0))])
    assert merge.flow([("visits", 0), ("patients", 0)], paused=[]) == ([("visits", 0)], [])
    merge.next_batch(behind=())                          # two of visits' oldest (and patients' one) go
    assert merge.flow([("visits", 0), ("patients", 0)], paused=[("visits", 0)]) == ([], [])
    merge.next_batch(behind=())
    assert merge.flow([("visits", 0), ("patients", 0)], paused=[("visits", 0)]) == ([], [("visits", 0)])
