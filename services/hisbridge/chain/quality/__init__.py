"""Quality checks (质检) on plain records: `check_record(table, record) -> list[Reason]`, never raising.

Runs on plaintext before encryption, so length limits of encrypted fields apply to the plaintext.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Callable

from hisbridge.catalog.model import Field, Table
from hisbridge.chain.quality.field_rules import is_missing, type_matches
from hisbridge.chain.quality.plan import ABSENT, UNSURE, TablePlan, plan_for
from hisbridge.chain.quality.reasons import Reason
from hisbridge.chain.quality.registry import (IMPLICIT_FIELD_RULES,
                                              IMPLICIT_RECORD_RULES)

__all__ = ["Reason", "check_record"]


def _guarded(rule: Callable[..., list[Reason]], field: str | None, *args: Any) -> list[Reason]:
    """A rule that fails on an input it did not foresee reports that as a reason instead of raising."""
    try:
        return list(rule(*args))
    except Exception as exc:  # noqa: BLE001 — the pipeline must survive any input
        return [Reason("rule_error", field, f"规则 {getattr(rule, '__name__', rule)} 无法检查该值（{type(exc).__name__}）",
                       f"rule {getattr(rule, '__name__', rule)} could not check the value ({type(exc).__name__})")]


def _implicit_reasons(field: Field, record: dict[str, Any], table: Table) -> list[Reason]:
    """The implicit rules as written: a missing or mistyped value stops them after one reason."""
    reasons: list[Reason] = []
    for rule in IMPLICIT_FIELD_RULES:
        found = _guarded(rule, field.name, field, record, {}, table)
        reasons += found
        if found and rule.__name__ in ("check_zero_date", "check_required", "check_type"):
            break
    return reasons


def _field_reasons(plan: TablePlan, table: Table, record: dict[str, Any], typed: dict[str, Any]) -> list[Reason]:
    """Field rules in catalog order; fills `typed` with the present values of the right type."""
    reasons: list[Reason] = []
    get = record.get
    for name, probe, field, explicit in plan.steps:
        value = get(name)
        state = probe(value, record)
        if state == ABSENT:
            continue
        if state == UNSURE:
            reasons += _implicit_reasons(field, record, table)
            if is_missing(value) or not type_matches(field, value):
                continue
        typed[name] = value
        for rule, params, passes in explicit:
            if passes is None or not passes(value):
                reasons += _guarded(rule, name, field, record, params, table)
    return reasons


def check_record(table: Table, record: object, *, report_time: dt.datetime | None = None) -> list[Reason]:
    """Every reason the record is not fit to report; [] when it is."""
    if not isinstance(record, dict):
        return [Reason("malformed_record", None, f"记录应为字段映射，实际为 {type(record).__name__}",
                       f"a record is a mapping of fields, got {type(record).__name__}")]
    plan = plan_for(table)
    known = plan.known
    reasons = [] if known.issuperset(record) else [
        Reason("unknown_field", str(name), f"字段 {str(name)[:40]!r} 不在目录表 {table.name} 中",
               f"field {str(name)[:40]!r} is not in catalog table {table.name}")
        for name in record if name not in known]
    # cross-field rules only see values of the right type, so they need not re-check types
    typed: dict[str, Any] = {}
    reasons += _field_reasons(plan, table, record, typed)
    for rule in IMPLICIT_RECORD_RULES:
        reasons += _guarded(rule, None, table, typed, {}, report_time)
    for rule, params in plan.checks:
        reasons += _guarded(rule, None, table, typed, params, report_time)
    return reasons
