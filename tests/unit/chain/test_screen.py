"""The screen stage: empty rows, reference rows without their key, and schema drift (a read column gone or its
type changed incompatibly) are reasons naming the column — each drift reported once per table and change."""
from __future__ import annotations

import json

from fixtures.mapping import his_rows as h
from hisbridge.catalog import load_catalog
from hisbridge.chain import crypto
from hisbridge.chain.chain import transform
from hisbridge.chain.decode import decode_message
from hisbridge.chain.mapping import load_mapping
from hisbridge.chain.screen import SchemaWatch, compatible, screen
from hisbridge.contract import QuarantineEntry
from support import FIXTURES
from support.debezium import envelope

CATALOG = load_catalog()
MAPPING = load_mapping(CATALOG, FIXTURES / "mapping" / "test_hospital.yaml")
KEY = crypto.parse_key("0123456789abcdeffedcba9876543210", "test")


def change(table: str, row: dict, op: str = "c", lsn: int = 100, retype: dict | None = None):
    data = json.loads(envelope(table, op, row if op == "d" else None, None if op == "d" else row, 1_000, lsn))
    for side in data["schema"]["fields"][:2]:
        for f in side["fields"]:
            f.update((retype or {}).get(f["field"], {}))
    return decode_message(f"his.his.{table}", None, json.dumps(data).encode())


def test_decode_keeps_the_envelope_column_types():
    c = change("op_visit", h.visit())
    assert c.columns["total_fee"] == "bytes/org.apache.kafka.connect.data.Decimal" and c.columns["visit_id"] == "string"


def test_a_column_the_mapping_reads_that_the_source_dropped_is_schema_drift_reported_once():
    watch = SchemaWatch()
    row = {k: v for k, v in h.visit().items() if k != "chief_complaint"}
    reasons = screen(MAPPING, change("op_visit", row), watch)
    assert [(r["rule"], r["field"]) for r in reasons] == [("schema_drift", "chief_complaint")]
    assert "no longer in the source table" in reasons[0]["message"]
    screen(MAPPING, change("op_visit", {**row, "visit_id": "V0002"}), watch)
    assert watch.drain() == [("his.op_visit", "chief_complaint", "no longer in the source table")]
    assert watch.drain() == []                              # one ERROR per table and change, not per record


def test_a_type_change_is_drift_unless_it_widens_a_number():
    watch = SchemaWatch()
    assert screen(MAPPING, change("op_diagnosis", h.op_diagnosis()), watch) == []
    widened = change("op_diagnosis", h.op_diagnosis(), retype={"seq": {"type": "int64"}})
    assert screen(MAPPING, widened, watch) == []
    retyped = change("op_visit", h.visit(), retype={"total_fee": {"type": "string", "name": None}})
    assert screen(MAPPING, change("op_visit", h.visit()), watch) == []
    [reason] = screen(MAPPING, retyped, watch)
    assert reason["rule"] == "schema_drift" and reason["field"] == "total_fee"
    assert "connect.data.Decimal → string" in reason["message"]
    assert compatible("int32", "int64") and compatible("float32", "float64") and not compatible("int64", "int32")
    assert not compatible("int64/io.debezium.time.MicroTimestamp", "string")


def test_empty_rows_and_reference_rows_without_their_key_are_quarantined_with_the_his_table():
    run = lambda c: transform(c, catalog=CATALOG, mapping=MAPPING, lookups={}, key=KEY, watch=SchemaWatch())  # noqa: E731
    no_key = {k: v for k, v in h.patient().items() if k != "patient_id"}
    [out] = run(change("pat_master", {**no_key, "patient_id": None}))
    assert isinstance(out, QuarantineEntry) and out.table == "his.pat_master" and out.rules == ["missing_key"]
    assert out.reasons[0]["field"] == "patient_id"
    [out] = run(change("pat_master", {"patient_id": None, **no_key}, op="d"))
    assert out.rules == ["missing_key"]
    empty = decode_message("his.his.op_visit", None, json.dumps(
        {"schema": None, "payload": {"op": "c", "before": None, "after": {}, "source": {
            "connector": "postgresql", "db": "his", "schema": "his", "table": "op_visit", "lsn": 1}}}).encode())
    [out] = run(empty)
    assert out.table == "mjzzlxx" and out.rules == ["empty_row"]


def test_one_envelope_schema_is_judged_once_and_a_changed_one_again():
    class Counting(dict):
        reads = 0

        def get(self, key, default=None):
            Counting.reads += 1
            return super().get(key, default)

    watch, reads = SchemaWatch(Counting()), frozenset({"a", "b"})
    columns = {"a": "int32", "b": "string"}          # decode hands one object per envelope schema
    assert [watch.check("his.t", columns, reads) for _ in range(100)] == [[]] * 100
    assert Counting.reads == 2
    assert watch.check("his.t", {"a": "string", "b": "string"}, reads) == [("a", "type int32 → string")]
