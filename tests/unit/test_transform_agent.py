"""The transform wiring without Kafka: topics from the mapping, exact table values, lookups, records held
for a missing reference row (retry on arrival, quarantine after the wait), and the watermark a worker may
announce. Dicts stand in for the worker's stores; envelopes are real Debezium JSON-converter messages."""
from __future__ import annotations

import base64
import json
import sys
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hisbridge import avrocodec, crypto
from hisbridge.catalog import load_catalog
from hisbridge.crypto import Sm4ConfigError
from hisbridge.mapping import load_mapping
from hisbridge.contract import QuarantineEntry, heartbeat_topic
from hisbridge.settings import load_settings
from hisbridge.transform import CoreRecord, transform
from hisbridge.transformloop import (CodedStore, HeldRecords, LoggedStore, MarkThrottle, RawEvent, TableLookups,
                                     connector_mark_ms, decode_value, encode_value, lookup_topics,
                                     plan_batch, plan_expiry, raw_topics, release_all, restore_lookups,
                                     TimeOrder)

FIXTURES = Path(__file__).parent / "fixtures" / "mapping"
sys.path.insert(0, str(FIXTURES))
import his_rows as h  # noqa: E402

CATALOG = load_catalog()
MAPPING = load_mapping(CATALOG, FIXTURES / "test_hospital.yaml")
KEY = crypto.parse_key("0123456789abcdeffedcba9876543210", "test")
WAIT_MS = 5_000

# --- real Debezium JSON (schemas.enable=true) for the demo layout --------------------------------------

_TYPES = {datetime: ("int64", "io.debezium.time.MicroTimestamp"), date: ("int32", "io.debezium.time.Date"),
          Decimal: ("bytes", "org.apache.kafka.connect.data.Decimal"), int: ("int32", None), str: ("string", None)}


def _field(name: str, value) -> dict:
    typ, semantic = _TYPES[type(value)] if value is not None else ("string", None)
    out = {"field": name, "type": typ, "optional": True}
    if semantic:
        out["name"] = semantic
    if isinstance(value, Decimal):
        out["parameters"] = {"scale": "2"}
    return out


def _json_value(value):
    if isinstance(value, datetime):
        return int((value - datetime(1970, 1, 1)).total_seconds() * 1_000_000)
    if isinstance(value, date):
        return (value - date(1970, 1, 1)).days
    if isinstance(value, Decimal):
        unscaled = int(value.scaleb(2))
        return base64.b64encode(unscaled.to_bytes((unscaled.bit_length() + 8) // 8, "big", signed=True)).decode()
    return value


def envelope(table: str, op: str, before: dict | None, after: dict | None, commit_ms: int, lsn: int) -> bytes:
    row = after or before
    row_schema = {"type": "struct", "optional": True, "fields": [_field(k, v) for k, v in row.items()]}
    source_schema = {"type": "struct", "fields": [{"field": f, "type": t} for f, t in (
        ("connector", "string"), ("name", "string"), ("ts_ms", "int64"), ("snapshot", "string"), ("db", "string"),
        ("schema", "string"), ("table", "string"), ("txId", "int64"), ("lsn", "int64"))]}
    schema = {"type": "struct", "fields": [{**row_schema, "field": "before"}, {**row_schema, "field": "after"},
                                           {**source_schema, "field": "source"}, {"field": "op", "type": "string"},
                                           {"field": "ts_ms", "type": "int64", "optional": True}]}
    enc = lambda r: None if r is None else {k: _json_value(v) for k, v in r.items()}  # noqa: E731
    payload = {"before": enc(before), "after": enc(after), "op": op, "ts_ms": commit_ms + 5,
               "source": {"connector": "postgresql", "name": "his", "ts_ms": commit_ms, "snapshot": "false",
                          "db": "his", "schema": "his", "table": table, "txId": lsn, "lsn": lsn}}
    return json.dumps({"schema": schema, "payload": payload}).encode()


class Feed:
    """Raw events in topic order with increasing offsets, as the agent receives them."""

    def __init__(self) -> None:
        self.offsets: dict[str, int] = {}
        self.lsn = 100

    def event(self, table: str, after: dict | None, op: str = "c", before: dict | None = None,
              commit_ms: int = 1_000) -> RawEvent:
        topic = f"his.his.{table}"
        offset = self.offsets[topic] = self.offsets.get(topic, -1) + 1
        self.lsn += 1
        return RawEvent(topic, 0, offset, b'{"id": 1}', envelope(table, op, before, after, commit_ms, self.lsn))

    def heartbeat(self, ts_ms: int, offset: int = 0) -> RawEvent:
        return RawEvent(heartbeat_topic("his"), 0, offset, None, json.dumps(
            {"schema": {"type": "struct", "name": "io.debezium.connector.common.Heartbeat",
                        "fields": [{"field": "ts_ms", "type": "int64"}]}, "payload": {"ts_ms": ts_ms}}).encode())


def run(message, give_up: bool):
    """As the agent runs it: records left Unfinished for plan_batch / plan_expiry to finish together."""
    return transform(message, catalog=CATALOG, mapping=MAPPING, lookups=TableLookups(STORE["lookups"],
                                                                                     MAPPING.lookups),
                     key=KEY, give_up=give_up, defer=True)


STORE: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def stores():
    """Lookups as a plain dict; held records over a raw dict (what the held-records topic holds) — PENDING is
    that raw dict, so the tests see what a restart would recover."""
    STORE["lookups"], STORE["raw"] = {}, {}
    STORE["pending"] = HeldRecords(CodedStore(STORE["raw"]))
    yield STORE


def pending() -> HeldRecords:
    return STORE["pending"]


def raw_pending() -> dict:
    return STORE["raw"]


def expiry(now_ms: int):
    return plan_expiry(pending=pending(), run=run, now_ms=now_ms, wait_ms=WAIT_MS)


def batch(events, now_ms: int = 10_000):
    return plan_batch(events, mapping=MAPPING, lookups=STORE["lookups"], pending=pending(), run=run, now_ms=now_ms)


def reference_events(feed: Feed, patient: bool = True) -> list[RawEvent]:
    events = [feed.event("dept_dict", h.dept()), feed.event("staff_dict", h.staff()),
              feed.event("op_register", h.register())]
    return events + ([feed.event("pat_master", h.patient())] if patient else [])


def test_raw_topics_come_from_the_mapping_sources_not_from_code():
    topics = raw_topics(MAPPING, "his")
    assert "his.his.op_visit" in topics and "his.his.pat_master" in topics and "his.his.mr_diagnosis" in topics
    assert topics == sorted(set(topics))
    assert len(topics) == len(set(MAPPING.by_source) | MAPPING.lookup_sources)
    assert heartbeat_topic("his") == "__debezium-heartbeat.his"


def test_table_values_round_trip_exactly():
    row = {"t": datetime(2026, 3, 1, 17, 59, 59, 999999), "d": date(2026, 3, 1), "h": time(8, 30, 0, 5),
           "m": Decimal("123.40"), "b": b"\x00\xff", "s": "张三", "n": None, "i": 7, "nested": {"1": {"x": [1, "a"]}},
           "looks_tagged": {"$dt": "not a date"}}
    back = decode_value(encode_value(row))
    assert back == row and type(back["m"]) is Decimal and str(back["m"]) == "123.40"


def test_coded_store_keeps_bytes_underneath_and_values_on_top():
    raw: dict[str, bytes] = {}
    store = CodedStore(raw)
    store["patient\x1eP1"] = {"birth_date": date(1949, 12, 31), "fee": Decimal("1.50")}
    assert isinstance(raw["patient\x1eP1"], bytes)
    assert store.get("patient\x1eP1") == {"birth_date": date(1949, 12, 31), "fee": Decimal("1.50")}
    assert store.get("missing") is None and "patient\x1eP1" in store and len(store) == 1
    del store["patient\x1eP1"]
    assert raw == {}


def test_reference_rows_are_applied_before_the_change_that_needs_them_in_the_same_batch():
    feed = Feed()
    plan = batch(reference_events(feed) + [feed.event("op_diagnosis", h.op_diagnosis()),
                                           feed.event("op_visit", h.visit())])
    records = [o for o in plan.outputs if isinstance(o, CoreRecord)]
    # the diagnosis drove first and waited for its visit; the visit's arrival released it, then drove itself
    assert [r.key for r in records] == ["V0001", "V0001"] and records[0].value == records[1].value
    assert raw_pending() and plan.release     # released only by release_all, after the produce acks
    release_all(pending(), plan)
    assert raw_pending() == {} and len(pending()) == 0


def test_a_visit_waits_for_its_patient_and_goes_out_when_the_patient_arrives():
    feed = Feed()
    first = batch(reference_events(feed, patient=False) + [feed.event("op_diagnosis", h.op_diagnosis()),
                                                            feed.event("op_visit", h.visit(), commit_ms=2_000)])
    release_all(pending(), first)
    assert [o for o in first.outputs if isinstance(o, CoreRecord)] == [] and first.parked >= 1
    assert pending().oldest_commit() == 1_000          # the diagnosis (commit 1000) waits too
    second = batch([feed.event("pat_master", h.patient())], now_ms=12_000)
    records = [o for o in second.outputs if isinstance(o, CoreRecord)]
    assert records and {r.key for r in records} == {"V0001"}
    release_all(pending(), second)
    assert raw_pending() == {} and pending().oldest_commit() is None


def test_a_record_held_twice_after_a_crash_is_held_once():
    feed = Feed()
    events = reference_events(feed, patient=False) + [feed.event("op_diagnosis", h.op_diagnosis()),
                                                      feed.event("op_visit", h.visit())]
    batch(events)
    held = dict(raw_pending())
    again = batch(events)          # the same batch consumed again (offsets were not committed)
    assert again.parked == 0 and raw_pending() == held


def test_a_patient_that_never_arrives_is_quarantined_after_the_wait_with_the_missing_key():
    feed = Feed()
    release_all(pending(), batch(reference_events(feed, patient=False)
                                 + [feed.event("op_diagnosis", h.op_diagnosis()),
                                    feed.event("op_visit", h.visit())], now_ms=10_000))
    early = expiry(10_000 + WAIT_MS - 1)
    assert early.outputs == [] and early.release == []
    late = expiry(10_000 + WAIT_MS)
    assert late.outputs and all(isinstance(o, QuarantineEntry) for o in late.outputs)
    assert {o.rules[0] for o in late.outputs} == {"missing_lookup"}
    assert all("patient[P0001]" in o.reasons[0]["message"] and o.key == "V0001" for o in late.outputs)
    release_all(pending(), late)
    assert raw_pending() == {}


def test_delete_revokes_and_removes_the_reference_row():
    feed = Feed()
    plan = batch(reference_events(feed) + [feed.event("op_diagnosis", h.op_diagnosis()),
                                           feed.event("op_visit", h.visit()),
                                           feed.event("op_visit", None, op="d", before=h.visit())])
    records = [o for o in plan.outputs if isinstance(o, CoreRecord)]
    schemas = avrocodec.schemas_by_fingerprint([avrocodec.load_schema("mjzzlxx")])
    revoke_flags = [(r.key, avrocodec.decode(r.value, schemas)["xgbz"]) for r in records]
    assert revoke_flags == [("V0001", "0"), ("V0001", "0"), ("V0001", "1")]
    assert "visit\x1eV0001" not in STORE["lookups"]


def test_tombstones_are_skipped_and_heartbeats_and_commits_are_tracked():
    feed = Feed()
    plan = batch([feed.event("dept_dict", h.dept(), commit_ms=5_000),
                  RawEvent("his.his.dept_dict", 0, 1, b"{}", None), feed.heartbeat(9_000, offset=3)])
    assert plan.outputs == [] and plan.heartbeats == {"his": 9_000}
    assert plan.commits == {("his.his.dept_dict", 0): 5_000, ("__debezium-heartbeat.his", 0): 9_000}
    assert plan.offsets[("his.his.dept_dict", 0)] == 1


def test_an_unreadable_envelope_is_quarantined_not_raised():
    plan = batch([RawEvent("his.his.op_visit", 0, 0, None, b"{not json")])
    assert len(plan.outputs) == 1 and plan.outputs[0].rules == ["decode_error"]


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


def test_sm4_settings_come_from_the_settings_with_defaults():
    assert crypto.sm4_settings(load_settings({}).sm4) == crypto.DEFAULT_SETTINGS
    cbc = {"HISBRIDGE_SM4_MODE": "CBC", "HISBRIDGE_SM4_IV": "00" * 16, "HISBRIDGE_SM4_ENCODING": "base64"}
    assert crypto.sm4_settings(load_settings(cbc).sm4) == crypto.Sm4Settings(mode="cbc", iv=bytes(16), encoding="base64")
    for broken in ({**cbc, "HISBRIDGE_SM4_IV": ""}, {**cbc, "HISBRIDGE_SM4_IV": "zz"}):
        with pytest.raises(Sm4ConfigError):
            crypto.sm4_settings(load_settings(broken).sm4)


def test_a_record_still_missing_another_row_is_held_again_with_its_first_wait_time():
    feed = Feed()
    events = [feed.event("dept_dict", h.dept()), feed.event("staff_dict", h.staff()),
              feed.event("op_diagnosis", h.op_diagnosis()), feed.event("op_visit", h.visit())]
    release_all(pending(), batch(events, now_ms=10_000))
    first_keys = set(raw_pending())
    arrived = batch([feed.event("op_register", h.register())] if any(k.startswith("register") for k in first_keys)
                    else [feed.event("pat_master", h.patient())], now_ms=13_000)
    assert [o for o in arrived.outputs if isinstance(o, CoreRecord)] == []
    release_all(pending(), arrived)
    assert raw_pending() and set(raw_pending()).isdisjoint(first_keys)      # moved to the other key
    assert expiry(10_000 + WAIT_MS - 1).outputs == []
    late = expiry(10_000 + WAIT_MS)
    assert late.outputs and {o.rules[0] for o in late.outputs} == {"missing_lookup"}


def test_held_records_index_is_rebuilt_from_the_store_after_a_restart():
    feed = Feed()
    release_all(pending(), batch(reference_events(feed, patient=False)
                                 + [feed.event("op_diagnosis", h.op_diagnosis()),
                                    feed.event("op_visit", h.visit(), commit_ms=3_000)], now_ms=10_000))
    STORE["pending"] = HeldRecords(CodedStore(raw_pending()))     # a new worker over the recovered table
    assert len(pending()) == 2 and pending().oldest_commit() == 1_000
    plan = batch([feed.event("pat_master", h.patient())], now_ms=11_000)
    assert {o.key for o in plan.outputs if isinstance(o, CoreRecord)} == {"V0001"}
    release_all(pending(), plan)
    assert raw_pending() == {} and len(pending()) == 0


def test_a_restarted_worker_restores_from_the_raw_reference_topics_the_rows_its_batches_kept():
    """Lookups are rebuilt at start from the reference tables' raw topics read from the beginning: an update,
    a delete with its tombstone and an undecodable message there give the rows the running worker held."""
    feed = Feed()
    events = reference_events(feed) + [
        feed.event("pat_master", h.patient(phone="13700137000"), op="u", before=h.patient()),
        feed.event("staff_dict", None, op="d", before=h.staff()),
        RawEvent("his.his.staff_dict", 0, 9, b'{"id": 1}', None),       # the tombstone after the delete
        RawEvent("his.his.dept_dict", 0, 9, b'{"id": 1}', b"{not json"),
    ]
    batch(events)
    assert set(lookup_topics(MAPPING, "his")) >= {e.topic for e in events}
    restored: dict = {}
    assert restore_lookups(restored, MAPPING, [(e.topic, e.key, e.value) for e in events]) == 6
    assert restored == STORE["lookups"]
    first: dict = {}
    restore_lookups(first, MAPPING, [(e.topic, e.key, e.value) for e in events[:4]])
    assert set(restored) == set(first) - {k for k, row in first.items() if row == h.staff()}
    assert len(first) == 4 and len(restored) == 3
    assert [row["phone"] for row in restored.values() if "phone" in row] == ["13700137000"]


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


def test_held_records_written_through_to_their_topic_come_back_after_a_restart():
    """The worker keeps held records in a LoggedStore and produces its writes (a release is a tombstone)
    to a compacted topic after every batch; a restarted worker reads that topic back."""
    rows = LoggedStore()
    STORE["pending"] = HeldRecords(CodedStore(rows))
    feed = Feed()
    first = batch(reference_events(feed, patient=False) + [feed.event("op_diagnosis", h.op_diagnosis()),
                                                           feed.event("op_visit", h.visit(), commit_ms=3_000)])
    release_all(pending(), first)
    topic = [("held", key.encode(), value) for key, value in rows.drain()]
    assert len(rows) == 2 and rows.drain() == []       # drained: the next batch produces only its own writes
    restarted = LoggedStore()
    restarted.restore(topic)
    assert restarted.rows == rows.rows and restarted.writes == []
    STORE["pending"] = HeldRecords(CodedStore(restarted))
    plan = batch([feed.event("pat_master", h.patient())], now_ms=11_000)
    release_all(pending(), plan)
    assert {o.key for o in plan.outputs if isinstance(o, CoreRecord)} == {"V0001"}
    released = [("held", key.encode(), value) for key, value in restarted.drain()]
    assert [value for _, _, value in released] == [None, None]             # both released: tombstones
    topic += released
    again = LoggedStore()
    again.restore(topic)
    assert again.rows == {}
