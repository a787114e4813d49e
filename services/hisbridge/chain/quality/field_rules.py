"""Rules about one field's value. Each is pure: (field, record, params, table) → list of reasons.

The implicit rules (required, type, max_length, valueset, code_name) follow from the field's catalog
attributes; the explicit ones are named in the field's `rules:` list. Values are plain Python values
(str, int, Decimal, date, datetime); a rule that meets a value of the wrong kind returns no reason —
the type rule reports it once.
"""
from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from hisbridge.catalog.checksums import (resident_id_birth_date,
                                         resident_id_sex, resident_id_valid,
                                         uscc_valid)
from hisbridge.catalog.codes import FORMATS
from hisbridge.catalog.model import Field, Table
from hisbridge.catalog.records import ZERO_DATE
from hisbridge.chain.quality.reasons import Reason, shown

INT32 = (-(2 ** 31), 2 ** 31 - 1)
NONE_MARK = "-"  # the front page writes "-" for an item that does not apply
MOBILE_RE = re.compile(r"^(?:\+?86-?)?1[3-9]\d{9}$")
LANDLINE_RE = re.compile(r"^(?:0\d{2,3}-?)?[2-9]\d{6,7}(?:-\d{1,6})?$")
POSTCODE_RE = re.compile(r"^\d{6}$")


def is_missing(value: object) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def _reason(rule: str, field: Field, zh: str, en: str) -> list[Reason]:
    return [Reason(rule, field.name, f"{field.title}（{field.name}）{zh}", f"{field.name}: {en}")]


# --- implicit rules -------------------------------------------------------------------------------

def check_zero_date(field: Field, record: Mapping[str, Any], params: Mapping[str, Any], table: Table) -> list[Reason]:
    """A MySQL/MariaDB zero date ('0000-00-00', recognised by the decode stage): no day to report."""
    if record.get(field.name) is ZERO_DATE:
        return _reason("zero_date", field, "为零值日期 0000-00-00（源库未填写真实日期）",
                       "is the zero date 0000-00-00 (the HIS holds no real date)")
    return []


def check_required(field: Field, record: Mapping[str, Any], params: Mapping[str, Any], table: Table) -> list[Reason]:
    if field.required and is_missing(record.get(field.name)):
        return _reason("required", field, "为必填项", "is required")
    return []


def type_matches(field: Field, value: object) -> bool:
    """Whether a plain value fits the field's kind (and, for numbers, its size)."""
    if field.kind == "string":
        return isinstance(value, str)
    if field.kind == "int":
        return isinstance(value, int) and not isinstance(value, bool) and INT32[0] <= value <= INT32[1]
    if field.kind == "decimal":
        return _decimal_fits(value, field.precision or 0, field.scale or 0)
    if field.kind == "date":
        return isinstance(value, dt.date) and not isinstance(value, dt.datetime)
    if field.kind == "datetime":
        return isinstance(value, dt.datetime)
    return False


def _decimal_fits(value: object, precision: int, scale: int) -> bool:
    """A Decimal (or int) that can be written at this scale without rounding and fits the precision."""
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        return False
    try:
        number = Decimal(value)
        if not number.is_finite():
            return False
        quantized = number.quantize(Decimal(1).scaleb(-scale))
    except (InvalidOperation, ValueError, OverflowError):
        return False
    return quantized == number and len(quantized.as_tuple().digits) <= precision


def check_type(field: Field, record: Mapping[str, Any], params: Mapping[str, Any], table: Table) -> list[Reason]:
    value = record.get(field.name)
    if is_missing(value) or type_matches(field, value):
        return []
    return _reason("type", field, f"类型应为 {field.type}，实际为 {type(value).__name__}",
                   f"expected {field.type}, got {type(value).__name__}")


def check_max_length(field: Field, record: Mapping[str, Any], params: Mapping[str, Any], table: Table) -> list[Reason]:
    value = record.get(field.name)
    if field.kind != "string" or not isinstance(value, str) or field.length is None or len(value) <= field.length:
        return []
    return _reason("max_length", field, f"长度 {len(value)} 超过 {field.length}",
                   f"length {len(value)} exceeds {field.length}")


def check_valueset(field: Field, record: Mapping[str, Any], params: Mapping[str, Any], table: Table) -> list[Reason]:
    value = record.get(field.name)
    valueset = table.valuesets.get(field.valueset) if field.valueset else None
    if valueset is None or not isinstance(value, str) or is_missing(value) or value in valueset:
        return []
    return _reason("valueset", field, f"代码 {shown(value, field.encrypt)} 不在值域 {valueset.title}（{valueset.standard}）中",
                   f"code {shown(value, field.encrypt)} is not in value set {valueset.name}")


def check_code_name(field: Field, record: Mapping[str, Any], params: Mapping[str, Any], table: Table) -> list[Reason]:
    """Where both the code and its name are present, the name is the value set's name for the code."""
    if not field.name_field or not field.valueset:
        return []
    valueset = table.valuesets.get(field.valueset)
    code, name = record.get(field.name), record.get(field.name_field)
    expected = valueset.name_of(code) if valueset else None
    if expected is None or not isinstance(name, str) or is_missing(name) or name.strip() == expected:
        return []
    return _reason("code_name", field, f"代码 {code!r} 对应名称应为“{expected}”，实际为 {shown(name, False)}",
                   f"code {code!r} is named {expected!r}, record says {shown(name, False)}")


# --- explicit rules (named in the catalog) ---------------------------------------------------------

def check_org_code(field: Field, record: Mapping[str, Any], params: Mapping[str, Any], table: Table) -> list[Reason]:
    value = record.get(field.name)
    if not isinstance(value, str) or is_missing(value) or uscc_valid(value):
        return []
    return _reason("org_code", field, f"{shown(value, field.encrypt)} 不是有效的统一社会信用代码（GB 32100 校验失败）",
                   f"{shown(value, field.encrypt)} is not a valid unified social credit code (GB 32100)")


def check_resident_id(field: Field, record: Mapping[str, Any], params: Mapping[str, Any], table: Table) -> list[Reason]:
    """GB 11643 check character, and birth date/sex agree with the record. Applies when the document
    type field says 01 居民身份证, or — without a document type field — to any value but "-"."""
    value = record.get(field.name)
    doc_type = params.get("doc_type")
    if not isinstance(value, str) or is_missing(value):
        return []
    if doc_type is not None and record.get(doc_type) != "01":
        return []
    if doc_type is None and value.strip() == NONE_MARK:
        return []
    if not resident_id_valid(value):
        return _reason("resident_id", field, "不是有效的居民身份证号码（GB 11643 校验失败）",
                       "is not a valid resident ID number (GB 11643 check failed)")
    reasons: list[Reason] = []
    birth = record.get(params.get("birth_date", ""))
    if isinstance(birth, dt.date) and resident_id_birth_date(value) != _as_date(birth):
        reasons += _reason("resident_id", field, "身份证号中的出生日期与出生日期字段不一致",
                           "birth date in the ID number disagrees with the record's birth date")
    sex = record.get(params.get("sex", ""))
    if sex in ("1", "2") and resident_id_sex(value) != sex:
        reasons += _reason("resident_id", field, "身份证号中的性别与性别字段不一致",
                           "sex in the ID number disagrees with the record's sex")
    return reasons


def _as_date(value: dt.date) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value


def phone_ok(value: str) -> bool:
    text = value.strip()
    return text == NONE_MARK or bool(MOBILE_RE.match(text) or LANDLINE_RE.match(text))


def check_phone(field: Field, record: Mapping[str, Any], params: Mapping[str, Any], table: Table) -> list[Reason]:
    value = record.get(field.name)
    if not isinstance(value, str) or is_missing(value) or phone_ok(value):
        return []
    return _reason("phone", field, "不是有效的手机号、固定电话或“-”",
                   "is not a mobile number, a landline number or '-'")


def check_postcode(field: Field, record: Mapping[str, Any], params: Mapping[str, Any], table: Table) -> list[Reason]:
    value = record.get(field.name)
    if not isinstance(value, str) or is_missing(value) or value == NONE_MARK or POSTCODE_RE.match(value):
        return []
    return _reason("postcode", field, "邮编应为6位数字或“-”", "postcode must be 6 digits or '-'")


def _format_rule(system: str, label: str):
    def check(field: Field, record: Mapping[str, Any], params: Mapping[str, Any], table: Table) -> list[Reason]:
        value = record.get(field.name)
        if not isinstance(value, str) or is_missing(value) or FORMATS[system].match(value):
            return []
        return _reason(f"{system}_format", field, f"{shown(value, field.encrypt)} 不符合{label}编码格式",
                       f"{shown(value, field.encrypt)} does not match the {label} code format")
    check.__name__ = f"check_{system}"
    return check


check_icd10 = _format_rule("icd10", "ICD-10 国家临床版2.0")
check_icd9cm3 = _format_rule("icd9cm3", "ICD-9-CM-3 国家临床版3.0")
check_tcm_code = _format_rule("tcm_code", "中医病证分类（TCM95 / GB/T 15657-2021）")
check_morphology = _format_rule("morphology", "肿瘤形态学（M码）")


def check_range(field: Field, record: Mapping[str, Any], params: Mapping[str, Any], table: Table) -> list[Reason]:
    value = record.get(field.name)
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        return []
    low, high = params.get("min"), params.get("max")
    try:
        inside = (low is None or value >= Decimal(str(low))) and (high is None or value <= Decimal(str(high)))
    except (InvalidOperation, TypeError):
        return []
    if inside:
        return []
    bounds = f"[{'' if low is None else low}, {'' if high is None else high}]"
    return _reason("range", field, f"值 {shown(value, field.encrypt)} 超出范围 {bounds}",
                   f"value {shown(value, field.encrypt)} outside {bounds}")


def check_period_start(field: Field, record: Mapping[str, Any], params: Mapping[str, Any], table: Table) -> list[Reason]:
    """Evaluation periods are written as the first day of the month (or year); back-fill starts 2022-01."""
    value = record.get(field.name)
    if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
        return []
    unit = params.get("unit", "month")
    if value.day != 1 or (unit == "year" and value.month != 1):
        first = "1月1日" if unit == "year" else "1日"
        return _reason("period_start", field, f"统计期应写为当期首日（{first}）",
                       f"a {unit} period is written as its first day")
    earliest = params.get("earliest")
    if earliest and value < dt.date.fromisoformat(str(earliest)):
        return _reason("period_start", field, f"统计期早于 {earliest}", f"period before {earliest}")
    return []
