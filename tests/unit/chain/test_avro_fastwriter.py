"""The compiled Avro writer is a shortcut, never a different answer: whenever it encodes a record, fastavro's
validate accepts that record and fastavro's writer gives the same bytes; whenever in doubt it declines."""
from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from functools import cache

import pytest
from hisbridge.catalog import load_catalog
from hisbridge.catalog.avro import avro_datum
from hisbridge.catalog.sample import sample_record
from hisbridge.chain import avro
from hisbridge.chain.avro import encode, load_schema, validate_record
from hisbridge.settings import defaults
from hypothesis import given, settings
from hypothesis import strategies as st

GENERATED = sorted(p.stem for p in defaults().paths.avro.glob("*.avsc")) if defaults().paths.avro.is_dir() else []


@cache
def _catalog():
    return load_catalog()


@pytest.fixture(scope="module")
def catalog():
    return _catalog()


def agrees(schema: avro.AvroSchema, record: dict) -> bool:
    """The writer's answer for `record` is allowed: declined, or fastavro's validate + bytes exactly."""
    fast = schema.fast_writer(record)
    if fast is None:
        return True
    return validate_record(schema, record) == [] and fast == encode(schema, record)


@pytest.mark.skipif(not GENERATED, reason="schemas/avro/*.avsc not generated yet")
@pytest.mark.parametrize("table", GENERATED)
def test_catalog_sample_records_take_the_compiled_path_with_fastavros_bytes(catalog, table):
    schema = load_schema(table)
    assert schema.fast_writer is not None, "catalog schemas only use the compiled shapes"
    rng = random.Random(3)
    for index in range(20):
        record = avro_datum(catalog.tables[table], sample_record(catalog.tables[table], rng, index))
        fast = schema.fast_writer(record)
        assert fast is not None and fast == encode(schema, record) and validate_record(schema, record) == []
        assert avro.encode_checked(schema, record) == (fast, [])


EDGE_VALUES = [
    None, True, False, 0, -1, 2 ** 31 - 1, 2 ** 31, -(2 ** 31), -(2 ** 31) - 1, 2 ** 63, 1.5, "", "x", "中文",
    "\ud800", b"\x01", Decimal("0.00"), Decimal("-0.00"), Decimal("12.34"), Decimal("-12.34"), Decimal("12.3"),
    Decimal("12.345"), Decimal("12"), Decimal("9999999999.99"), Decimal("99999999999.99"), Decimal("NaN"),
    Decimal("Infinity"), Decimal("1E+2"), Decimal("-99999999999999.9999"), Decimal("0.0000"),
    date(1, 1, 1), date(1970, 1, 1), date(9999, 12, 31), datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999999),
    datetime(2026, 3, 1, 17, 59, 59, 999999), datetime(2026, 3, 1, 18, tzinfo=timezone.utc),
    datetime(2026, 3, 1, 18, tzinfo=timezone(timedelta(hours=8))), datetime(2026, 11, 1, 1, 30, fold=1),
    datetime(1969, 12, 31, 23, 59, 59, 1), "2026-03-01", 20513, [1], {"a": 1},
]
values = st.one_of(st.sampled_from(EDGE_VALUES), st.integers(-2 ** 65, 2 ** 65), st.text(max_size=8),
                   st.dates(), st.datetimes(), st.datetimes(timezones=st.just(timezone.utc)),
                   *(st.decimals(allow_nan=False, allow_infinity=False, places=p) for p in (0, 2, 4)),
                   st.decimals(), st.floats())


@pytest.mark.skipif(not GENERATED, reason="schemas/avro/*.avsc not generated yet")
@settings(max_examples=400, deadline=None)
@given(st.sampled_from(GENERATED or ["-"]), st.integers(0, 10_000), st.data())
def test_any_change_to_a_valid_record_is_declined_or_encoded_like_fastavro(table, seed, data):
    catalog = _catalog()
    schema = load_schema(table)
    record = avro_datum(catalog.tables[table], sample_record(catalog.tables[table], random.Random(seed)))
    names = sorted(record)
    for name in data.draw(st.lists(st.sampled_from(names), max_size=4)):
        record[name] = data.draw(values)
    for name in data.draw(st.lists(st.sampled_from(names), max_size=2)):
        record.pop(name, None)
    if data.draw(st.booleans()) and data.draw(st.integers(0, 9)) == 0:
        record["not_a_field"] = "x"
    assert agrees(schema, record)
    encoded, problems = avro.encode_checked(schema, record)
    assert problems == validate_record(schema, record)
    if not problems:
        assert encoded == encode(schema, record)


def test_declines_what_validate_would_reject_or_question():
    schema = avro.schema_from_dict({"type": "record", "name": "t", "fields": [
        {"name": "n", "type": "int"},
        {"name": "d", "type": {"type": "int", "logicalType": "date"}},
        {"name": "t", "type": ["null", {"type": "long", "logicalType": "local-timestamp-micros"}], "default": None},
        {"name": "m", "type": {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2}}]})
    good = {"n": 1, "d": date(2026, 3, 1), "t": None, "m": Decimal("12.34")}
    assert schema.fast_writer(good) == encode(schema, good)
    assert schema.fast_writer({k: v for k, v in good.items() if k != "t"}) == encode(schema, good)
    for change in ({"n": True}, {"n": 2 ** 31}, {"d": datetime(2026, 3, 1)}, {"d": 20513}, {"t": 1},
                   {"t": datetime(2026, 3, 1, tzinfo=timezone.utc)}, {"m": Decimal("123.45")},
                   {"m": Decimal("1.2")}, {"m": 12}, {"extra": 1}):
        assert schema.fast_writer({**good, **change}) is None, change
    assert schema.fast_writer({k: v for k, v in good.items() if k != "n"}) is None


def test_schemas_outside_the_compiled_shapes_fall_back_to_fastavro():
    schema = avro.schema_from_dict({"type": "record", "name": "t", "fields": [
        {"name": "f", "type": "double"}]})
    assert schema.fast_writer is None
    assert avro.encode_checked(schema, {"f": 1.5})[1] == []
