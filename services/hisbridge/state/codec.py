"""Exact JSON for state values, and stores whose writes are logged to a compacted topic.

  encode_value / decode_value   rows and held records → JSON that gives back the same Python values (a plain
                                JSON round trip would turn datetimes and Decimals into text and change what
                                the chain sees after a restart)
  LoggedStore                   a str → bytes dict that keeps its writes, in order, for the wiring to produce
  CodedStore                    the str → Python-value view of such a store through that JSON
"""
from __future__ import annotations

import base64
import json
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Iterable, Iterator, Mapping, MutableMapping

import orjson
from hisbridge.catalog.records import ZERO_DATE


def text(data: bytes | str | None) -> str | None:
    if data is None:
        return None
    return data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data


_PLAIN = frozenset({str, bool, type(None)})
_INT_RANGE = range(-(2 ** 63), 2 ** 64)   # what orjson reads back exactly (beyond: a float)


class _NonFinite:
    """NaN or ±Infinity, which orjson would write as null: json.dumps writes it bare instead (as it always
    did), through `default`."""
    __slots__ = ("value",)

    def __init__(self, value: float) -> None:
        self.value = value


def _bare(value: Any) -> Any:
    if isinstance(value, _NonFinite):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _tag(value: Any) -> Any:
    kind = type(value)
    if kind in _PLAIN:               # most row values: no isinstance walk (Mapping's is an ABC check)
        return value
    if kind is int:
        return value if value in _INT_RANGE else {"$i": str(value)}
    if kind is float:
        return value if value - value == 0.0 else _NonFinite(value)   # NaN and ±Infinity give NaN
    if kind is dict:
        return {"$m": {str(k): _tag(v) for k, v in value.items()}}
    if value is ZERO_DATE:
        return {"$zd": ZERO_DATE.text}
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, date):
        return {"$d": value.isoformat()}
    if isinstance(value, time):
        return {"$t": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$dec": str(value)}
    if isinstance(value, (bytes, bytearray)):
        return {"$b": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, Mapping):
        return {"$m": {str(k): _tag(v) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return [_tag(v) for v in value]
    return value


_UNTAG = {"$dt": datetime.fromisoformat, "$d": date.fromisoformat, "$t": time.fromisoformat, "$dec": Decimal,
          "$b": lambda s: base64.b64decode(s), "$zd": lambda s: ZERO_DATE, "$i": int}


def _untag(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        (tag, inner), = value.items()
        if tag == "$m":
            return {k: _untag(v) for k, v in inner.items()}
        return _UNTAG[tag](inner)
    if kind is list:
        return [_untag(v) for v in value]
    return value


def encode_value(value: Any) -> bytes:
    """Rows and held records → JSON that gives back the same Python values (a plain JSON round trip
    would turn datetimes and Decimals into text and change what transform() sees after a restart)."""
    tagged = _tag(value)
    try:
        # compact UTF-8 JSON as below, which decode_value reads back the same; the passthrough options
        # leave subclasses and dataclasses to json.dumps, which refuses them as it always did
        return orjson.dumps(tagged, option=orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS
                            | orjson.OPT_PASSTHROUGH_DATETIME)
    except TypeError:                 # NaN or ±Infinity, a subclass, a lone surrogate
        return json.dumps(tagged, ensure_ascii=False, separators=(",", ":"), default=_bare).encode("utf-8")


def decode_value(data: bytes | str) -> Any:
    """What encode_value wrote, or an older version's json.dumps (its integers are Debezium's, within 64
    bits: orjson reads those exactly)."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:    # NaN or ±Infinity, written bare by json.dumps
        parsed = json.loads(data)
    return _untag(parsed)


class LoggedStore(MutableMapping[str, bytes]):
    """A str → bytes dict that also keeps its writes, in order, as (key, value or None for a delete): what the
    wiring produces to a compacted topic after each batch. `restore` rebuilds it from that topic."""

    def __init__(self) -> None:
        self.rows: dict[str, bytes] = {}
        self.writes: list[tuple[str, bytes | None]] = []

    def __getitem__(self, key: str) -> bytes:
        return self.rows[key]

    def __setitem__(self, key: str, value: bytes) -> None:
        self.rows[key] = value
        self.writes.append((key, value))

    def __delitem__(self, key: str) -> None:
        del self.rows[key]
        self.writes.append((key, None))

    def __iter__(self) -> Iterator[str]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def drain(self) -> list[tuple[str, bytes | None]]:
        writes, self.writes = self.writes, []
        return writes

    def restore(self, messages: Iterable[tuple[str, bytes | None, bytes | None]]) -> None:
        """The rows as the topic's messages (topic, key, value; offset order) leave them; no write logged."""
        for _, key, value in messages:
            name = text(key)
            if name is None:
                continue
            if value is None:
                self.rows.pop(name, None)
            else:
                self.rows[name] = bytes(value)


class CodedStore(MutableMapping[str, Any]):
    """A str → bytes store (a LoggedStore) seen as str → Python values, through encode_value/decode_value:
    the value a worker wrote and the value it reads back from the topic after a restart decode the same."""

    def __init__(self, raw: MutableMapping[str, bytes]) -> None:
        self.raw = raw

    def __getitem__(self, key: str) -> Any:
        return decode_value(self.raw[key])

    def get(self, key: str, default: Any = None) -> Any:
        data = self.raw.get(key)
        return default if data is None else decode_value(data)

    def __setitem__(self, key: str, value: Any) -> None:
        self.raw[key] = encode_value(value)

    def __delitem__(self, key: str) -> None:
        del self.raw[key]

    def __contains__(self, key: object) -> bool:
        return key in self.raw

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.raw))

    def __len__(self) -> int:
        return len(self.raw)
