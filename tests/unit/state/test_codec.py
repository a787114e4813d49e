"""Exact JSON for state values and the coded view of a byte store."""
from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal

from hisbridge.state.codec import (CodedStore, LoggedStore, decode_value,
                                   encode_value)


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


def test_logged_store_keeps_its_writes_in_order_and_restores_from_a_topic():
    store = LoggedStore()
    store["a"], store["b"] = b"1", b"2"
    del store["a"]
    assert store.drain() == [("a", b"1"), ("b", b"2"), ("a", None)] and store.drain() == []
    restored = LoggedStore()
    restored.restore([("t", b"a", b"1"), ("t", b"b", b"2"), ("t", b"a", None), ("t", None, b"ignored")])
    assert restored.rows == {"b": b"2"} and restored.writes == []
