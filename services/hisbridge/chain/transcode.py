"""Transcode stage (值域转换): the mapped record's local codes → national codes, per field, by value map.

`transcode(table_mapping, record) -> (record, reasons)`. A field with a value map whose local value has
no entry keeps its local value and yields a reason naming the map, the field and the value (rule
"unmapped_code"), so the record is quarantined until the map is fixed and the quarantine replayed.
Empty values (None, "") are left alone: whether they may be empty is the quality stage's question.
"""
from __future__ import annotations

from typing import Any, Mapping

from hisbridge.chain.mapping import TableMapping, ValueMap
from hisbridge.chain.quality.reasons import Reason, shown

UNMAPPED = "unmapped_code"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def unmapped_reason(table: str, field: str, valuemap: ValueMap, value: Any, secret: bool = False) -> Reason:
    text = shown(_text(value), secret)
    return Reason(UNMAPPED, field,
                  f"{table}.{field} 的本院代码 {text} 在值域映射 {valuemap.name} 中没有对应的国家代码",
                  f"{table}.{field}: local code {text} has no entry in value map {valuemap.name}")


def transcode(table: TableMapping, record: Mapping[str, Any]) -> tuple[dict[str, Any], list[Reason]]:
    """A copy of `record` with mapped codes replaced by national ones, and the unmapped-code reasons."""
    out = dict(record)
    reasons: list[Reason] = []
    for fm in table.valuemapped:
        vm = fm.valuemap
        value = out.get(fm.name)
        if value is None or value == "":
            continue
        national = vm.codes.get(_text(value).strip())
        if national is None:
            reasons.append(unmapped_reason(table.table, fm.name, vm, value, fm.target.encrypt))
        else:
            out[fm.name] = national
    for fm in table.named:
        _set_national_name(table, fm.name, fm.name_of, out)
    return out, reasons


def _set_national_name(table: TableMapping, name_field: str, code_field: str, record: dict[str, Any]) -> None:
    """The value set's name for the (national) code, e.g. 20 → 急诊医学科 instead of the HIS's 急诊科."""
    valueset = table.target.valuesets.get(table.target.field(code_field).valueset or "")
    national_name = valueset.name_of(record.get(code_field)) if valueset is not None else None
    if national_name is not None:
        record[name_field] = national_name


def mapped_columns(mapping: Any) -> list[tuple[str, str, ValueMap]]:
    """(source table, column, value map) for every value-mapped field that reads a plain source column —
    what `hisbridge mappings check` queries in the HIS. Deduplicated, in file order."""
    seen: dict[tuple[str, str, str], tuple[str, str, ValueMap]] = {}
    for table in mapping.tables.values():
        sources = {d.alias: d.source for d in table.drivers}
        sources.update({a: mapping.lookups[j.lookup].source for a, j in table.joins.items()})
        for fm in table.fields:
            if fm.valuemap is None or fm.expr.column is None:
                continue
            alias, column = fm.expr.column
            entry = (sources[alias], column, fm.valuemap)
            seen.setdefault((entry[0], column, fm.valuemap.name), entry)
    return list(seen.values())


def unmapped_counts(valuemap: ValueMap, counts: Mapping[Any, int]) -> list[tuple[str, int]]:
    """From (value → row count) as the HIS reports them, the non-empty values the map lacks."""
    return sorted(((_text(v), n) for v, n in counts.items()
                   if v is not None and _text(v).strip() != "" and _text(v).strip() not in valuemap.codes),
                  key=lambda item: (-item[1], item[0]))
