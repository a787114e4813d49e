"""Exact JSON for state values and the coded view of a byte store."""
from __future__ import annotations

import math
from datetime import date, datetime, time
from decimal import Decimal

import pytest
from hisbridge.state.codec import (CodedStore, LoggedStore, decode_value,
                                   encode_value)
from hypothesis import given
from hypothesis import strategies as st


def test_table_values_round_trip_exactly():
    row = {"t": datetime(2026, 3, 1, 17, 59, 59, 999999), "d": date(2026, 3, 1), "h": time(8, 30, 0, 5),
           "m": Decimal("123.40"), "b": b"\x00\xff", "s": "张三", "n": None, "i": 7, "nested": {"1": {"x": [1, "a"]}},
           "looks_tagged": {"$dt": "not a date"}}
    back = decode_value(encode_value(row))
    assert back == row and type(back["m"]) is Decimal and str(back["m"]) == "123.40"


def test_floats_that_json_cannot_hold_and_integers_beyond_64_bits_round_trip_exactly():
    back = decode_value(encode_value({"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "big": 2 ** 70,
                                      "low": -2 ** 64, "tiny": 5e-324, "f": 0.1, "e": 1e16}))
    assert math.isnan(back.pop("nan")) and back == {"inf": math.inf, "-inf": -math.inf, "big": 2 ** 70,
                                                    "low": -2 ** 64, "tiny": 5e-324, "f": 0.1, "e": 1e16}


def test_what_an_older_version_wrote_with_json_dumps_still_reads():
    back = decode_value(b'{"$m":{"x":NaN,"big":18446744073709551615,"d":{"$d":"2026-03-01"}}}')
    assert math.isnan(back["x"]) and back["big"] == 2 ** 64 - 1 and back["d"] == date(2026, 3, 1)


class _Str(str):
    pass


def test_what_json_refused_is_still_refused():
    with pytest.raises(TypeError):
        encode_value({"x": object()})
    with pytest.raises(UnicodeEncodeError):           # a lone surrogate is not UTF-8
        encode_value({"s": "\ud800"})
    assert decode_value(encode_value({"s": _Str("a")})) == {"s": "a"}


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)))     # UTF-8 text: no lone surrogates
_SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT
            | st.decimals(allow_nan=False) | st.dates() | st.datetimes() | st.times() | st.binary(max_size=8))


@given(st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
                    max_leaves=20))
def test_any_row_value_round_trips_exactly(value):
    back = decode_value(encode_value(value))
    assert back == value and type(back) is type(value)

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
