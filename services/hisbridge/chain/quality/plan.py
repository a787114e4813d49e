"""A table's quality rules compiled once: per field, a fast test that the implicit rules have nothing to say.

`check_record` runs every rule on every record. Interpreting the catalog per record (five implicit rule
calls per field, each re-reading the field's attributes and the value set) cost ~200 µs a record; most
values are fine, so the plan first asks a cheap, conservative question per field:

  PRESENT  the value is present, of the field's type, within its length, in its value set and its name
           agrees with the code: the implicit rules give no reason (run the explicit rules)
  ABSENT   the value is None on an optional field: the implicit rules give no reason (and, as before,
           explicit rules do not run on a missing value)
  UNSURE   anything else: the original implicit rules run, exactly as written, and produce the reasons

Only PRESENT/ABSENT skip work, and only where the implicit rules provably return []: every reason, its
text and its order come from the same rule functions as before. Explicit rules (range, ICD formats, phone,
postcode, org code) likewise carry their own accept test, checked first; when it fails, the rule itself
runs. The plan is cached per Table object. tests/unit/test_chain_fastpaths.py holds the original
interpreter and compares the two on mutated records of every catalog table.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Mapping

from hisbridge.catalog.checksums import uscc_valid
from hisbridge.catalog.codes import FORMATS
from hisbridge.catalog.model import Field, Table
from hisbridge.chain.quality import field_rules as fr
from hisbridge.chain.quality.field_rules import INT32
from hisbridge.chain.quality.memo import per_table
from hisbridge.chain.quality.registry import FIELD_RULES, TABLE_CHECKS

PRESENT, ABSENT, UNSURE = 1, 0, -1
Probe = Callable[[Any, Mapping[str, Any]], int]
Passes = Callable[[Any], bool]
_MAX_CONTEXT_DIGITS = 28  # decimal's default context: beyond it quantize raises, so leave those to the rule


@dataclass(frozen=True, slots=True)
class FieldPlan:
    name: str
    field: Field
    probe: Probe                               # PRESENT / ABSENT / UNSURE for (value, record)
    # (rule, params, passes): passes(value) True means the rule certainly returns [] (None: always call it)
    explicit: tuple[tuple[Callable[..., Any], Mapping[str, Any], Passes | None], ...]


@dataclass(frozen=True, slots=True)
class TablePlan:
    known: frozenset[str]
    fields: tuple[FieldPlan, ...]
    checks: tuple[tuple[Callable[..., Any], Mapping[str, Any]], ...]
    # (name, probe, field, explicit) per field: what the per-record loop unpacks (no attribute lookups)
    steps: tuple[tuple[str, Probe, Field, tuple], ...] = ()


def _absent(field: Field) -> int:
    return UNSURE if field.required else ABSENT


def _string_probe(field: Field, table: Table) -> Probe:
    length, missing = field.length, _absent(field)
    valueset = table.valuesets.get(field.valueset) if field.valueset else None
    codes = dict(valueset.codes) if valueset is not None else None
    name_field = field.name_field if valueset is not None else None
    hierarchical = valueset is not None and valueset.hierarchical

    def probe(value: Any, record: Mapping[str, Any]) -> int:
        if value is None:
            return missing
        if type(value) is not str or (length is not None and len(value) > length) or not value.strip():
            return UNSURE
        if codes is None:
            return PRESENT
        expected = codes.get(value)
        if expected is None:
            # a sub-code ("03.01") of a member is a member and has no name of its own to agree with
            return PRESENT if hierarchical and is_child_code(value, codes) else UNSURE
        if name_field is not None:
            name = record.get(name_field)
            if isinstance(name, str) and name.strip() and name.strip() != expected:
                return UNSURE
        return PRESENT
    return probe


def is_child_code(code: str, codes: Mapping[str, str]) -> bool:
    """ValueSet's own test for a member of a hierarchical set that is not listed itself."""
    return "." in code and code.split(".", 1)[0] in codes


def _int_probe(field: Field) -> Probe:
    low, high, missing = INT32[0], INT32[1], _absent(field)

    def probe(value: Any, record: Mapping[str, Any]) -> int:
        if value is None:
            return missing
        return PRESENT if type(value) is int and low <= value <= high else UNSURE
    return probe


def _decimal_probe(field: Field) -> Probe:
    precision, scale, missing = field.precision or 0, field.scale or 0, _absent(field)
    if not 1 <= precision <= _MAX_CONTEXT_DIGITS:
        return lambda value, record: missing if value is None else UNSURE
    quantum = Decimal(1).scaleb(-scale)
    limit = Decimal(1).scaleb(precision - scale)   # at that exponent, |value| < limit ⇔ digits ≤ precision

    def probe(value: Any, record: Mapping[str, Any]) -> int:
        if value is None:
            return missing
        # already at the field's scale: quantize is the identity, so the digits are what would be written
        if type(value) is Decimal and value.same_quantum(quantum) and -limit < value < limit:
            return PRESENT
        return UNSURE
    return probe


def _class_probe(field: Field, kind: type) -> Probe:
    missing = _absent(field)

    def probe(value: Any, record: Mapping[str, Any]) -> int:
        if value is None:
            return missing
        return PRESENT if type(value) is kind else UNSURE
    return probe


def _unsure(value: Any, record: Mapping[str, Any]) -> int:
    return UNSURE


def field_probe(field: Field, table: Table) -> Probe:
    if field.kind == "string":
        return _string_probe(field, table)
    if field.kind == "int":
        return _int_probe(field)
    if field.kind == "decimal":
        return _decimal_probe(field)
    if field.kind == "date":
        return _class_probe(field, dt.date)
    if field.kind == "datetime":
        return _class_probe(field, dt.datetime)
    return _unsure


def _range_passes(params: Mapping[str, Any]) -> Passes | None:
    """check_range returns [] for an int/Decimal inside [min, max] (bounds read as it reads them)."""
    low, high = params.get("min"), params.get("max")
    try:
        low_d = None if low is None else Decimal(str(low))
        high_d = None if high is None else Decimal(str(high))
    except (InvalidOperation, TypeError, ValueError):
        return None
    return lambda v: (type(v) is int or type(v) is Decimal) and (low_d is None or v >= low_d) and \
        (high_d is None or v <= high_d)


def _passes(rule: Callable[..., Any], params: Mapping[str, Any]) -> Passes | None:
    """A cheap test under which this explicit rule certainly returns [] (the rule's own accept test);
    keyed on the function itself, so a rule registered under another name is simply always called."""
    if rule is fr.check_range:
        return _range_passes(params)
    for system in FORMATS:
        if rule is getattr(fr, f"check_{system}", None):
            return lambda v, system=system: type(v) is str and FORMATS[system].match(v) is not None
    if rule is fr.check_phone:
        return lambda v: type(v) is str and fr.phone_ok(v)
    if rule is fr.check_postcode:
        return lambda v: type(v) is str and (v == fr.NONE_MARK or fr.POSTCODE_RE.match(v) is not None)
    if rule is fr.check_org_code:
        return uscc_valid
    return None


def build_plan(table: Table) -> TablePlan:
    fields = tuple(
        FieldPlan(f.name, f, field_probe(f, table),
                  tuple((FIELD_RULES[p["rule"]], p, _passes(FIELD_RULES[p["rule"]], p)) for p in f.rules
                        if FIELD_RULES.get(p["rule"]) is not None))
        for f in table.fields)
    checks = tuple((TABLE_CHECKS[p["rule"]], p) for p in table.checks if TABLE_CHECKS.get(p["rule"]) is not None)
    return TablePlan(frozenset(table.field_names), fields, checks,
                     tuple((f.name, f.probe, f.field, f.explicit) for f in fields))


plan_for = per_table(build_plan)
