"""Avro stage: validate a final (encrypted) catalog record against its schema and encode it.

Wire format: Avro single-object encoding (Avro spec, "Single object encoding"):
    0xC3 0x01 | 8-byte little-endian CRC-64-AVRO fingerprint of the schema's Parsing Canonical Form | body
where body is the plain binary (schemaless) encoding. Any Avro library can read it without a registry:
the consumer keeps the schemas it knows by fingerprint (`schemas_by_fingerprint`) and `decode` picks one.

Schemas live in `schemas/avro/<table>.avsc` (the settings' paths.avro; the checkout's by default), generated
from the catalog; `load_schema(table, directory)` parses each file once.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint as _fingerprint
from fastavro.schema import to_parsing_canonical_form
from fastavro.validation import validate
from hisbridge.settings import defaults

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
    # validate-and-encode compiled for the catalog's simple types; None when the schema uses others
    fast_writer: Any = field(default=None, repr=False, compare=False)

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
                      date_fields=tuple(n for n, t, _ in fields if "date" in _logical_types(t)),
                      fast_writer=compile_writer(fields, MAGIC + fp) if isinstance(parsed, dict) else None)


def schema_path(table: str, directory: Path | None = None) -> Path:
    return (directory or defaults().paths.avro) / f"{table}.avsc"


@lru_cache(maxsize=256)
def _load(path: str, mtime_ns: int) -> AvroSchema:
    with open(path, encoding="utf-8") as handle:
        return schema_from_dict(json.load(handle))


@lru_cache(maxsize=1024)
def _path_text(table: str, directory: Path) -> str:
    return str(schema_path(table, directory))


def load_schema(table: str, directory: Path | None = None) -> AvroSchema:
    """The schema of `table`; cached, re-read when the file changes (keyed on its mtime).

    Called once per record: the file is stat-ed on every call so an edited schema is picked up.
    """
    folder = directory or defaults().paths.avro
    path = _path_text(table, folder)
    try:
        mtime = os.stat(path).st_mtime_ns
    except FileNotFoundError:
        raise FileNotFoundError(f"no Avro schema for table {table!r}: {path} does not exist") from None
    return _load(path, mtime)


def load_all(directory: Path | None = None) -> dict[str, AvroSchema]:
    """Every `*.avsc` in the directory, by table name (file stem)."""
    folder = directory or defaults().paths.avro
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
    # fastavro's validate accepts any str, but Avro strings are UTF-8: a lone surrogate cannot be written
    problems += [f"field {k}: text is not valid UTF-8" for k, v in record.items()
                 if k in schema.field_names and isinstance(v, str) and not _utf8_encodable(v)]
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


def _utf8_encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
    turn back into a date), so validation always runs first. The compiled writer (compile_writer) is that
    validation and encoding in one pass for the values it can prove valid; anything else takes this path.
    """
    if schema.fast_writer is not None:
        data = schema.fast_writer(record)
        if data is not None:
            return data, []
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


# --- compiled writer -------------------------------------------------------------------------------------
# fastavro's validate + schemaless_writer interpret the schema for every value (a union tries its branches,
# a decimal goes through as_tuple twice): ~2 µs a field. The catalog's schemas use six shapes only — string,
# int, decimal(p,s) bytes, date, local-timestamp-micros, each optionally ["null", T] — so each field is
# compiled once into a function that both checks and encodes it. It answers only where the answer is
# certain: a value of exactly the type the catalog produces (str, int in range, Decimal already at the
# field's scale, date, naive datetime), no unknown field, no missing field without a default. Anything
# else returns None and encode_checked takes the full validate + fastavro path, so problems are reported
# exactly as before. tests/unit/test_avro_fastwriter.py checks the bytes against fastavro.

_INT32 = (-(2 ** 31), 2 ** 31 - 1)
_LONG = (-(2 ** 63), 2 ** 63 - 1)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_ONE_BYTE = tuple(bytes((i,)) for i in range(128))
_MAX_CONTEXT_DIGITS = 28
Encoder = Callable[[Any], "bytes | None"]


def _long_bytes(value: int) -> bytes:
    """Avro long: zig-zag, then base-128 varint, low groups first."""
    n = (value << 1) ^ (value >> 63)
    if n < 128:
        return _ONE_BYTE[n]
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SHORT_LENGTH = tuple(_long_bytes(n) for n in range(64))          # lengths that fit one varint byte
_SHORT_LENGTH_2ND = tuple(b"\x02" + _long_bytes(n) for n in range(64))  # the same after union branch 1


def _string(value: Any) -> bytes | None:
    if type(value) is not str:
        return None
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    size = len(raw)
    return (_SHORT_LENGTH[size] if size < 64 else _long_bytes(size)) + raw


def _optional_string(value: Any) -> bytes | None:
    """["null", "string"], the commonest field: inlined, as it runs for most values of every record."""
    if value is None:
        return b"\x00"
    if type(value) is not str:
        return None
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    size = len(raw)
    return (_SHORT_LENGTH_2ND[size] if size < 64 else b"\x02" + _long_bytes(size)) + raw


def _ranged_int(low: int, high: int) -> Encoder:
    def encode(value: Any) -> bytes | None:
        if type(value) is not int or not low <= value <= high:
            return None
        return _long_bytes(value)
    return encode


def _date(value: Any) -> bytes | None:
    return _long_bytes(value.toordinal() - _EPOCH_ORDINAL) if type(value) is date else None


def _timestamp_micros(value: Any) -> bytes | None:
    if type(value) is not datetime or value.tzinfo is not None:
        return None
    return _long_bytes((value - _EPOCH_NAIVE) // timedelta(microseconds=1))


def _decimal(precision: int, scale: int) -> Encoder | None:
    if not 1 <= precision <= _MAX_CONTEXT_DIGITS:
        return None
    quantum = Decimal(1).scaleb(-scale)
    limit = Decimal(1).scaleb(precision - scale)   # at that exponent, |value| < limit ⇔ digits ≤ precision

    def encode(value: Any) -> bytes | None:
        # same_quantum: exponent exactly -scale (False for NaN/Infinity), cheaper than as_tuple()
        if type(value) is not Decimal or not value.same_quantum(quantum) or not -limit < value < limit:
            return None
        unscaled = int(value.scaleb(scale))
        raw = unscaled.to_bytes((abs(unscaled).bit_length() + 8) // 8, "big", signed=True)
        return _long_bytes(len(raw)) + raw
    return encode


def _base_encoder(avro_type: Any) -> Encoder | None:
    if avro_type == "string":
        return _string
    if avro_type == "int":
        return _ranged_int(*_INT32)
    if avro_type == "long":
        return _ranged_int(*_LONG)
    if not isinstance(avro_type, dict):
        return None
    base, logical = avro_type.get("type"), avro_type.get("logicalType")
    if base == "int" and logical == "date":
        return _date
    if base == "long" and logical == "local-timestamp-micros":
        return _timestamp_micros
    if base == "bytes" and logical == "decimal" and isinstance(avro_type.get("precision"), int):
        scale = avro_type.get("scale", 0)
        return _decimal(avro_type["precision"], scale) if isinstance(scale, int) else None
    return None


def _field_encoder(avro_type: Any) -> tuple[Encoder, bool] | None:
    """(encoder of a present value, nullable) for one field's type; None when the type is not one of the
    compiled shapes. Of a nullable field, _optional_string writes union branch 1 itself; for the other types
    the caller writes it (b"\\x02") before the body, and None (b"\\x00")."""
    if not isinstance(avro_type, list):
        encoder = _base_encoder(avro_type)
        return None if encoder is None else (encoder, False)
    if len(avro_type) != 2 or avro_type[0] != "null":
        return None
    if avro_type[1] == "string":
        return _optional_string, True
    inner = _base_encoder(avro_type[1])
    return None if inner is None else (inner, True)


def compile_writer(fields: tuple[tuple[str, Any, bool], ...], header: bytes) -> Callable[[Mapping[str, Any]], bytes | None] | None:
    """record → single-object bytes when every value is certainly valid, else None (see above)."""
    plan = []
    for name, avro_type, has_default in fields:
        compiled = _field_encoder(avro_type)
        if compiled is None:
            return None
        encoder, nullable = compiled
        # a missing field is written from its default: only null defaults of optional fields are compiled
        plan.append((name, encoder, nullable, nullable and has_default, nullable and encoder is not _optional_string))
    steps = tuple(plan)
    # one straight-line function per schema (generated from the plan, as dataclasses do for __init__): no
    # loop, no tuple unpacking, ["null","string"] inlined — the same checks and bytes as encoder by encoder
    env: dict[str, Any] = {"names": frozenset(name for name, *_ in steps), "header": header, "absent": object(),
                           "_SHORT_LENGTH": _SHORT_LENGTH, "_SHORT_LENGTH_2ND": _SHORT_LENGTH_2ND,
                           "_long_bytes": _long_bytes}
    lines = ["def write(record):",
             "    if type(record) is not dict or not names.issuperset(record):",   # a field the schema does not know
             "        return None",
             "    get = record.get",
             "    parts = [header]",
             "    append = parts.append"]
    for i, (name, encoder, nullable, null_default, second_branch) in enumerate(steps):
        lines += [f"    v = get({name!r}, absent)", "    if v is None or v is absent:"]
        if not nullable:
            lines.append("        return None")
        else:
            if not null_default:
                lines += ["        if v is absent:", "            return None"]
            lines.append("        append(b'\\x00')")
        lines.append("    else:")
        if encoder is _optional_string or encoder is _string:
            length = ("_SHORT_LENGTH_2ND[size] if size < 64 else b'\\x02' + _long_bytes(size)"
                      if encoder is _optional_string else "_SHORT_LENGTH[size] if size < 64 else _long_bytes(size)")
            lines += ["        if type(v) is not str:", "            return None",
                      "        try:", "            raw = v.encode('utf-8')",
                      "        except UnicodeEncodeError:", "            return None",
                      "        size = len(raw)", f"        append({length})", "        append(raw)"]
        else:
            env[f"encode_{i}"] = encoder
            lines += [f"        body = encode_{i}(v)", "        if body is None:", "            return None"]
            if second_branch:
                lines.append("        append(b'\\x02')")
            lines.append("        append(body)")
    lines.append("    return b''.join(parts)")
    exec("\n".join(lines), env)  # noqa: S102 — the text is built above from the schema's field names only
    return env["write"]
