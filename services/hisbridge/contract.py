"""The wire contract, defined once: what the transform writes and the sink (and the operator tools) read.

Topics
  raw          `<topic prefix>.<schema>.<table>`          Debezium's, compacted; `__debezium-heartbeat.<prefix>`
  core         `<core prefix>.<catalog table>`            Avro single-object records + watermark marks
  quarantine   `<core prefix>.quarantine`                 JSON entries (QuarantineEntry below)
  held         `<app id>.transform-held`                  the transform's records waiting for a reference row
  replay       `<core prefix>.replay`                     re-submissions, apart from live traffic (below)
  groups       `<app id>.transform` (raw topics), `<app id>` (the Faust app of a process running the sink: core
               topics), `<app id>.monitor` (the Faust app of a process running no sink: no topic of its own)

A core record: key = the business key (key fields joined by "|", dates ISO-8601), value = Avro single-object
bytes (chain.avro), identity fields already SM4 ciphertext, a revoke is a record with xgbz = '1'. Headers:
`hisbridge.key_version`, `hisbridge.batch` (batch name), `hisbridge.source` (JSON: db, schema, table, lsn,
tx_id, commit_time_ms), `hisbridge.schema_fp`.
A mark: a record on every partition of every core topic with header `hisbridge.kind` = `watermark` and value
JSON {"connector": name, "commit_time_ms": T}: every source change of that connector committed at or before
T was produced on that partition before the mark. A record without `hisbridge.kind` is data.
A quarantine entry: header `hisbridge.kind` = `quarantine`, key `<table>|<business key>` (none when the key is
unknown), value the JSON document of `QuarantineEntry` (format 1, below).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import orjson
from hisbridge.catalog.records import to_json_value

Headers = tuple[tuple[str, bytes], ...]

# --- topics and groups ----------------------------------------------------------------------------------

HEARTBEAT_TOPIC_PREFIX = "__debezium-heartbeat."


def raw_topic(prefix: str, source: str) -> str:
    """Debezium's topic for HIS table `source` ("schema.table") under the connector's topic.prefix."""
    return f"{prefix}.{source}"


def raw_topics(prefix: str, sources: Iterable[str]) -> list[str]:
    return sorted(raw_topic(prefix, s) for s in sources)


def heartbeat_topic(prefix: str) -> str:
    return f"{HEARTBEAT_TOPIC_PREFIX}{prefix}"


def core_topic(prefix: str, table: str) -> str:
    return f"{prefix}.{table}"


def quarantine_topic(prefix: str) -> str:
    return core_topic(prefix, "quarantine")


def held_topic(app_id: str) -> str:
    return f"{app_id}.transform-held"


def transform_group(app_id: str) -> str:
    """The consumer group of the transform's raw topics (its own: Faust's group uses Faust's assignor)."""
    return f"{app_id}.transform"


# stages whose Faust agents consume through the Faust app's group (the transform has its own consumer)
FAUST_CONSUMING_STAGES = ("sink", "probe")


def faust_app_id(app_id: str, stages: Iterable[str]) -> str:
    """The Faust app's id, hence its consumer group, for a process running `stages`: `<app id>` when one of them
    consumes through Faust, else `<app id>.monitor`. Faust's group has one leader, chosen among every member,
    that holds the on-leader timers (the sink's flush timer) and whose assignor hands the core partitions out:
    a transform-only process in `<app id>` started before a sink-only one took the lead, so the sink process
    staged but its flush timer never ran (batches stayed pending). A process without such an agent stays out."""
    return app_id if set(stages) & set(FAUST_CONSUMING_STAGES) else f"{app_id}.monitor"


# --- headers --------------------------------------------------------------------------------------------

KIND_HEADER = "hisbridge.kind"
KEY_VERSION_HEADER = "hisbridge.key_version"
BATCH_HEADER = "hisbridge.batch"
SOURCE_HEADER = "hisbridge.source"
SCHEMA_FP_HEADER = "hisbridge.schema_fp"
WATERMARK_KIND = b"watermark"
QUARANTINE_KIND = b"quarantine"
SOURCE_FIELDS = ("db", "schema", "table", "lsn", "tx_id", "commit_time_ms")


def position_bytes(source: Mapping[str, Any]) -> bytes:
    """The `hisbridge.source` header: compact JSON of SOURCE_FIELDS, as json.dumps writes it. Of integers,
    None and printable ASCII text orjson writes the same bytes in a tenth of the time (once per record);
    anything else (non-ASCII or control characters, floats, an integer beyond 64 bits) goes through json."""
    position = {k: source.get(k) for k in SOURCE_FIELDS}
    if all(v is None or type(v) is int or (type(v) is str and v.isascii() and v.isprintable())
           for v in position.values()):
        try:
            return orjson.dumps(position)
        except TypeError:
            pass
    return json.dumps(position, separators=(",", ":")).encode()


def record_headers(key_version: str, batch: str, source: Mapping[str, Any], fingerprint: bytes) -> Headers:
    return ((KEY_VERSION_HEADER, key_version.encode()), (BATCH_HEADER, batch.encode()),
            (SOURCE_HEADER, position_bytes(source)), (SCHEMA_FP_HEADER, fingerprint.hex().encode()))


def text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


def is_mark(headers: Mapping[str, bytes]) -> bool:
    return text(headers.get(KIND_HEADER)) == WATERMARK_KIND.decode()


def source_of_headers(headers: Mapping[str, bytes]) -> Mapping[str, Any]:
    """The source position a core record's `hisbridge.source` header carries ({} when absent)."""
    raw = headers.get(SOURCE_HEADER)
    return json.loads(text(raw)) if raw else {}


# --- watermark marks ------------------------------------------------------------------------------------

def mark_value(connector: str, commit_ms: int) -> bytes:
    return json.dumps({"connector": connector, "commit_time_ms": commit_ms}).encode()


def parse_mark(value: bytes | None) -> tuple[str, int]:
    """(connector, commit_time_ms) of a watermark mark; ValueError when it is not one."""
    data = json.loads(text(value))
    connector, ms = data.get("connector"), data.get("commit_time_ms")
    if not connector or not isinstance(ms, int) or isinstance(ms, bool):
        raise ValueError(f"watermark mark needs connector and integer commit_time_ms, got {data!r:.120}")
    return str(connector), ms


# --- the business key -----------------------------------------------------------------------------------

KEY_SEP = "|"


def key_text(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def business_key(fields: Iterable[str], record: Mapping[str, Any]) -> str | None:
    """The key fields' values joined by "|" (dates ISO-8601); None while one of them is empty. The same
    text is the core record's Kafka key, the staging row's key, the quarantine entry's and reconcile's."""
    values = [record.get(k) for k in fields]
    if any(v is None or v == "" for v in values):
        return None
    return KEY_SEP.join(key_text(v) for v in values)


def join_key(*values: Any) -> str:
    """A business key from its values in key order (expectations, tests)."""
    return KEY_SEP.join(key_text(v) for v in values)


def quarantine_key(table: str, key: str | None) -> bytes | None:
    return f"{table}{KEY_SEP}{key}".encode("utf-8") if key else None


# --- quarantine entries ---------------------------------------------------------------------------------
#
#   {"table": "mjzzlxx",                 # catalog table; the HIS table ("his.pat_master") when the change
#                                        # feeds no catalog table (a reference row, an unknown table, an
#                                        # unreadable message of a topic that drives several); "_unknown"
#                                        # only when even the topic names no table
#    "key": "V260301000007",             # business key when it could be computed, else null
#    "reasons": [{"rule": "unmapped_code", "field": "xb", "message": "…"}],
#    "source": {"topic": …, "partition": 0, "offset": 41, "message_key": "{…}",   # the raw message
#               "db": …, "schema": …, "table": …, "lsn": …, "tx_id": …, "commit_time_ms": …,
#               "snapshot": false},
#    "batch": "2026-03-01" | null,
#    "record": {…} | null,               # encrypt fields already SM4-encrypted: never plaintext
#    "key_version": "sm3:1a2b3c4d",      # the SM4 key the record's ciphertexts are under
#    "first_seen": "2026-03-01T18:03:12.123456+08:00",
#    "format": 1}
# Values in `record` are JSON-safe text: date/date-time ISO-8601, Decimal as a string, bytes as Base64.
# `parse_entry` reads the document back (record values stay in that text form: replay re-derives records
# from the source anyway, the record here is for people).

FORMAT = 1
UNKNOWN_TABLE = "_unknown"
SOURCE_MESSAGE_FIELDS = ("topic", "partition", "offset", "message_key")   # every entry's source names its message


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
    headers: Headers = field(default=(), compare=False)

    @property
    def rules(self) -> list[str]:
        return [r["rule"] for r in self.reasons]


def json_safe(value: Any) -> Any:
    """catalog.records.to_json_value, through mappings and lists."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return to_json_value(value)


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


# --- replay ---------------------------------------------------------------------------------------------
#
# One replay topic for every table, so live and replay lag are seen apart and a replay never reorders a
# core partition. Two kinds of message on it, both with header `hisbridge.replay` = the replay's id (the
# operator and reason are in the staging database's hisbridge.replays, written before anything is sent):
#   a record        a core record (Avro, the core headers) re-derived from its source message, plus
#                   `hisbridge.table`; staged like a live one, exactly once per record version and content
#   a batch request header `hisbridge.kind` = `replay_batch`, value JSON {"table": T, "batch": D}: the sink
#                   makes every delivered row of (T, D) pending again, once per replay id

REPLAY_HEADER = "hisbridge.replay"
TABLE_HEADER = "hisbridge.table"
REPLAY_BATCH_KIND = b"replay_batch"


def replay_topic(prefix: str) -> str:
    return core_topic(prefix, "replay")


def replay_record_headers(headers: Headers, replay_id: str, table: str) -> Headers:
    return tuple(headers) + ((REPLAY_HEADER, replay_id.encode()), (TABLE_HEADER, table.encode()))


def replay_batch_value(table: str, batch: str) -> bytes:
    return json.dumps({"table": table, "batch": batch}).encode()


def parse_replay_batch(value: bytes | None) -> tuple[str, str]:
    """(table, batch) of a batch request; ValueError when it is not one."""
    data = json.loads(text(value))
    if not isinstance(data, dict) or not data.get("table") or not data.get("batch"):
        raise ValueError(f"replay batch request needs table and batch, got {data!r:.120}")
    return str(data["table"]), str(data["batch"])
