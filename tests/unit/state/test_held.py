"""Records held for a missing reference row: one entry each, found by the missing key, expired oldest first."""
from __future__ import annotations

from hisbridge.state.held import SETTLE_MS, Held, HeldRecords


def held(offset: int, since_ms: int, commit_ms: int | None = 100, table: str = "mjzzlxx",
         close_ms: int | None = None) -> Held:
    return Held("his.his.op_visit", 0, offset, "k", "{}", since_ms, commit_ms, table, close_ms)


def test_park_once_find_by_missing_key_release_and_expire():
    pending = HeldRecords({})
    first = pending.park("patient", "P1", held(1, since_ms=1_000, commit_ms=500))
    assert first is not None and pending.park("patient", "P1", held(1, since_ms=2_000)) is None   # once
    pending.park("patient", "P1", held(2, since_ms=1_500, commit_ms=400))
    pending.park("patient", "P2", held(3, since_ms=3_000, commit_ms=900))
    assert [h.offset for _, h in pending.at("patient", "P1")] == [1, 2] and len(pending) == 3
    assert pending.oldest_commit() == 400
    assert [h.offset for _, h in pending.expired(now_ms=6_000, wait_ms=5_000)] == [1]
    assert [h.offset for _, h in pending.expired(now_ms=6_500, wait_ms=5_000)] == [1, 2]
    pending.release([first])
    assert [h.offset for _, h in pending.at("patient", "P1")] == [2] and len(pending) == 2


def test_a_record_given_up_stays_held_but_no_longer_holds_the_mark_nor_expires_again():
    pending = HeldRecords({})
    skey = pending.park("patient", "P1", held(1, since_ms=1_000, commit_ms=500))
    pending.park("patient", "P2", held(2, since_ms=1_000, commit_ms=700, close_ms=9_000))
    assert [h.offset for _, h in pending.expired(now_ms=2_000, wait_ms=0, free_mark_ms=500 + SETTLE_MS + 1)] == [1]
    pending.give_up([skey])
    assert pending.oldest_commit() == 700 and pending.waiting() == (2, 1, 1_000)
    assert pending.expired(now_ms=2_000, wait_ms=0, free_mark_ms=8_999) == []
    assert [h.offset for _, h in pending.expired(now_ms=2_000, wait_ms=0, free_mark_ms=9_000)] == [2]
    assert [h.offset for _, h in HeldRecords(pending.store).at("patient", "P1")] == [1]   # survives a restart
    assert HeldRecords(pending.store).oldest_commit() == 700


def test_a_change_committed_after_its_batch_closed_waits_until_everything_else_passed_its_commit():
    pending = HeldRecords({})
    pending.park("patient", "P1", held(1, since_ms=1_000, commit_ms=50_000, close_ms=9_000))
    settled = 50_000 + SETTLE_MS
    assert pending.expired(now_ms=2_000, wait_ms=0, free_mark_ms=settled) == []      # its row may still come
    assert [h.offset for _, h in pending.expired(now_ms=2_000, wait_ms=0, free_mark_ms=settled + 1)] == [1]


def test_the_index_is_rebuilt_from_the_store_after_a_restart():
    store: dict = {}
    HeldRecords(store).park("patient", "P1", held(1, since_ms=1_000))
    again = HeldRecords(store)
    assert len(again) == 1 and [h.offset for _, h in again.at("patient", "P1")] == [1]
