"""Which records of a batch certainly have no quality reason, asked column by column.

`clean_records(table, records, report_time=...)` → one bool per record: True only where
`check_record(table, record, report_time=...)` would return []. A False means "not proven", never "bad":
the caller runs check_record on those records, so every reason still comes from the rule functions.

check_record walks each record field by field (one probe call, one explicit-rule loop per field); over a
batch most columns are entirely fine, and that can be proved with one pass of C-level builtins per
question (types, longest value, blank values, value-set membership, numeric bounds). A column that fails
its quick test is re-asked value by value with the per-record probe (quality/plan.py), so only the
records with a doubtful value lose the fast path. Cross-field rules (date order, report time…) still run
per record, on the values check_record would give them. tests/unit/test_chain_fastpaths.py compares this
with check_record on mutated batches of every catalog table.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from itertools import combinations
from operator import methodcaller
from typing import Any, Callable, Mapping, Sequence

from hisbridge.catalog.model import Field, Table
from hisbridge.catalog.records import local_naive
from hisbridge.chain.quality.field_rules import INT32
from hisbridge.chain.quality.memo import per_table
from hisbridge.chain.quality.plan import (_MAX_CONTEXT_DIGITS, UNSURE,
                                          FieldPlan, is_child_code, plan_for)
from hisbridge.chain.quality.record_rules import (check_after_report_time,
                                                  check_date_order,
                                                  event_time_fields)
from hisbridge.chain.quality.registry import IMPLICIT_RECORD_RULES

Records = Sequence[Mapping[str, Any]]
# (present values of the column, the column, the records) → every value would probe PRESENT / ABSENT
ColumnTest = Callable[[list, list, Records], bool]


def _string_test(field: Field, table: Table) -> ColumnTest:
    length = field.length
    valueset = table.valuesets.get(field.valueset) if field.valueset else None
    codes = dict(valueset.codes) if valueset is not None else None
    name_field = field.name_field if valueset is not None else None
    hierarchical = valueset is not None and valueset.hierarchical
    only_str = {str}

    def test(present: list, column: list, records: Records) -> bool:
        if not present:
            return True
        if not set(map(type, present)) <= only_str or not all(map(str.strip, present)):
            return False
        if length is not None and max(map(len, present)) > length:
            return False
        if codes is None:
            return True
        unlisted = set(present) - codes.keys()
        if unlisted and not (hierarchical and all(is_child_code(c, codes) for c in unlisted)):
            return False
        if name_field is None:
            return True
        for code, record in zip(column, records):
            expected = codes.get(code) if code is not None else None     # a sub-code has no name to check
            if expected is not None:
                name = record.get(name_field)
                if isinstance(name, str) and name.strip() and name.strip() != expected:
                    return False
        return True
    return test


def _int_test(field: Field) -> ColumnTest:
    low, high = INT32

    def test(present: list, column: list, records: Records) -> bool:
        return not present or (set(map(type, present)) <= {int} and low <= min(present) and max(present) <= high)
    return test


def _decimal_test(field: Field) -> ColumnTest | None:
    precision, scale = field.precision or 0, field.scale or 0
    if not 1 <= precision <= _MAX_CONTEXT_DIGITS:
        return None
    quantum = Decimal(1).scaleb(-scale)
    limit = Decimal(1).scaleb(precision - scale)

    def test(present: list, column: list, records: Records) -> bool:
        # same_quantum is symmetric and False for NaN/Infinity, so min/max below only see finite values
        return not present or (set(map(type, present)) <= {Decimal} and all(map(quantum.same_quantum, present))
                               and -limit < min(present) and max(present) < limit)
    return test


def _class_test(kind: type) -> ColumnTest:
    def test(present: list, column: list, records: Records) -> bool:
        return not present or set(map(type, present)) <= {kind}
    return test


def _column_test(field: Field, table: Table) -> ColumnTest | None:
    """The probe's question for a whole column (None: no quick test, ask value by value)."""
    if field.kind == "string":
        return _string_test(field, table)
    if field.kind == "int":
        return _int_test(field)
    if field.kind == "decimal":
        return _decimal_test(field)
    if field.kind == "date":
        return _class_test(dt.date)
    if field.kind == "datetime":
        return _class_test(dt.datetime)
    return None


@per_table
def _column_tests(table: Table) -> tuple[tuple[FieldPlan, ColumnTest | None], ...]:
    return tuple((fp, _column_test(fp.field, table)) for fp in plan_for(table).fields)


def _doubtful(table: Table, fp: FieldPlan, test: ColumnTest | None, column: list, records: Records) -> set[int]:
    """Indices of the records whose value of this field is not proven free of quality reasons."""
    present = [v for v in column if v is not None]
    if test is not None and (len(present) == len(column) or not fp.field.required) \
            and test(present, column, records):
        doubtful: set[int] = set()
    else:
        doubtful = {i for i, (v, r) in enumerate(zip(column, records)) if fp.probe(v, r) == UNSURE}
    # explicit rules (and their accept tests) only ever see values of the field's type
    typed = [v for i, v in enumerate(column) if v is not None and i not in doubtful] if doubtful else present
    for rule, params, passes in fp.explicit:
        if passes is not None and all(map(passes, typed)):
            continue
        for i, (value, record) in enumerate(zip(column, records)):
            if value is None or i in doubtful or (passes is not None and passes(value)):
                continue
            if not _silent(rule, fp.field, record, params, table):
                doubtful.add(i)
    return doubtful


def _silent(rule: Callable[..., Any], *args: Any) -> bool:
    """The rule gives no reason (one that raises counts as a reason: check_record reports rule_error)."""
    try:
        return not list(rule(*args))
    except Exception:  # noqa: BLE001 — a rule that cannot decide is not a proof
        return False


def clean_records(table: Table, records: Records, *, report_time: dt.datetime | None = None) -> list[bool]:
    """Per record: True only when check_record(table, record, report_time=report_time) is certainly []."""
    plan = plan_for(table)
    doubtful = {i for i, r in enumerate(records) if type(r) is not dict or not plan.known.issuperset(r)}
    all_dicts = all(type(r) is dict for r in records)
    for fp, test in _column_tests(table):
        name = fp.name
        column = (list(map(methodcaller("get", name), records)) if all_dicts
                  else [r.get(name) if type(r) is dict else None for r in records])
        doubtful |= _doubtful(table, fp, test, column, records)
    clean = [i not in doubtful for i in range(len(records))]
    rules = [(rule, {}) for rule in IMPLICIT_RECORD_RULES] + list(plan.checks)
    if all_dicts:    # a record rule proven silent on the whole batch is not asked record by record
        rules = [(rule, params) for rule, params in rules
                 if not (rule in COLUMN_PROOFS and COLUMN_PROOFS[rule](table, records, params, report_time))]
    if rules:
        for i, record in enumerate(records):
            if clean[i]:
                clean[i] = _cross_field_silent(table, rules, record, report_time)
    return clean


def _none_after_report_time(table: Table, records: Records, params: Mapping[str, Any],
                            report_time: dt.datetime | None) -> bool:
    """check_after_report_time is silent on every record, proven per column: the latest value of each event
    time is not after the report time (all naive datetimes, or all dates compared by day, as not_after does;
    aware or mixed values, or no report time given: no proof, the rule runs per record)."""
    if report_time is None:
        return False
    now = local_naive(report_time)
    for name in event_time_fields(table):
        values = [v for v in map(methodcaller("get", name), records) if v is not None]
        if not values:
            continue
        kinds = set(map(type, values))
        try:
            if kinds == {dt.datetime}:
                latest_ok = max(values) <= now       # aware values: TypeError against a naive now
            elif kinds == {dt.date}:
                latest_ok = max(values) <= now.date()
            else:
                return False
        except TypeError:
            return False
        if not latest_ok:
            return False
    return True


def _in_date_order(table: Table, records: Records, params: Mapping[str, Any],
                   report_time: dt.datetime | None) -> bool:
    """check_date_order is silent on every record, proven per pair of columns: each listed field's values
    all naive datetimes or all dates (anything else: no proof, the rule runs per record), compared as
    not_after does — as datetimes when both carry a time, else by calendar date."""
    columns = []     # (values, timed, values by calendar date)
    for name in params.get("fields", ()):
        values = list(map(methodcaller("get", name), records))
        kinds = set(map(type, values)) - {type(None)}
        if kinds == {dt.datetime} and all(v.tzinfo is None for v in values if v is not None):
            columns.append((values, True, [v.date() if v is not None else None for v in values]))
        elif kinds == {dt.date}:
            columns.append((values, False, values))
        elif kinds:
            return False
    for (first, first_timed, first_days), (second, second_timed, second_days) in combinations(columns, 2):
        a, b = (first, second) if first_timed and second_timed else (first_days, second_days)
        if not all(x <= y for x, y in zip(a, b) if x is not None and y is not None):
            return False
    return True


# record rules with a proof over the whole batch: (table, records, params, report_time) → True only when the
# rule certainly gives no reason for any of the records
COLUMN_PROOFS: dict[Callable[..., Any], Callable[..., bool]] = {
    check_after_report_time: _none_after_report_time,
    check_date_order: _in_date_order,
}


def _cross_field_silent(table: Table, rules: Sequence[tuple[Callable[..., Any], Mapping[str, Any]]],
                        record: Mapping[str, Any], report_time: dt.datetime | None) -> bool:
    """The record rules as check_record runs them. check_record gives them only the present values, but
    a record rule reads fields with `.get` alone (record_rules' contract), so the record itself does."""
    return all(_silent(rule, table, record, params, report_time) for rule, params in rules)
