"""Real Debezium JSON-converter messages (schemas.enable=true) for the unit tests of the transform side:
`envelope` builds one, `Feed` hands out raw events in topic order with increasing offsets and LSNs."""
from __future__ import annotations

import base64
import json
from datetime import date, datetime
from decimal import Decimal

from hisbridge.contract import heartbeat_topic, raw_topic
from hisbridge.runtime.ordering import RawEvent

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
        topic = raw_topic("his", f"his.{table}")
        offset = self.offsets[topic] = self.offsets.get(topic, -1) + 1
        self.lsn += 1
        return RawEvent(topic, 0, offset, b'{"id": 1}', envelope(table, op, before, after, commit_ms, self.lsn))

    def heartbeat(self, ts_ms: int, offset: int = 0) -> RawEvent:
        return RawEvent(heartbeat_topic("his"), 0, offset, None, json.dumps(
            {"schema": {"type": "struct", "name": "io.debezium.connector.common.Heartbeat",
                        "fields": [{"field": "ts_ms", "type": "int64"}]}, "payload": {"ts_ms": ts_ms}}).encode())
