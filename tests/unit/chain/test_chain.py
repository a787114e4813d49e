"""The chain as one pure function: change → CoreRecord / QuarantineEntry / Waiting, and the quarantine
entry's JSON form (never plaintext identity values)."""
from __future__ import annotations

import json
import os
from datetime import datetime
from decimal import Decimal

import pytest
from fixtures.mapping import his_rows as rows
from hisbridge.catalog import load_catalog
from hisbridge.chain import avro
from hisbridge.chain.chain import CoreRecord, Waiting, transform
from hisbridge.chain.crypto import Sm4Settings, decrypt_fields, parse_key
from hisbridge.chain.decode import decode_message
from hisbridge.contract import (QuarantineEntry, QuarantineFormatError,
                                parse_entry, serialize_entry)
from support import FIXTURES

FIXTURE = FIXTURES / "mapping" / "test_hospital.yaml"
KEY = parse_key(os.urandom(16).hex(), "test-only random key")   # throwaway, never a deployment key
IDENTITY = (rows.NAME, rows.VALID_ID, rows.PHONE, rows.ADDRESS)


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


@pytest.fixture(scope="module")
def run(catalog):
    from hisbridge.chain.mapping import load_mapping
    mapping = load_mapping(catalog, FIXTURE)

    def run(change, lookups=None, **kw):
        return transform(change, catalog=catalog, mapping=mapping, key=KEY,
                         lookups=rows.lookups() if lookups is None else lookups, **kw)
    return run


def decode_core(out: CoreRecord) -> dict:
    schema = avro.load_schema(out.table)
    return avro.decode(out.value, {schema.fingerprint: schema})


def visit_change(**visit):
    return rows.change("op_visit", "c", after=rows.visit(**visit))


def test_valid_visit_becomes_an_encrypted_avro_core_record(catalog, run):
    [out] = run(visit_change())
    assert isinstance(out, CoreRecord) and (out.table, out.key, out.batch) == ("mjzzlxx", "V0001", "2026-03-01")
    record = decode_core(out)
    assert (record["xb"], record["zjlb"], record["jzksdm"], record["xgbz"]) == ("2", "01", "03.01", "0")
    assert record["zfy"] == Decimal("123.45") and record["scsj"] == datetime(2026, 3, 1, 10, 0)
    assert rows.NAME not in json.dumps(record, default=str) and rows.VALID_ID not in repr(out.value)
    plain = decrypt_fields(record, catalog.tables["mjzzlxx"].encrypted_fields, KEY)
    assert (plain["xm"], plain["sfzh"], plain["dh"], plain["xzz"]) == IDENTITY
    headers = dict(out.headers)
    assert headers["hisbridge.key_version"] == KEY.version.encode() == out.key_version.encode()
    assert json.loads(headers["hisbridge.source"])["lsn"] == 123456 and headers["hisbridge.batch"] == b"2026-03-01"


def test_settings_choose_the_ciphertext_form(catalog, run):
    from hisbridge.chain.mapping import load_mapping
    [out] = transform(visit_change(), catalog=catalog, mapping=load_mapping(catalog, FIXTURE),
                      lookups=rows.lookups(), key=KEY, sm4_settings=Sm4Settings(encoding="base64"))
    record = decode_core(out)
    assert record["xm"].endswith("=") or len(record["xm"]) == 24   # Base64 of one 16-byte block
    settings = Sm4Settings(encoding="base64")
    assert decrypt_fields(record, ["xm"], KEY, settings)["xm"] == rows.NAME


@pytest.mark.parametrize("reg_time, batch", [
    (datetime(2026, 3, 1, 17, 59, 59, 999999), "2026-03-01"),
    (datetime(2026, 3, 1, 18, 0, 0, 0), "2026-03-02"),
])
def test_batch_boundary_at_1800_local(run, reg_time, batch):
    [out] = run(visit_change(), rows.lookups(register=rows.register(reg_time=reg_time)))
    assert isinstance(out, CoreRecord) and out.batch == batch
    assert decode_core(out)["scsj"] == reg_time


def test_debezium_envelope_feeds_the_chain_exactly(run):
    """decode → transform: a MicroTimestamp and a base64 Decimal arrive exactly, the position is kept."""
    row = rows.visit(total_fee=Decimal("999.99"))
    change = decode_message("his.his.op_visit", None, rows.visit_envelope("c", row))
    [out] = run(change, rows.lookups(register=rows.register(reg_time=datetime(2026, 3, 1, 17, 59, 59, 999999))))
    assert out.batch == "2026-03-01" and decode_core(out)["zfy"] == Decimal("999.99")
    assert out.source["lsn"] == 99 and out.source["topic"] == "his.his.op_visit"


def test_unmapped_code_is_quarantined_with_one_reason_naming_map_and_value(run):
    [out] = run(visit_change(), rows.lookups(register=rows.register(visit_type="TJ")))
    assert isinstance(out, QuarantineEntry) and out.rules == ["unmapped_code"]
    assert out.reasons[0]["field"] == "hzlx" and "patient_type" in out.reasons[0]["message"]
    assert "'TJ'" in out.reasons[0]["message"] and out.batch == "2026-03-01" and out.key == "V0001"


def test_invalid_id_number_is_quarantined_and_encrypted(catalog, run):
    bad_id = rows.VALID_ID[:-1] + "1"
    [out] = run(visit_change(), rows.lookups(patient=rows.patient(id_no=bad_id)))
    assert isinstance(out, QuarantineEntry) and out.rules == ["resident_id"]
    assert out.record["sfzh"] != bad_id and out.key_version == KEY.version
    assert decrypt_fields(out.record, ["sfzh"], KEY)["sfzh"] == bad_id


def test_all_reasons_of_a_record_are_reported_together(run):
    patient = rows.patient(sex="X", id_no="123", name=None)
    [out] = run(visit_change(), rows.lookups(patient=patient, register=rows.register(fee_type="YDYB")))
    assert sorted(out.rules) == ["required", "resident_id", "unmapped_code", "unmapped_code"]
    assert {r["field"] for r in out.reasons} == {"xb", "ylfkfs", "xm", "sfzh"}


def test_missing_patient_waits_then_quarantines_with_the_key(run):
    [waiting] = run(visit_change(), rows.lookups(patient=None))
    assert isinstance(waiting, Waiting) and waiting.missing.describe() == "patient[P0001]"
    [out] = run(visit_change(), rows.lookups(patient=None), give_up=True)
    assert isinstance(out, QuarantineEntry) and out.rules == ["missing_lookup"]
    assert "patient[P0001]" in out.reasons[0]["message"] and out.batch == "2026-03-01" and out.key == "V0001"


def test_update_carries_the_new_values(run):
    change = rows.change("op_visit", "u", before=rows.visit(), after=rows.visit(total_fee=Decimal("150.00")))
    [out] = run(change)
    assert decode_core(out)["zfy"] == Decimal("150.00") and decode_core(out)["xgbz"] == "0"


def test_delete_is_a_revoke_record(run):
    [out] = run(rows.change("op_visit", "d", before=rows.visit()))
    assert isinstance(out, CoreRecord) and out.key == "V0001"
    assert decode_core(out)["xgbz"] == "1" and out.source["op"] == "d"


def test_decode_error_is_quarantined_under_the_table_its_topic_feeds(run):
    error = decode_message("his.his.op_visit", None, b'{"schema": null, "payload": {"op": "x"}}')
    [out] = run(error)
    assert isinstance(out, QuarantineEntry) and out.table == "mjzzlxx" and out.rules == ["decode_error"]
    assert out.source["topic"] == "his.his.op_visit" and out.record is None


def test_unknown_source_table_is_quarantined(run):
    [out] = run(rows.change("lab_result", "c", after={"id": 1}))
    assert out.table == "his.lab_result" and out.rules == ["unknown_source_table"]


def test_reference_table_change_outputs_nothing(run):
    assert run(rows.change("pat_master", "c", after=rows.patient())) == []


def test_child_table_batches_by_parent_archive_time(run):
    [out] = run(rows.change("mr_diagnosis", "c", after=rows.mr_diagnosis()),
                rows.lookups(homepage=rows.homepage(archive_time=datetime(2026, 3, 10, 18, 0))))
    assert isinstance(out, CoreRecord) and (out.table, out.key, out.batch) == ("basy_zd", "BA0001|2|1", "2026-03-11")


# --- quarantine entry JSON ----------------------------------------------------------------------------

def test_serialized_quarantine_entry_has_no_plaintext_identity(run):
    patient = rows.patient(id_no=rows.VALID_ID[:-1] + "1", sex="X")
    [out] = run(visit_change(), rows.lookups(patient=patient))
    text = serialize_entry(out).decode("utf-8")
    for secret in (rows.NAME, rows.VALID_ID[:-1], rows.PHONE, rows.ADDRESS, "李四", "HC0001"):
        assert secret not in text
    assert "V0001" in text and "'X'" in text          # non-identity facts stay readable


def test_quarantine_entry_round_trips(run):
    [out] = run(visit_change(), rows.lookups(register=rows.register(visit_type="TJ")))
    back = parse_entry(serialize_entry(out))
    assert (back.table, back.key, back.batch, back.key_version) == ("mjzzlxx", "V0001", "2026-03-01", KEY.version)
    assert back.rules == ["unmapped_code"] and back.source["lsn"] == 123456
    assert back.record["zfy"] == "123.45" and back.record["scsj"] == "2026-03-01T10:00:00"
    assert back.first_seen == out.first_seen


@pytest.mark.parametrize("data", [b"not json", b"[]", b'{"table": "x"}', b'{"table":"x","reasons":[1],"source":{},"first_seen":""}'])
def test_parse_entry_rejects_other_messages(data):
    with pytest.raises(QuarantineFormatError):
        parse_entry(data)


def test_record_without_batch_time_is_quarantined_with_batch_unknown_and_one_reason_per_field(run):
    [out] = run(visit_change(total_fee=Decimal("1.00")), rows.lookups(register=rows.register(reg_time=None)))
    assert isinstance(out, QuarantineEntry) and out.batch is None
    assert sorted((r["rule"], r["field"]) for r in out.reasons) == [("required", "jzsj"), ("required", "scsj")]
