"""Quarantine entries: a rejected record with every reason, as one JSON document on `core.quarantine`.

    {"table": "mjzzlxx",                 # catalog table, or "_unknown" when the envelope was unreadable
     "key": "V260301000007",             # business key when it could be computed, else null
     "reasons": [{"rule": "unmapped_code", "field": "xb", "message": "…"}],
     "source": {"topic": …, "db": …, "schema": …, "table": …, "lsn": …, "tx_id": …, "commit_time_ms": …,
                "snapshot": false},
     "batch": "2026-03-01" | null,
     "record": {…} | null,               # encrypt fields already SM4-encrypted: never plaintext
     "key_version": "sm3:1a2b3c4d",      # the SM4 key the record's ciphertexts are under
     "first_seen": "2026-03-01T18:03:12.123456+08:00",
     "format": 1}

Values in `record` are JSON-safe text: date/date-time ISO-8601, Decimal as a string, bytes as Base64.
`parse_entry` reads the document back (record values stay in that text form: replay re-derives records
from the source anyway, the record here is for people).
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Mapping

FORMAT = 1
UNKNOWN_TABLE = "_unknown"


class QuarantineFormatError(ValueError):
    """A message on the quarantine topic that is not a quarantine entry."""


@dataclass(frozen=True)
class QuarantineEntry:
    table: str
    reasons: tuple[Mapping[str, Any], ...]     # {rule, field, message}
    source: Mapping[str, Any]
    batch: str | None
    record: Mapping[str, Any] | None           # encrypted identity fields only
    key_version: str | None
    first_seen: str
    key: str | None = None
    headers: tuple[tuple[str, bytes], ...] = field(default=(), compare=False)

    @property
    def rules(self) -> list[str]:
        return [r["rule"] for r in self.reasons]


def json_safe(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def entry_dict(entry: QuarantineEntry) -> dict[str, Any]:
    return {"table": entry.table, "key": entry.key,
            "reasons": [{"rule": r.get("rule"), "field": r.get("field"), "message": r.get("message")}
                        for r in entry.reasons],
            "source": json_safe(entry.source), "batch": entry.batch,
            "record": json_safe(entry.record) if entry.record is not None else None,
            "key_version": entry.key_version, "first_seen": entry.first_seen, "format": FORMAT}


def serialize_entry(entry: QuarantineEntry) -> bytes:
    return json.dumps(entry_dict(entry), ensure_ascii=False, sort_keys=True).encode("utf-8")


def parse_entry(data: bytes | str) -> QuarantineEntry:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise QuarantineFormatError(f"not a quarantine entry (not JSON: {exc})") from None
    if not isinstance(doc, dict) or not {"table", "reasons", "source", "first_seen"} <= set(doc):
        raise QuarantineFormatError("not a quarantine entry (needs table, reasons, source, first_seen)")
    if doc.get("format", FORMAT) != FORMAT:
        raise QuarantineFormatError(f"quarantine entry format {doc.get('format')!r} is not {FORMAT}")
    reasons = doc["reasons"]
    if not isinstance(reasons, list) or not all(isinstance(r, dict) and "rule" in r for r in reasons):
        raise QuarantineFormatError("quarantine entry reasons must be a list of {rule, field, message}")
    return QuarantineEntry(table=str(doc["table"]), reasons=tuple(reasons), source=doc["source"] or {},
                           batch=doc.get("batch"), record=doc.get("record"), key_version=doc.get("key_version"),
                           first_seen=str(doc["first_seen"]), key=doc.get("key"))
