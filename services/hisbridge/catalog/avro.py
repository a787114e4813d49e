"""Avro schemas derived from the catalog (one record schema per table) and datum preparation.

Logical types: date → int/date, datetime → long/local-timestamp-micros (wall-clock Asia/Shanghai),
decimal(p,s) → bytes/decimal. Encrypted fields are strings (the ciphertext). Optional fields, and the
sink-stamped report_datetime, are ["null", T] with default null.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from hisbridge.catalog.model import Field, Table
from hisbridge.catalog.records import local_naive


def avro_type(field: Field) -> Any:
    if field.encrypt or field.kind == "string":
        return "string"
    if field.kind == "int":
        return "int"
    if field.kind == "decimal":
        return {"type": "bytes", "logicalType": "decimal", "precision": field.precision, "scale": field.scale}
    if field.kind == "date":
        return {"type": "int", "logicalType": "date"}
    return {"type": "long", "logicalType": "local-timestamp-micros"}


def _doc(field: Field) -> str:
    parts = [field.title, field.type]
    if field.valueset:
        parts.append(f"值域 {field.valueset}")
    if field.encrypt:
        parts.append("SM4 密文")
    return "；".join(parts)


def avro_field(field: Field) -> dict[str, Any]:
    base = avro_type(field)
    if field.required and not field.sink_stamped:
        return {"name": field.name, "type": base, "doc": _doc(field)}
    return {"name": field.name, "type": ["null", base], "default": None, "doc": _doc(field)}


def avro_schema(table: Table) -> dict[str, Any]:
    return {
        "type": "record",
        "name": table.name,
        "namespace": table.namespace,
        "doc": f"{table.title}（{table.family}，{table.cadence}，批次时间 {table.batch_time}，"
               f"业务主键 {'+'.join(table.key)}）",
        "fields": [avro_field(f) for f in table.fields],
    }


def avro_datum(table: Table, record: dict[str, Any]) -> dict[str, Any]:
    """A complete datum for the table's schema: absent optional fields become None, decimals are
    quantized to the field's scale (Avro rejects a Decimal of another scale), aware datetimes become
    Asia/Shanghai wall-clock."""
    datum: dict[str, Any] = {}
    for field in table.fields:
        value = record.get(field.name)
        if isinstance(value, Decimal) and field.kind == "decimal" and not field.encrypt:
            value = value.quantize(Decimal(1).scaleb(-(field.scale or 0)))
        elif isinstance(value, int) and not isinstance(value, bool) and field.kind == "decimal" and not field.encrypt:
            value = Decimal(value).quantize(Decimal(1).scaleb(-(field.scale or 0)))
        elif isinstance(value, dt.datetime):
            value = local_naive(value)
        datum[field.name] = value
    return datum
