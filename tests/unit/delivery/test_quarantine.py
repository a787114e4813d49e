"""The quarantine life cycle's pure parts: what an entry's record version is, one row per fact, keys by rule."""
from __future__ import annotations

from hisbridge.contract import QuarantineEntry
from hisbridge.delivery.quarantine import distinct_rows, entry_version, keys_by_rule


def entry(key: str | None, source: dict, rule: str = "unmapped_code") -> QuarantineEntry:
    return QuarantineEntry("mjzzlxx", ({"rule": rule, "field": None, "message": "m"},), source, None, None, "v",
                           "2026-04-01T10:00:00+08:00", key)


def test_the_version_is_the_source_position_or_the_raw_position_of_an_unreadable_message():
    assert entry_version(entry("V1", {"lsn": 5, "commit_time_ms": 50})) == "5:50"
    assert entry_version(entry(None, {"topic": "his.his.op_visit", "position": "0@17"})) == "his.his.op_visit@0@17"


def test_the_same_fact_in_one_batch_is_one_row_with_the_newest_reasons():
    rows = distinct_rows([entry("V1", {"lsn": 5, "commit_time_ms": 50}),
                          entry("V1", {"lsn": 5, "commit_time_ms": 50}, rule="missing_lookup"),
                          entry("V1", {"lsn": 6, "commit_time_ms": 60})])
    assert [(r[1], r[2], r[6]) for r in rows] == [("V1", "5:50", ["missing_lookup"]), ("V1", "6:60", ["unmapped_code"])]


def test_keys_are_listed_by_rule():
    assert keys_by_rule({("V2", "required"), ("V1", "required"), (None, "decode_error")}) == {
        "decode_error": ["(no key)"], "required": ["V1", "V2"]}
