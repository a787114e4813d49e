"""The chain's fast paths give exactly the answers of the straightforward code they replace:

- quality: the compiled per-table plan (quality/plan.py) vs the rules interpreted field by field as the
  catalog lists them (the reference below is the original check_record, kept verbatim); the column-wise
  proof over a batch (quality/columns.py) never calls clean a record check_record has a reason for;
- SM4: a record's ECB fields encrypted in one OpenSSL call vs field by field;
- decode: orjson with a float/bigint guard vs json with Decimal floats.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import random
from decimal import Decimal
from functools import cache
from typing import Any

import pytest
from hisbridge.catalog import load_catalog
from hisbridge.catalog.sample import sample_record
from hisbridge.chain.crypto import Sm4Settings
from hisbridge.chain.crypto import _encode as encode_cipher
from hisbridge.chain.crypto import (encrypt_bytes, encrypt_fields, parse_key,
                                    plain_bytes)
from hisbridge.chain.decode import _loads
from hisbridge.chain.quality import _guarded, check_record
from hisbridge.chain.quality.columns import _in_date_order, clean_records
from hisbridge.chain.quality.field_rules import is_missing, type_matches
from hisbridge.chain.quality.reasons import Reason
from hisbridge.chain.quality.record_rules import check_date_order
from hisbridge.chain.quality.registry import (FIELD_RULES,
                                              IMPLICIT_FIELD_RULES,
                                              IMPLICIT_RECORD_RULES,
                                              TABLE_CHECKS)
from hypothesis import given, settings
from hypothesis import strategies as st

REPORT = dt.datetime(2026, 3, 20, 18, 0)
KEY = parse_key(os.urandom(16).hex(), "test-only random key")


def reference_check_record(table, record, *, report_time=None) -> list[Reason]:
    """check_record as it was before the plan: every rule interpreted from the catalog per record."""
    if not isinstance(record, dict):
        return [Reason("malformed_record", None, f"记录应为字段映射，实际为 {type(record).__name__}",
                       f"a record is a mapping of fields, got {type(record).__name__}")]
    known = set(table.field_names)
    reasons = [Reason("unknown_field", str(name), f"字段 {str(name)[:40]!r} 不在目录表 {table.name} 中",
                      f"field {str(name)[:40]!r} is not in catalog table {table.name}")
               for name in record if name not in known]
    for field in table.fields:
        value = record.get(field.name)
        for rule in IMPLICIT_FIELD_RULES:
            found = _guarded(rule, field.name, field, record, {}, table)
            reasons += found
            if found and rule.__name__ in ("check_zero_date", "check_required", "check_type"):
                break
        if is_missing(value) or not type_matches(field, value):
            continue
        for params in field.rules:
            rule = FIELD_RULES.get(params["rule"])
            if rule is not None:
                reasons += _guarded(rule, field.name, field, record, params, table)
    typed = {f.name: record.get(f.name) for f in table.fields
             if not is_missing(record.get(f.name)) and type_matches(f, record.get(f.name))}
    for rule in IMPLICIT_RECORD_RULES:
        reasons += _guarded(rule, None, table, typed, {}, report_time)
    for params in table.checks:
        rule = TABLE_CHECKS.get(params["rule"])
        if rule is not None:
            reasons += _guarded(rule, None, table, typed, params, report_time)
    return reasons


@cache
def _catalog():
    return load_catalog()


def _codes(table, field) -> list[str]:
    valueset = table.valuesets.get(field.valueset) if field.valueset else None
    return sorted(valueset.codes)[:5] if valueset else []


EDGE = [None, "", "  ", "-", "x" * 300, "0", "01", "99", "1", "2", "9", "03.01", "03.99", "A09.900x003", "J06.900",
        "11010519491231002X", "110105194912310021", "91350100M000100Y43", "13800138000", "020-12345678", "510000",
        "M8140/3", "BGG000", "00.0100", 0, -1, 1, 2 ** 31, True, 1.5, Decimal("0.00"), Decimal("-1.00"),
        Decimal("12.345"), Decimal("1E+3"), Decimal("NaN"), Decimal("99999999999.99"), Decimal("100000000000.00"),
        dt.date(1900, 1, 1), dt.date(2026, 3, 1), dt.date(2030, 1, 1), dt.datetime(2026, 3, 1, 18),
        dt.datetime(2030, 1, 1), dt.datetime(2026, 3, 1, 10, tzinfo=dt.timezone.utc), b"x", ["01"]]


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 10_000), st.data())
def test_quality_plan_gives_exactly_the_reasons_of_the_interpreted_rules(seed, data):
    catalog = _catalog()
    table = catalog.tables[data.draw(st.sampled_from(sorted(catalog.tables)))]
    record: Any = sample_record(table, random.Random(seed))
    assert check_record(table, record, report_time=REPORT) == reference_check_record(table, record,
                                                                                     report_time=REPORT)
    names = [f.name for f in table.fields]
    for name in data.draw(st.lists(st.sampled_from(names), max_size=6)):
        field = table.field(name)
        record[name] = data.draw(st.sampled_from(EDGE + _codes(table, field)) | st.text(max_size=4)
                                 | st.integers(-5, 10**6) | st.decimals(places=2, allow_nan=False))
    if data.draw(st.integers(0, 9)) == 0:
        record["not_in_catalog"] = 1
    report = data.draw(st.sampled_from([REPORT, None, dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)]))
    assert check_record(table, record, report_time=report) == reference_check_record(table, record,
                                                                                     report_time=report)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 8), st.data())
def test_a_batch_proven_clean_column_by_column_has_no_reason_record_by_record(seed, size, data):
    catalog = _catalog()
    table = catalog.tables[data.draw(st.sampled_from(sorted(catalog.tables)))]
    rng = random.Random(seed)
    records: list[Any] = [sample_record(table, rng) for _ in range(size)]
    # catalog samples are clean: the batch proof must see that, or the fast path would never be taken
    assert clean_records(table, records, report_time=REPORT) == [True] * size
    names = [f.name for f in table.fields]
    for i in data.draw(st.lists(st.integers(0, size - 1), max_size=4)):
        for name in data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3)):
            records[i][name] = data.draw(st.sampled_from(EDGE + _codes(table, table.field(name)))
                                         | st.text(max_size=4) | st.integers(-5, 10**6)
                                         | st.decimals(places=2, allow_nan=False))
        if data.draw(st.integers(0, 9)) == 0:
            records[i]["not_in_catalog"] = 1
    report = data.draw(st.sampled_from([REPORT, None, dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)]))
    for record, clean in zip(records, clean_records(table, records, report_time=report)):
        reasons = check_record(table, record, report_time=report)
        assert not (clean and reasons), (record, reasons)


def test_quality_plan_follows_a_new_table_object(monkeypatch):
    """Plans are per Table object: a changed catalog (a new Table) gets its own plan."""
    from dataclasses import replace
    table = _catalog().tables["mjzzlxx"]
    record = sample_record(table, random.Random(1))
    assert check_record(table, record, report_time=REPORT) == []
    stricter = replace(table, fields=tuple(replace(f, required=True) if f.name == "jkkh" else f
                                            for f in table.fields))
    record["jkkh"] = None
    assert [r.rule for r in check_record(stricter, record, report_time=REPORT)] == ["required"]
    assert check_record(stricter, record, report_time=REPORT) == reference_check_record(stricter, record,
                                                                                        report_time=REPORT)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e"]),
                       st.none() | st.text(max_size=40) | st.integers() | st.dates() | st.datetimes()
                       | st.binary(max_size=40)),
       st.lists(st.sampled_from(["a", "b", "c", "d", "x"]), max_size=5),
       st.sampled_from([Sm4Settings(), Sm4Settings(encoding="base64"), Sm4Settings(uppercase=True),
                        Sm4Settings(mode="cbc", iv=bytes(range(16)))]))
def test_encrypt_fields_equals_field_by_field_encryption(record, fields, sm4):
    expected = dict(record)
    for name in fields:
        if expected.get(name) is not None:
            expected[name] = encode_cipher(encrypt_bytes(plain_bytes(expected[name]), KEY, sm4), sm4)
    assert encrypt_fields(record, fields, KEY, sm4) == expected


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.text(max_size=6)
    | st.decimals(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_json_loading_is_exact_whatever_the_numbers(value):
    text = _dump(value)
    expected = json.loads(text, parse_float=Decimal)
    for data in (text, text.encode("utf-8")):
        got = _loads(data)
        assert got == expected and _types(got) == _types(expected)


@pytest.mark.parametrize("text", ['{"a":NaN}', '{"a":"\\ud800"}', '\ufeff{"a":1}', '{"a":1e400}',
                                  '{"a":18446744073709551616}', '{"a":-0.0}', '{"a":1,"a":2}'])
def test_json_loading_edge_cases_match_json(text):
    try:
        expected: Any = json.loads(text, parse_float=Decimal)
    except ValueError as exc:
        expected = type(exc)
    try:
        got: Any = _loads(text)
    except ValueError as exc:
        got = type(exc)
    assert repr(got) == repr(expected)


def _dump(o) -> str:
    """JSON text in which every Decimal is written as a number with a fraction or exponent."""
    if isinstance(o, Decimal):
        return str(o) if "E" in str(o) or "." in str(o) else str(o) + ".0"
    if isinstance(o, list):
        return "[" + ",".join(_dump(v) for v in o) + "]"
    if isinstance(o, dict):
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + _dump(v) for k, v in o.items()) + "}"
    return json.dumps(o, ensure_ascii=False)


def _types(value):
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value).__name__


def test_date_order_is_proven_column_by_column_exactly_as_the_rule_compares():
    table = _catalog().tables["mjzzlxx"]
    params = next(p for p in table.checks if p["rule"] == "date_order")     # csrq (date), jzsj, scsj
    rng = random.Random(5)
    records = [sample_record(table, rng) for _ in range(6)]
    first, second, third = records[:3]
    born_that_day = dict(first, csrq=first["jzsj"].date())               # a date against a time: by day
    sent_before = dict(second, scsj=second["jzsj"] - dt.timedelta(microseconds=1))
    aware = dict(third, jzsj=third["jzsj"].replace(tzinfo=dt.timezone.utc))   # read as Shanghai time: no proof
    as_text = dict(third, jzsj=str(third["jzsj"]))
    for batch, proven in ((records, True), ([born_that_day, *records], True), ([*records, sent_before], False),
                          ([aware, *records], False), ([as_text, *records], False)):
        assert _in_date_order(table, batch, params, None) is proven
        if proven:
            assert all(check_date_order(table, r, params, None) == [] for r in batch)
    assert [r.rule for r in check_date_order(table, sent_before, params, None)] == ["date_order"]
    assert clean_records(table, [*records, sent_before], report_time=REPORT) == [True] * 6 + [False]
