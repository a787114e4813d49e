"""Valid plain records for any catalog table, built from the catalog alone (no per-table code).

Construction follows the catalog: values come from value sets, rule parameters (ranges, formats) and
the table's checks (dates in order, stay length from the dates, conditional items filled, ID numbers
checksum-valid and consistent with birth date and sex). Deterministic for a seed. All times sit before
ANCHOR so records are never "after the report time".
"""
from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

from hisbridge.catalog.checksums import (USCC_ALPHABET, make_resident_id,
                                         uscc_check_char)
from hisbridge.catalog.model import Field, Table
from hisbridge.catalog.records import stay_days

ANCHOR = dt.datetime(2026, 3, 16, 9, 0, 0)  # the notice's date: a fixed past moment keeps output stable
_REGIONS = ("440103", "440106", "440304", "440604", "441302", "110105", "310115")
_TEXT = "华南健康医学临床中心门诊住院病区科室服务管理综合示例数据广州深圳佛山东莞珠海江门肇庆惠州汕头湛江路街道号楼"
_SURNAMES = "陈李黄张梁林刘吴罗何郑杨谢郭许曾邓冯"


def _uscc(rng: random.Random) -> str:
    first17 = "12440000" + "".join(rng.choice("0123456789") for _ in range(8)) + rng.choice(USCC_ALPHABET[:10])
    return first17 + uscc_check_char(first17)


def _text(rng: random.Random, length: int | None, key: bool, index: int) -> str:
    limit = length or 50
    if key:  # business keys: unique, digits
        return f"{index + 1:010d}"[-min(limit, 10):]
    if limit <= 4:
        return "".join(rng.choice("0123456789") for _ in range(limit))
    if limit <= 40:  # short free text reads like a person's name
        return rng.choice(_SURNAMES) + "".join(rng.choice(_TEXT) for _ in range(min(limit - 1, 2)))
    return "".join(rng.choice(_TEXT) for _ in range(min(limit, rng.randint(4, 16))))


def _rule(field: Field, name: str) -> dict[str, Any] | None:
    return next((r for r in field.rules if r["rule"] == name), None)


def _pick_code(rng: random.Random, table: Table, field: Field) -> str:
    if field.sample:
        return rng.choice(field.sample)
    codes = [c for c in table.valuesets[field.valueset].codes if field.length is None or len(c) <= field.length]
    return rng.choice(codes)


def _string(rng: random.Random, table: Table, field: Field, index: int) -> str:
    if field.valueset and field.valueset in table.valuesets:
        return _pick_code(rng, table, field)
    if _rule(field, "org_code"):
        return _uscc(rng)
    if _rule(field, "phone"):
        return f"1{rng.choice('3589')}{rng.randint(0, 999_999_999):09d}"
    if _rule(field, "postcode"):
        return f"5{rng.randint(10000, 29999)}"
    if _rule(field, "tcm_code"):
        return f"B{rng.choice('NGWL')}{rng.choice('GJSW')}{rng.randint(0, 999):03d}"
    if _rule(field, "morphology"):
        return rng.choice(("M81400/3", "M80700/3", "M80000/3"))
    return _text(rng, field.length, field.name in table.key, index)


def _number(rng: random.Random, field: Field) -> int | Decimal:
    bounds = _rule(field, "range") or {}
    low = int(bounds.get("min", 0))
    high = min(int(bounds.get("max", low + 5000)), low + 5000)
    if field.kind == "int":
        return rng.randint(low, high)
    scale = field.scale or 0
    return (Decimal(rng.randint(low * 10 ** scale, high * 10 ** scale)) / (10 ** scale)).quantize(
        Decimal(1).scaleb(-scale))


def _period(rng: random.Random, field: Field) -> dt.date:
    rule = _rule(field, "period_start") or {}
    year = rng.randint(2022, ANCHOR.year - 1)
    return dt.date(year, 1, 1) if rule.get("unit") == "year" else dt.date(year, rng.randint(1, 12), 1)


def _moment(rng: random.Random, field: Field, after: dt.date | None) -> dt.date:
    """A time after `after` (or in the recent past), never after ANCHOR; dates without a predecessor
    read as birth dates."""
    if _rule(field, "period_start"):
        return _period(rng, field)
    if after is None and field.kind == "date":
        return dt.date(rng.randint(1940, 2020), rng.randint(1, 12), rng.randint(1, 28))
    if after is None or not isinstance(after, dt.datetime):
        base = ANCHOR - dt.timedelta(days=rng.randint(25, 60), minutes=rng.randint(0, 1439))
    else:
        base = after + dt.timedelta(days=rng.randint(0, 6), minutes=rng.randint(1, 600))
    base = min(base, ANCHOR)
    return base.date() if field.kind == "date" else base.replace(microsecond=0)


def _base_value(rng: random.Random, table: Table, field: Field, index: int) -> Any:
    if field.kind == "string":
        return _string(rng, table, field, index)
    if field.kind in ("int", "decimal"):
        return _number(rng, field)
    return _moment(rng, field, None)


def _temporal_chains(rng: random.Random, table: Table, record: dict[str, Any]) -> None:
    for check in table.checks:
        if check["rule"] != "date_order":
            continue
        previous = None
        for name in check["fields"]:
            if record.get(name) is None:
                record[name] = _moment(rng, table.field(name), previous)
            previous = record[name]


def _apply_checks(rng: random.Random, table: Table, record: dict[str, Any], index: int) -> None:

    for check in table.checks:
        if check["rule"] == "stay_length":
            record[check["days"]] = stay_days(record[check["start"]], record[check["end"]])
        elif check["rule"] == "required_when":
            code = record.get(check["code_field"]) or ""
            if check["from"] <= code[:3] <= check["to"]:
                for name in check["fields"]:
                    if record.get(name) is None:
                        record[name] = _base_value(rng, table, table.field(name), index)
        elif check["rule"] == "positive_when" and record.get(check["if_field"]) == check["equals"]:
            # at the field's scale, as the HIS column and the mapping give it (300.00, not 300)
            record[check["field"]] = Decimal(rng.randint(100, 99999)).scaleb(-2).quantize(
                Decimal(1).scaleb(-(table.field(check["field"]).scale or 0)))


def _identity(rng: random.Random, table: Table, record: dict[str, Any], index: int) -> None:
    for field in table.fields:
        rule = _rule(field, "resident_id")
        if not rule:
            continue
        doc_type = rule.get("doc_type")
        birth, sex = record.get(rule.get("birth_date", "")), record.get(rule.get("sex", ""))
        if doc_type and record.get(doc_type) != "01":
            record[field.name] = f"E{rng.randint(0, 99_999_999):08d}"
        elif isinstance(birth, dt.date):
            record[field.name] = make_resident_id(rng.choice(_REGIONS), birth, rng.randint(0, 999),
                                                  sex if sex in ("1", "2") else rng.choice("12"))
        else:
            record[field.name] = "-"


def _names(rng: random.Random, table: Table, record: dict[str, Any], index: int) -> None:
    for field in table.fields:
        if not field.name_field:
            continue
        name = table.valuesets[field.valueset].name_of(record.get(field.name)) if field.valueset else None
        if name is not None:
            record[field.name_field] = name
        elif table.field(field.name_field).required:
            record[field.name_field] = _text(rng, table.field(field.name_field).length, False, index)


def sample_record(table: Table, rng: random.Random, index: int = 0) -> dict[str, Any]:
    """One valid plain record; optional fields are left out about a quarter of the time."""
    name_fields = {f.name_field for f in table.fields if f.name_field}
    record: dict[str, Any] = {f.name: None for f in table.fields}
    for field in table.fields:
        if field.sink_stamped or field.name in name_fields or field.is_temporal:
            continue
        if field.required or rng.random() < 0.75:
            record[field.name] = _base_value(rng, table, field, index)
    _temporal_chains(rng, table, record)
    for field in table.fields:
        if field.is_temporal and record[field.name] is None and field.required and not field.sink_stamped:
            record[field.name] = _moment(rng, field, None)
    _apply_checks(rng, table, record, index)
    _identity(rng, table, record, index)
    _names(rng, table, record, index)
    return record


def sample_records(table: Table, n: int = 1, seed: int = 0) -> list[dict[str, Any]]:
    """n records with distinct business keys where the value sets allow it."""
    rng = random.Random(f"{seed}:{table.name}")
    records, seen = [], set()
    for index in range(n):
        for _attempt in range(20):
            record = sample_record(table, rng, index)
            key = tuple(record[k] for k in table.key)
            if key not in seen:
                break
        seen.add(key)
        records.append(record)
    return records
