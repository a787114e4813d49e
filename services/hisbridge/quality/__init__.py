"""Quality checks (质检) on plain records: `check_record(table, record) -> list[Reason]`, never raising.

Runs on plaintext before encryption, so length limits of encrypted fields apply to the plaintext.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Callable

from hisbridge.catalog.model import Table
from hisbridge.quality.field_rules import is_missing, type_matches
from hisbridge.quality.reasons import Reason
from hisbridge.quality.registry import (FIELD_RULES, IMPLICIT_FIELD_RULES, IMPLICIT_RECORD_RULES,
                                        TABLE_CHECKS)

__all__ = ["Reason", "check_record"]


def _guarded(rule: Callable[..., list[Reason]], field: str | None, *args: Any) -> list[Reason]:
    """A rule that fails on an input it did not foresee reports that as a reason instead of raising."""
    try:
        return list(rule(*args))
    except Exception as exc:  # noqa: BLE001 — the pipeline must survive any input
        return [Reason("rule_error", field, f"规则 {getattr(rule, '__name__', rule)} 无法检查该值（{type(exc).__name__}）",
                       f"rule {getattr(rule, '__name__', rule)} could not check the value ({type(exc).__name__})")]


def _field_reasons(table: Table, record: dict[str, Any]) -> list[Reason]:
    reasons: list[Reason] = []
    for field in table.fields:
        value = record.get(field.name)
        for rule in IMPLICIT_FIELD_RULES:
            found = _guarded(rule, field.name, field, record, {}, table)
            reasons += found
            if found and rule.__name__ in ("check_required", "check_type"):
                break
        if is_missing(value) or not type_matches(field, value):
            continue
        for params in field.rules:
            rule = FIELD_RULES.get(params["rule"])
            if rule is not None:
                reasons += _guarded(rule, field.name, field, record, params, table)
    return reasons


def check_record(table: Table, record: object, *, report_time: dt.datetime | None = None) -> list[Reason]:
    """Every reason the record is not fit to report; [] when it is."""
    if not isinstance(record, dict):
        return [Reason("malformed_record", None, f"记录应为字段映射，实际为 {type(record).__name__}",
                       f"a record is a mapping of fields, got {type(record).__name__}")]
    known = set(table.field_names)
    reasons = [Reason("unknown_field", str(name), f"字段 {str(name)[:40]!r} 不在目录表 {table.name} 中",
                      f"field {str(name)[:40]!r} is not in catalog table {table.name}")
               for name in record if name not in known]
    reasons += _field_reasons(table, record)
    # cross-field rules only see values of the right type, so they need not re-check types
    typed = {f.name: record.get(f.name) for f in table.fields
             if not is_missing(record.get(f.name)) and type_matches(f, record.get(f.name))}
    for rule in IMPLICIT_RECORD_RULES:
        reasons += _guarded(rule, None, table, typed, {}, report_time)
    for params in table.checks:
        rule = TABLE_CHECKS.get(params["rule"])
        if rule is not None:
            reasons += _guarded(rule, None, table, typed, params, report_time)
    return reasons
