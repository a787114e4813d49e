"""Avro stage: validate a final (encrypted) catalog record against its schema and encode it.

Wire format: Avro single-object encoding (Avro spec, "Single object encoding"):
    0xC3 0x01 | 8-byte little-endian CRC-64-AVRO fingerprint of the schema's Parsing Canonical Form | body
where body is the plain binary (schemaless) encoding. Any Avro library can read it without a registry:
the consumer keeps the schemas it knows by fingerprint (`schemas_by_fingerprint`) and `decode` picks one.

Schemas live in `schemas/avro/<table>.avsc` (directory from `hisbridge.config.avro_dir()`), generated from
the catalog; `load_schema(table)` parses each file once.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint as _fingerprint
from fastavro.schema import to_parsing_canonical_form
from fastavro.validation import validate

from hisbridge import config

MAGIC = b"\xc3\x01"
HEADER_LEN = len(MAGIC) + 8


class AvroCodecError(ValueError):
    """A message that is not single-object Avro, or whose schema is unknown here."""


@dataclass(frozen=True, eq=False)
class AvroSchema:
    name: str                       # full name of the record
    parsed: Any = field(repr=False)  # fastavro's parsed schema
    fingerprint: bytes              # CRC-64-AVRO, little-endian, as in the single-object header
    fields: tuple[tuple[str, Any, bool], ...] = field(repr=False)  # (name, parsed type, has default)
    field_names: frozenset[str] = field(default=frozenset(), repr=False)
    temporal_fields: tuple[str, ...] = field(default=(), repr=False)  # date/time/timestamp logical types
    date_fields: tuple[str, ...] = field(default=(), repr=False)

    @property
    def header(self) -> bytes:
        return MAGIC + self.fingerprint


def schema_from_dict(schema: Mapping[str, Any]) -> AvroSchema:
    """Parse a schema (as read from JSON) and compute its fingerprint once."""
    canonical = to_parsing_canonical_form(schema)
    fp = bytes.fromhex(_fingerprint(canonical, "CRC-64-AVRO"))  # fastavro returns the LE bytes as hex
    parsed = parse_schema(schema)
    record = parsed if isinstance(parsed, dict) else {}
    fields = tuple((f["name"], f["type"], "default" in f) for f in record.get("fields", ()))
    name = record.get("name", str(parsed))
    return AvroSchema(name=name, parsed=parsed, fingerprint=fp, fields=fields,
                      field_names=frozenset(n for n, _, _ in fields),
                      temporal_fields=tuple(n for n, t, _ in fields if _logical_types(t) & _TEMPORAL),
                      date_fields=tuple(n for n, t, _ in fields if "date" in _logical_types(t)))


def schema_path(table: str, directory: Path | None = None) -> Path:
    return (directory or config.avro_dir()) / f"{table}.avsc"


@lru_cache(maxsize=256)
def _load(path: str, mtime_ns: int) -> AvroSchema:
    with open(path, encoding="utf-8") as handle:
        return schema_from_dict(json.load(handle))


def load_schema(table: str, directory: Path | None = None) -> AvroSchema:
    """The schema of `table`; cached, re-read when the file changes (keyed on its mtime)."""
    path = schema_path(table, directory)
    try:
        mtime = path.stat().st_mtime_ns
    except FileNotFoundError:
        raise FileNotFoundError(f"no Avro schema for table {table!r}: {path} does not exist") from None
    return _load(str(path), mtime)


def load_all(directory: Path | None = None) -> dict[str, AvroSchema]:
    """Every `*.avsc` in the directory, by table name (file stem)."""
    folder = directory or config.avro_dir()
    return {p.stem: load_schema(p.stem, folder) for p in sorted(folder.glob("*.avsc"))}


def schemas_by_fingerprint(schemas: Iterable[AvroSchema]) -> dict[bytes, AvroSchema]:
    return {s.fingerprint: s for s in schemas}


# --- validation ----------------------------------------------------------------------------------------

def _logical_types(avro_type: Any) -> set[str]:
    branches = avro_type if isinstance(avro_type, list) else [avro_type]
    return {b.get("logicalType") for b in branches if isinstance(b, dict) and b.get("logicalType")}


_TEMPORAL = frozenset({"date", "time-millis", "time-micros", "timestamp-millis", "timestamp-micros",
                       "local-timestamp-millis", "local-timestamp-micros"})


def _field_problem(name: str, avro_type: Any, value: Any) -> str | None:
    logical = _logical_types(avro_type)
    # a datetime passes fastavro's date check and would silently lose its time of day
    if isinstance(value, datetime) and "date" in logical:
        return f"field {name}: a date-time {value.isoformat()} given for a date field"
    # fastavro takes raw ints for temporal types, even ones no reader can turn back into a date; records
    # here always carry typed values (decode converts), so an int means a mapping bug
    if isinstance(value, int) and logical & _TEMPORAL:
        return f"field {name}: integer {value} given for a {'/'.join(sorted(logical & _TEMPORAL))} field"
    try:
        validate(value, avro_type, field=name, raise_errors=True)
    except Exception as exc:  # noqa: BLE001 — fastavro raises ValidationError, ValueError or TypeError
        return f"field {name}: {_describe(exc, value, avro_type)}"
    return None


def _describe(exc: Exception, value: Any, avro_type: Any) -> str:
    shown = f"{value!r:.60}"
    if exc.__class__.__name__ == "ValidationError":
        return f"value {shown} ({type(value).__name__}) does not match {_type_name(avro_type)}"
    return f"value {shown}: {exc}"


def _type_name(avro_type: Any) -> str:
    if isinstance(avro_type, list):
        return " | ".join(_type_name(t) for t in avro_type)
    if isinstance(avro_type, dict):
        logical = avro_type.get("logicalType")
        if logical == "decimal":
            return f"decimal({avro_type.get('precision')},{avro_type.get('scale', 0)})"
        return logical or str(avro_type.get("type"))
    return str(avro_type)


def validate_record(schema: AvroSchema, record: Mapping[str, Any]) -> list[str]:
    """Every problem of `record` against `schema`, one message per field; [] when it encodes. Never raises."""
    try:
        whole_ok = validate(record, schema.parsed, raise_errors=False)
    except Exception:  # noqa: BLE001 — e.g. a decimal of the wrong scale raises ValueError
        whole_ok = False
    problems = [f"field {k}: not in schema {schema.name}" for k in record if k not in schema.field_names]
    if whole_ok and not problems and not _suspect_temporal(schema, record):
        return []
    for name, avro_type, has_default in schema.fields:
        if name not in record:
            if not has_default:
                problems.append(f"field {name}: missing and the schema has no default")
            continue
        problem = _field_problem(name, avro_type, record[name])
        if problem:
            problems.append(problem)
    if not problems:
        problems.append(f"record does not match schema {schema.name}")  # fastavro said no, fields say yes
    return problems


def _suspect_temporal(schema: AvroSchema, record: Mapping[str, Any]) -> bool:
    return (any(isinstance(record.get(name), int) for name in schema.temporal_fields)
            or any(isinstance(record.get(name), datetime) for name in schema.date_fields))


# --- encoding ------------------------------------------------------------------------------------------

def encode(schema: AvroSchema, record: Mapping[str, Any]) -> bytes:
    """Single-object encoding of `record` (validate first: a bad record raises ValueError/TypeError here)."""
    buffer = io.BytesIO()
    buffer.write(MAGIC)
    buffer.write(schema.fingerprint)
    schemaless_writer(buffer, schema.parsed, record)
    return buffer.getvalue()


def encode_checked(schema: AvroSchema, record: Mapping[str, Any]) -> tuple[bytes, list[str]]:
    """(encoded, []) for a good record, (b"", problems) otherwise: the pipeline's entry point.

    fastavro's writer alone is not a check (it writes any int into an int field, even one no reader can
    turn back into a date), so validation always runs first.
    """
    problems = validate_record(schema, record)
    if problems:
        return b"", problems
    try:
        return encode(schema, record), []
    except Exception as exc:  # noqa: BLE001 — validate passed but the writer refused: still a reason
        return b"", [f"record does not encode with schema {schema.name}: {exc}"]


def fingerprint_of(data: bytes) -> bytes:
    if len(data) < HEADER_LEN or data[:2] != MAGIC:
        raise AvroCodecError("not Avro single-object encoding (missing C3 01 marker)")
    return data[2:HEADER_LEN]


def decode(data: bytes, schemas: Mapping[bytes, AvroSchema]) -> dict[str, Any]:
    """Read a single-object-encoded record with the schema its header names."""
    fp = fingerprint_of(data)
    schema = schemas.get(fp)
    if schema is None:
        raise AvroCodecError(f"unknown schema fingerprint {fp.hex()}: regenerate or load the schema")
    return schemaless_reader(io.BytesIO(data[HEADER_LEN:]), schema.parsed, None)
