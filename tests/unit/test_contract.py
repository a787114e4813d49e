"""The wire contract: one spelling of every topic, header, mark and key, shared by both sides."""
from __future__ import annotations

import json
from datetime import date, datetime

import pytest
from hisbridge import contract


def test_topic_and_group_names():
    assert contract.raw_topic("his", "his.op_visit") == "his.his.op_visit"
    assert contract.heartbeat_topic("his") == "__debezium-heartbeat.his"
    assert contract.core_topic("core", "mjzzlxx") == "core.mjzzlxx"
    assert contract.quarantine_topic("core") == "core.quarantine"
    assert contract.held_topic("app") == "app.transform-held" and contract.transform_group("app") == "app.transform"


def test_only_a_process_whose_faust_agents_consume_joins_the_app_ids_own_group():
    assert contract.faust_app_id("app", ["transform", "sink"]) == contract.faust_app_id("app", ["sink"]) == "app"
    assert contract.faust_app_id("app", ["probe"]) == "app"
    assert contract.faust_app_id("app", ["transform"]) == contract.faust_app_id("app", ["none"]) == "app.monitor"


def test_the_business_key_has_one_separator_iso_dates_and_no_empty_part():
    record = {"bah": "M001", "zycs": 2, "rq": date(2026, 3, 1), "t": datetime(2026, 3, 1, 18)}
    assert contract.business_key(("bah", "zycs"), record) == "M001|2"
    assert contract.business_key(("rq", "bah"), record) == "2026-03-01|M001"
    assert contract.business_key(("t",), record) == "2026-03-01T18:00:00"
    assert contract.business_key(("bah", "missing"), record) is None
    assert contract.business_key(("bah",), {"bah": ""}) is None
    assert contract.join_key("M001", 2) == contract.business_key(("bah", "zycs"), record)
    assert contract.quarantine_key("basy", "M001|2") == b"basy|M001|2" and contract.quarantine_key("x", None) is None


def test_marks_round_trip_and_anything_else_is_refused():
    assert contract.parse_mark(contract.mark_value("his", 123)) == ("his", 123)
    for bad in (b'{"connector": "his"}', b'{"connector": "", "commit_time_ms": 1}',
                b'{"connector": "his", "commit_time_ms": true}', b"not json"):
        with pytest.raises(ValueError):
            contract.parse_mark(bad)
    assert contract.is_mark({"hisbridge.kind": b"watermark"}) and not contract.is_mark({})


def test_record_headers_carry_the_source_position_the_sink_reads_back():
    source = {"db": "his", "schema": "his", "table": "op_visit", "lsn": 7, "tx_id": 8, "commit_time_ms": 9,
              "snapshot": False, "topic": "not on the wire"}
    headers = dict(contract.record_headers("v1", "2026-03-01", source, b"\x01\x02"))
    assert headers == {"hisbridge.key_version": b"v1", "hisbridge.batch": b"2026-03-01",
                       "hisbridge.source": json.dumps({k: source[k] for k in contract.SOURCE_FIELDS},
                                                      separators=(",", ":")).encode(),
                       "hisbridge.schema_fp": b"0102"}
    assert contract.source_of_headers(headers)["commit_time_ms"] == 9 and contract.source_of_headers({}) == {}


@pytest.mark.parametrize("value", ["his", "op_visit", 'q"\\u/', "医院", "a\x7fb", "tab\there", "", 0, -5, 2 ** 63 - 1,
                                   2 ** 70, 1.5e16, 0.1, True, None])
def test_the_source_header_is_the_bytes_json_dumps_writes(value):
    source = {"db": "his", "schema": value, "table": "op_visit", "lsn": 7, "tx_id": value, "commit_time_ms": 9}
    want = json.dumps({k: source[k] for k in contract.SOURCE_FIELDS}, separators=(",", ":")).encode()
    assert contract.position_bytes(source) == want
