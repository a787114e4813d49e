"""decode stage: Debezium JSON-converter envelopes → Change / Heartbeat / None / DecodeError."""
from __future__ import annotations

import base64
import json
from datetime import date, datetime, time
from decimal import Decimal

import pytest
from hisbridge.chain.decode import (Change, DecodeError, Heartbeat,
                                    decode_message)
from hypothesis import given
from hypothesis import strategies as st
from support import FIXTURES

FIXTURES = FIXTURES / "debezium"


def load(name: str, compact: bool = True) -> tuple[str, bytes | None, bytes | None]:
    """A fixture as the bytes Kafka would hand over (JsonConverter writes compact JSON)."""
    message = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    kwargs = {"separators": (",", ":")} if compact else {"indent": 2}

    def encode(obj):
        return None if obj is None else json.dumps(obj, ensure_ascii=False, **kwargs).encode("utf-8")
    return message["topic"], encode(message["key"]), encode(message["value"])


def envelope(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def with_after(name: str, **columns) -> bytes:
    message = envelope(name)
    message["value"]["payload"]["after"].update(columns)
    return json.dumps(message["value"]).encode()


@pytest.mark.parametrize("compact", [True, False], ids=["compact", "pretty"])
def test_create_converts_every_postgres_encoding(compact):
    change = decode_message(*load("create", compact))
    assert isinstance(change, Change)
    assert change.op == "c" and change.before is None
    after = change.after
    assert after["visit_time"] == datetime(2026, 3, 1, 17, 59, 59, 999999)   # MicroTimestamp
    assert after["reg_time"] == datetime(2026, 3, 1, 18, 0)                  # Timestamp (ms)
    assert after["created_at"] == datetime(2026, 3, 1, 17, 59, 59, 999999)   # ZonedTimestamp UTC → +08
    assert after["birth_date"] == date(1950, 1, 1)                          # Date
    assert after["visit_clock"] == time(17, 59, 59, 999999)                  # MicroTime
    assert after["fee"] == Decimal("12.34") and str(after["fee"]) == "12.34"  # "BNI=" scale 2
    assert str(after["amount"]) == "-0.120"                                 # VariableScaleDecimal
    assert after["weight"] == 61.5 and isinstance(after["weight"], float)
    assert after["patient_name"] == "张三" and after["id"] == 1001
    assert change.key == {"id": 1001}
    assert change.topic == "his.public.mz_visit"


def test_source_position_is_read_from_the_source_block():
    change = decode_message(*load("create"))
    src = change.source
    assert (src.connector, src.db, src.schema, src.table) == ("postgresql", "his", "public", "mz_visit")
    assert (src.lsn, src.tx_id, src.commit_time_ms) == (24023128, 555, 1772388000123)
    assert src.snapshot is False and src.server == "his"
    assert change.ts_ms == 1772388000456


def test_update_carries_before_and_after():
    change = decode_message(*load("update"))
    assert change.op == "u"
    assert change.before["fee"] == Decimal("12.34") and change.after["fee"] == Decimal("123.45")
    assert change.after["visit_time"] == datetime(2026, 3, 1, 18, 0, 0, 0)


def test_delete_has_before_only_and_tombstone_is_none():
    change = decode_message(*load("delete"))
    assert change.op == "d" and change.after is None and change.before["id"] == 1001
    assert decode_message(*load("tombstone")) is None
    assert decode_message("his.public.mz_visit", b'{"id":1}', b"") is None


def test_snapshot_read_is_marked_snapshot():
    change = decode_message(*load("read"))
    assert change.op == "r" and change.source.snapshot is True and change.source.snapshot_marker == "first"


def test_truncate_has_no_rows():
    change = decode_message(*load("truncate"))
    assert change.op == "t" and change.before is None and change.after is None and change.key is None


def test_heartbeat_is_a_watermark_event():
    beat = decode_message(*load("heartbeat"))
    assert beat == Heartbeat(ts_ms=1772388000000, prefix="his")


def test_connect_precision_nano_and_zoned_time_encodings():
    after = decode_message(*load("connect_mode")).after
    assert after["visit_time"] == datetime(2026, 3, 1, 17, 59, 59, 999000)  # connect Timestamp, ms
    assert after["birth_date"] == date(2026, 3, 1)                          # 20513 days
    assert after["visit_clock"] == time(17, 59, 59, 999000)                 # connect Time, ms of day
    assert after["nano_time"] == datetime(2026, 3, 1, 17, 59, 59, 999999)   # ns truncated to µs
    assert after["nano_clock"] == time(17, 59, 59, 999999)
    assert after["ms_clock"] == time(1, 0)
    assert after["zoned_clock"] == time(17, 59, 59, 500000)                 # 09:59:59.5Z at UTC+8
    assert after["fee"] == Decimal("-2.10")                                 # negative two's complement
    assert after["raw"] == b"\xde\xad\xbe\xef"


def test_schemaless_payload_keeps_raw_values_unless_given_field_schemas():
    topic, key, value = load("schemaless")
    raw = decode_message(topic, key, value)
    assert raw.op == "c" and raw.after["visit_time"] == 1772387999999999 and raw.key == {"id": 1001}
    hints = {"visit_time": {"type": "int64", "name": "io.debezium.time.MicroTimestamp"},
             "fee": {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal",
                     "parameters": {"scale": "2"}}}
    typed = decode_message(topic, key, value, field_schemas=hints)
    assert typed.after["visit_time"] == datetime(2026, 3, 1, 17, 59, 59, 999999)
    assert typed.after["fee"] == Decimal("12.34")


def test_numeric_decimal_format_is_read_exactly():
    message = envelope("create")
    message["value"]["payload"]["after"]["fee"] = "__NUM__"
    text = json.dumps(message["value"]).replace('"__NUM__"', "0.1")  # decimal.format=NUMERIC
    after = decode_message(message["topic"], None, text.encode()).after
    assert after["fee"] == Decimal("0.10") and str(after["fee"]) == "0.10"


def test_zoned_timestamp_with_offset_and_nanoseconds():
    value = with_after("create", created_at="2026-03-01T18:00:00.123456789+09:00")
    after = decode_message("his.public.mz_visit", None, value).after
    assert after["created_at"] == datetime(2026, 3, 1, 17, 0, 0, 123456)


@pytest.mark.parametrize("name, value, words", [
    ("not json", b"{not json", "not JSON"),
    ("not utf-8", b'{"x": "\xff"}', "UTF-8"),
    ("array", b"[1,2]", "JSON object"),
    ("no source", b'{"schema": {}, "payload": {"op": "c", "after": {}}}', "source"),
    ("bad op", b'{"schema": {}, "payload": {"op": "x", "source": {}}}', "unknown op"),
])
def test_unreadable_envelopes_become_reasons(name, value, words):
    result = decode_message("his.public.mz_visit", None, value)
    assert isinstance(result, DecodeError)
    assert words in result.reason and result.topic == "his.public.mz_visit"


@pytest.mark.parametrize("column, bad, words", [
    ("fee", "@@not base64@@", "not valid base64"),
    ("visit_time", "yesterday", "expected an integer"),
    ("visit_time", 9223372036825200000, "outside years"),   # PostgreSQL 'infinity'
    ("created_at", "2026-03-01 10:00", "no offset"),
    ("visit_clock", 86400000000, "outside 00:00–24:00"),   # PostgreSQL allows 24:00:00
    ("amount", {"scale": 2}, "VariableScaleDecimal"),
])
def test_bad_column_names_column_and_position(column, bad, words):
    result = decode_message("his.public.mz_visit", None, with_after("create", **{column: bad}))
    assert isinstance(result, DecodeError)
    assert words in result.reason and f"after.{column}" in result.reason
    assert "lsn=24023128" in result.reason and "lsn=24023128" in result.position


def test_create_without_after_is_an_error():
    message = envelope("create")
    message["value"]["payload"]["after"] = None
    result = decode_message(message["topic"], None, json.dumps(message["value"]).encode())
    assert isinstance(result, DecodeError) and "without an 'after'" in result.reason


def test_payload_separator_inside_a_string_still_decodes():
    message = envelope("create")
    message["value"]["payload"]["after"]["visit_no"] = ',"payload":'
    message["value"]["schema"]["doc"] = ',"payload":{'
    value = json.dumps(message["value"], separators=(",", ":")).encode()
    assert decode_message(message["topic"], None, value).after["visit_no"] == ',"payload":'


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_any_long_timestamp_decodes_or_is_a_reason(micros):
    result = decode_message("his.public.mz_visit", None, with_after("create", visit_time=micros))
    if isinstance(result, Change):
        value = result.after["visit_time"]
        assert (value - datetime(1970, 1, 1)) // (datetime(1970, 1, 1, 0, 0, 0, 1) - datetime(1970, 1, 1)) == micros
    else:
        assert isinstance(result, DecodeError) and "visit_time" in result.reason


@given(st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-10**12, max_value=10**12))
def test_precise_decimal_bytes_round_trip(amount):
    unscaled = int(amount.scaleb(2))
    raw = unscaled.to_bytes(max(1, (unscaled.bit_length() + 8) // 8), "big", signed=True)
    value = with_after("create", fee=base64.b64encode(raw).decode())
    assert decode_message("his.public.mz_visit", None, value).after["fee"] == amount


@given(st.binary(max_size=200))
def test_garbage_never_raises(data):
    result = decode_message("his.public.mz_visit", None, data)
    assert result is None or isinstance(result, (Change, Heartbeat, DecodeError))
