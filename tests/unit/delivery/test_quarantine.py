"""The quarantine life cycle's pure parts: what an entry's record version is, one row per fact, keys by rule."""
from __future__ import annotations

from hisbridge.contract import QuarantineEntry
from hisbridge.delivery.quarantine import distinct_rows, entry_version, keys_by_rule


def entry(key: str | None, source: dict, rule: str = "unmapped_code", org: str | None = None) -> QuarantineEntry:
    record = None if org is None else {"yljgdm": org}
    return QuarantineEntry("mjzzlxx", ({"rule": rule, "field": None, "message": "m"},), source, None, record, "v",
                           "2026-04-01T10:00:00+08:00", key)


def test_the_version_is_the_source_position_or_the_raw_position_of_an_unreadable_message():
    assert entry_version(entry("V1", {"lsn": 5, "commit_time_ms": 50})) == "5:50"
    assert entry_version(entry(None, {"topic": "his.his.op_visit", "position": "0@17"})) == "his.his.op_visit@0@17"


def test_a_key_in_one_batch_is_one_row_of_its_newest_version_unkeyed_entries_one_per_version():
    rows = distinct_rows([entry("V1", {"lsn": 6, "commit_time_ms": 60}, rule="required"),     # the diagnosis
                          entry("V1", {"lsn": 5, "commit_time_ms": 50}),                       # the visit
                          entry("V2", {"lsn": 7, "commit_time_ms": 70}),
                          entry("V2", {"lsn": 7, "commit_time_ms": 70}, rule="missing_lookup"),
                          entry(None, {"topic": "t", "position": "0@1"}, rule="decode_error"),
                          entry(None, {"topic": "t", "position": "0@2"}, rule="decode_error")])
    assert [(r[2], r[3], r[7]) for r in rows] == [("V1", "6:60", ["required"]), ("V2", "7:70", ["missing_lookup"]),
                                                  ("", "t@0@1", ["decode_error"]), ("", "t@0@2", ["decode_error"])]


def test_one_key_from_two_hospitals_is_two_entries():
    rows = distinct_rows([entry("V1", {"lsn": 5, "commit_time_ms": 50}, org="A"),
                          entry("V1", {"lsn": 6, "commit_time_ms": 60}, rule="duplicate_key_across_hospitals", org="B")])
    assert [(r[1], r[2], r[7]) for r in rows] == [("A", "V1", ["unmapped_code"]),
                                                  ("B", "V1", ["duplicate_key_across_hospitals"])]


def test_keys_are_listed_by_rule():
    assert keys_by_rule({("V2", "required"), ("V1", "required"), (None, "decode_error")}) == {
        "decode_error": ["(no key)"], "required": ["V1", "V2"]}
