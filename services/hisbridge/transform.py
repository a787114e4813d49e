"""The transform chain as one pure function: a decoded change → what goes to `core.<table>` / quarantine.

    map (local codes) → transcode (national codes) → quality (plaintext) → SM4 (encrypt fields)
      → Avro validate + encode → batch

Every reason a record has — transcode, quality, Avro, batch — is reported together. Outputs:

  CoreRecord      for `core.<table>`: key = business key (key fields joined by "|"), value = Avro
                  single-object bytes (schema fingerprint in the header), headers carrying the metadata
                  that is not a catalog field: SM4 key version, batch, source position (LSN, commit time).
  QuarantineEntry for `core.quarantine` (see quarantine.py): identity fields already encrypted.
  Waiting         a reference row (patient, department…) is not known yet: the wiring retries when it
                  arrives and, after its bounded wait, calls again with `give_up=True` → quarantine.

Wiring contract: apply `mapping.lookup_updates(change)` to the lookup tables BEFORE calling transform with
the same change (a driver table can also be a lookup of another driver); retry a Waiting output when a
row for `missing.lookup`/`missing.key` arrives. Heartbeats and tombstones never reach here.
Nothing here raises on bad data; a MappingError/Sm4ConfigError is configuration, raised at load time.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping

from hisbridge import avrocodec
from hisbridge.batching import BatchError, assign_batch
from hisbridge.catalog.model import Catalog, Table
from hisbridge.crypto import DEFAULT_SETTINGS, Sm4Key, Sm4Settings, encrypt_fields
from hisbridge.decode import SHANGHAI, Change, DecodeError
from hisbridge.mapping import (Lookups, Mapped, MissingLookup, SourceMapping, Unmappable, is_known_source,
                               map_change)
from hisbridge.quality import check_record
from hisbridge.quarantine import UNKNOWN_TABLE, QuarantineEntry
from hisbridge.transcode import transcode

KEY_SEP = "|"
_FOLLOW_FROM_UNMAPPED = frozenset({"valueset", "code_name", "max_length"})
Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class CoreRecord:
    table: str
    key: str
    value: bytes
    batch: str
    source: Mapping[str, Any]
    key_version: str
    headers: Headers


@dataclass(frozen=True, slots=True)
class Waiting:
    table: str
    missing: MissingLookup
    source: Mapping[str, Any]


Output = CoreRecord | QuarantineEntry | Waiting
SchemaLoader = Callable[[str], avrocodec.AvroSchema]


def source_of(change: Change) -> dict[str, Any]:
    s = change.source
    return {"topic": change.topic, "connector": s.connector, "db": s.db, "schema": s.schema, "table": s.table,
            "lsn": s.lsn, "tx_id": s.tx_id, "commit_time_ms": s.commit_time_ms, "snapshot": s.snapshot,
            "op": change.op}


def business_key(table: Table, record: Mapping[str, Any]) -> str | None:
    values = [record.get(k) for k in table.key]
    if any(v is None or v == "" for v in values):
        return None
    return KEY_SEP.join(v.isoformat() if hasattr(v, "isoformat") else str(v) for v in values)


def _reason(rule: str, field: str | None, message: str) -> dict[str, Any]:
    return {"rule": rule, "field": field, "message": message}


_AVRO_FIELD = re.compile(r"^field (\w+):")


def _avro_reasons(problems: list[str], already: set[str | None]) -> list[dict[str, Any]]:
    """Avro problems for fields no earlier stage already explained (a missing required field would
    otherwise be reported twice, once by quality and once as 'None is not a string')."""
    out = []
    for problem in problems:
        match = _AVRO_FIELD.match(problem)
        field = match.group(1) if match else None
        if field is None or field not in already:
            out.append(_reason("avro_schema", field, problem))
    return out


def _headers(key_version: str, batch: str, source: Mapping[str, Any], fingerprint: bytes) -> Headers:
    position = json.dumps({k: source.get(k) for k in ("db", "schema", "table", "lsn", "tx_id", "commit_time_ms")},
                          separators=(",", ":"))
    return (("hisbridge.key_version", key_version.encode()), ("hisbridge.batch", batch.encode()),
            ("hisbridge.source", position.encode()), ("hisbridge.schema_fp", fingerprint.hex().encode()))


@dataclass(frozen=True)
class _Context:
    catalog: Catalog
    key: Sm4Key
    settings: Sm4Settings
    report_time: datetime | None
    first_seen: str
    schema_of: SchemaLoader


def _finish(ctx: _Context, mapped: Mapped, mapping_table: Any, source: Mapping[str, Any],
            extra: list[dict[str, Any]]) -> Output:
    """transcode → quality → encrypt → avro → batch for one mapped record."""
    table = ctx.catalog.tables[mapped.table]
    record, unmapped = transcode(mapping_table, mapped.record)
    reasons = extra + [r.as_dict() for r in unmapped]
    untranslated = {r.field for r in unmapped}
    # a local code that had no national one is, of course, not in the national value set: say it once
    reasons += [r.as_dict() for r in check_record(table, record, report_time=ctx.report_time)
                if not (r.field in untranslated and r.rule in _FOLLOW_FROM_UNMAPPED)]
    encrypted = encrypt_fields(record, table.encrypted_fields, ctx.key, ctx.settings)
    schema = ctx.schema_of(table.name)
    value, problems = avrocodec.encode_checked(schema, encrypted)
    reasons += _avro_reasons(problems, {r["field"] for r in reasons})
    batch = None
    try:
        batch = assign_batch(table, record).name
    except BatchError as exc:
        if table.batch_time not in {r["field"] for r in reasons}:
            reasons.append(_reason("batch", table.batch_time, str(exc)))
    key = business_key(table, encrypted)
    if reasons or batch is None or key is None:
        if key is None and not reasons:
            reasons.append(_reason("business_key", None, f"business key {list(table.key)} is incomplete"))
        return QuarantineEntry(table.name, tuple(reasons), source, batch, encrypted, ctx.key.version,
                               ctx.first_seen, key)
    return CoreRecord(table.name, key, value, batch, source, ctx.key.version,
                      _headers(ctx.key.version, batch, source, schema.fingerprint))


def _quarantine_missing(ctx: _Context, missing: MissingLookup, source: Mapping[str, Any]) -> QuarantineEntry:
    table = ctx.catalog.tables[missing.table]
    record = encrypt_fields(missing.partial, table.encrypted_fields, ctx.key, ctx.settings)
    try:
        batch = assign_batch(table, record).name
    except BatchError:
        batch = None
    reason = _reason("missing_lookup", None, f"参照数据 {missing.describe()} 在等待期内未到达 / reference row "
                                             f"{missing.describe()} did not arrive within the wait")
    return QuarantineEntry(table.name, (reason,), source, batch, record, ctx.key.version, ctx.first_seen,
                           business_key(table, record))


def transform(change: Change | DecodeError, *, catalog: Catalog, mapping: SourceMapping, lookups: Lookups,
              key: Sm4Key, sm4_settings: Sm4Settings = DEFAULT_SETTINGS, report_time: datetime | None = None,
              give_up: bool = False, now: datetime | None = None,
              schema_of: SchemaLoader = avrocodec.load_schema) -> list[Output]:
    """Every output of one decoded change (none for a change on a reference-only table or outside every
    driver's `when`). `give_up=True` turns a missing lookup into quarantine instead of Waiting."""
    first_seen = (now or datetime.now(SHANGHAI)).isoformat()
    if isinstance(change, DecodeError):
        return [QuarantineEntry(UNKNOWN_TABLE, (_reason("decode_error", None, str(change)),),
                                {"topic": change.topic, "position": change.position}, None, None,
                                key.version, first_seen)]
    source = source_of(change)
    if not is_known_source(mapping, change):
        return [QuarantineEntry(UNKNOWN_TABLE, (_reason("unknown_source_table", None,
                                f"source table {change.source.schema}.{change.source.table} is not in the "
                                f"mapping {mapping.path}"),), source, None, None, key.version, first_seen)]
    ctx = _Context(catalog, key, sm4_settings, report_time, first_seen, schema_of)
    outputs: list[Output] = []
    for result in map_change(mapping, change, lookups):
        if isinstance(result, Mapped):
            outputs.append(_finish(ctx, result, mapping.tables[result.table], source, []))
        elif isinstance(result, MissingLookup):
            outputs.append(_quarantine_missing(ctx, result, source) if give_up
                           else Waiting(result.table, result, source))
        elif isinstance(result, Unmappable):
            outputs.append(QuarantineEntry(result.table, (_reason(result.rule, None, result.message),), source,
                                           None, None, key.version, first_seen))
    return outputs
