"""avro stage: per-field validation, single-object encoding (C3 01 + CRC-64-AVRO fingerprint), decoding."""
from __future__ import annotations

import io
import json
from datetime import date, datetime
from decimal import Decimal

import avro.io
import avro.schema
import pytest
from hisbridge.chain import avro as avrocodec
from hisbridge.chain.avro import (AvroCodecError, decode, encode, load_all,
                                  load_schema, schema_from_dict,
                                  schemas_by_fingerprint, validate_record)
from hisbridge.settings import defaults
from hypothesis import given, settings
from hypothesis import strategies as st

VISIT = {
    "type": "record", "name": "mz_visit", "namespace": "hisbridge.core",
    "fields": [
        {"name": "visit_no", "type": "string"},
        {"name": "visit_date", "type": {"type": "int", "logicalType": "date"}},
        {"name": "visit_time", "type": {"type": "long", "logicalType": "local-timestamp-micros"}},
        {"name": "fee", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}},
        {"name": "patient_name", "type": ["null", "string"], "default": None},
    ],
}
SCHEMA = schema_from_dict(VISIT)
GOOD = {"visit_no": "MZ001", "visit_date": date(2026, 3, 1), "visit_time": datetime(2026, 3, 1, 17, 59, 59, 999999),
        "fee": Decimal("12.34"), "patient_name": "6f1c0a"}


def test_good_record_has_no_problems_and_round_trips():
    assert validate_record(SCHEMA, GOOD) == []
    data = encode(SCHEMA, GOOD)
    assert decode(data, schemas_by_fingerprint([SCHEMA])) == GOOD


# Parsing Canonical Form written out by hand from the spec: logical types reduce to their primitive name
# ("[PRIMITIVES] … int instead of {"type":"int"}"), as Java's SchemaNormalization does. (The `avro` Python
# package 1.12 keeps {"type":"int"} for logical types, so its fingerprint differs: it is not used here.)
VISIT_CANONICAL = ('{"name":"hisbridge.core.mz_visit","type":"record","fields":[{"name":"visit_no","type":"string"},'
                   '{"name":"visit_date","type":"int"},{"name":"visit_time","type":"long"},'
                   '{"name":"fee","type":"bytes"},{"name":"patient_name","type":["null","string"]}]}')


@pytest.mark.filterwarnings("ignore::avro.errors.IgnoredLogicalType")
def test_header_is_single_object_encoding_with_the_avro_fingerprint():
    data = encode(SCHEMA, GOOD)
    plain = avro.schema.parse(VISIT_CANONICAL)  # no logical types: the reference implementation agrees
    assert data[:2] == b"\xc3\x01" and data[2:10] == plain.fingerprint("CRC-64-AVRO") == SCHEMA.fingerprint
    # the body is plain binary Avro: the reference reader decodes it with the same schema
    reader = avro.io.DatumReader(avro.schema.parse(json.dumps(VISIT)))
    body = reader.read(avro.io.BinaryDecoder(io.BytesIO(data[10:])))
    assert body["visit_no"] == "MZ001" and body["fee"] == Decimal("12.34")
    assert body["visit_date"] == date(2026, 3, 1)


def test_null_schema_fingerprint_matches_the_spec_value():
    # Avro spec/Java test value for the canonical form "null": 7195948357588979594 (as a signed long, LE bytes)
    assert int.from_bytes(schema_from_dict("null").fingerprint, "little", signed=True) == 7195948357588979594


def test_optional_field_may_be_absent_or_none():
    record = {k: v for k, v in GOOD.items() if k != "patient_name"}
    assert validate_record(SCHEMA, record) == []
    assert decode(encode(SCHEMA, record), {SCHEMA.fingerprint: SCHEMA})["patient_name"] is None


@pytest.mark.parametrize("changes, words", [
    ({"fee": Decimal("12.345")}, "field fee"),                    # wrong scale: fastavro raises ValueError
    ({"fee": Decimal("12345678901.23")}, "field fee"),            # precision 13 > 12
    ({"fee": 12.34}, "field fee"),                                # float is not a decimal
    ({"visit_date": datetime(2026, 3, 1, 18)}, "date-time"),      # would silently lose the time
    ({"visit_time": "2026-03-01"}, "field visit_time"),
    ({"patient_name": 42}, "field patient_name"),
    ({"extra": 1}, "field extra: not in schema"),
])
def test_each_problem_names_its_field(changes, words):
    problems = validate_record(SCHEMA, {**GOOD, **changes})
    assert len(problems) == 1 and words in problems[0], problems


def test_all_problems_are_reported_together_and_missing_required_fields_named():
    record = {"visit_date": "x", "fee": Decimal("1.234")}
    problems = validate_record(SCHEMA, record)
    assert any(p.startswith("field visit_no: missing") for p in problems)
    assert any(p.startswith("field visit_time: missing") for p in problems)
    assert any(p.startswith("field visit_date") for p in problems)
    assert any(p.startswith("field fee") for p in problems)
    assert len(problems) == 4


def test_decode_rejects_foreign_bytes_and_unknown_fingerprints():
    with pytest.raises(AvroCodecError, match="C3 01"):
        decode(b"\x00\x01garbage...", {SCHEMA.fingerprint: SCHEMA})
    other = schema_from_dict({**VISIT, "name": "zy_record"})
    assert other.fingerprint != SCHEMA.fingerprint
    with pytest.raises(AvroCodecError, match="unknown schema fingerprint"):
        decode(encode(SCHEMA, GOOD), {other.fingerprint: other})


def test_load_schema_reads_the_avro_dir_and_caches(tmp_path):
    (tmp_path / "mz_visit.avsc").write_text(json.dumps(VISIT), encoding="utf-8")
    first = load_schema("mz_visit", tmp_path)
    assert first is load_schema("mz_visit", tmp_path) and first.fingerprint == SCHEMA.fingerprint
    assert set(load_all(tmp_path)) == {"mz_visit"}
    with pytest.raises(FileNotFoundError, match="no Avro schema for table 'nope'"):
        load_schema("nope", tmp_path)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=30), st.dates(min_value=date(1900, 1, 1)),
       st.datetimes(min_value=datetime(1900, 1, 1)),
       st.decimals(places=2, allow_nan=False, allow_infinity=False, min_value=-10**9, max_value=10**9),
       st.none() | st.text(max_size=30))
def test_any_valid_record_round_trips_exactly(no, day, moment, fee, name):
    record = {"visit_no": no, "visit_date": day, "visit_time": moment, "fee": fee, "patient_name": name}
    assert validate_record(SCHEMA, record) == []
    assert decode(encode(SCHEMA, record), {SCHEMA.fingerprint: SCHEMA}) == record


GENERATED = sorted(defaults().paths.avro.glob("*.avsc")) if defaults().paths.avro.is_dir() else []


@pytest.mark.skipif(not GENERATED, reason="schemas/avro/*.avsc not generated yet")
@pytest.mark.parametrize("path", GENERATED, ids=lambda p: p.stem)
def test_generated_catalog_schemas_parse_and_fingerprint_like_the_reference(path):
    schema = load_schema(path.stem)
    canonical = avrocodec.to_parsing_canonical_form(json.loads(path.read_text(encoding="utf-8")))
    assert schema.fingerprint == avro.schema.parse(canonical).fingerprint("CRC-64-AVRO")
    # a record of nulls/defaults is either valid or told field by field — never an exception
    problems = validate_record(schema, {})
    assert all(p.startswith("field ") for p in problems)


values = st.one_of(st.none(), st.integers(-2**40, 2**40), st.floats(allow_nan=False), st.text(max_size=5),
                   st.booleans(), st.dates(), st.datetimes(),
                   *(st.decimals(allow_nan=False, allow_infinity=False, places=p) for p in (0, 2, 3)),
                   st.binary(max_size=4))


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({}, optional={name: values for name in GOOD}))
def test_encode_checked_agrees_with_validate_record(changes):
    record = {**GOOD, **changes}
    data, problems = avrocodec.encode_checked(SCHEMA, record)
    expected = validate_record(SCHEMA, record)
    assert problems == expected
    if not problems:
        assert decode(data, {SCHEMA.fingerprint: SCHEMA})["visit_no"] == record["visit_no"]
    else:
        assert data == b""
