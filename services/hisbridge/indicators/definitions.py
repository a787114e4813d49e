"""Indicator definitions: schemas/indicators/*.yaml read into plain frozen values and checked against the
catalog (every table and field a definition names exists), so a typo is a load error, not a zero."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

COMPARATORS = ("eq", "lt", "le", "gt", "ge")


class DefinitionError(ValueError):
    """A definition names something the catalog does not have, or is malformed (file, indicator, what)."""


@dataclass(frozen=True)
class Measure:
    """One aggregate: count rows, sum a field, or count distinct (prefixes of) a field's values, over the rows
    of `table` (the period table, or a child joined to it on `via`) that pass every filter in `where`."""
    table: str
    kind: str                     # count | sum | distinct
    field: str | None = None
    chars: int | None = None
    via: tuple[str, ...] = ()
    where: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class Indicator:
    id: str
    code: str | None
    name: str
    unit: str
    period_table: str | None = None
    period_field: str | None = None
    numerator: Measure | None = None
    denominator: Measure | None = None
    scale: float = 1.0
    tolerance_abs: float = 0.0
    tolerance_rel: float = 0.0
    derivable: bool = True
    why: str = ""
    eval_table: str = "ylfwnl"


@dataclass(frozen=True)
class Definitions:
    indicators: tuple[Indicator, ...]
    # evaluation table → (codes, why); codes ("*",) = every code of that table
    reported_only: Mapping[str, tuple[tuple[str, ...], str]] = field(default_factory=dict)
    # evaluation table → its period field (the catalog's batch_time): where a reported row says its month
    periods: Mapping[str, str] = field(default_factory=dict)

    def is_reported_only(self, table: str, code: str) -> bool:
        codes = self.reported_only.get(table, ((), ""))[0]
        return "*" in codes or code in codes

    def by_code(self, table: str) -> dict[str, Indicator]:
        return {i.code: i for i in self.indicators if i.code is not None and i.eval_table == table}


def _measure(raw: Mapping[str, Any], period_table: str, where: str) -> Measure:
    if not isinstance(raw, Mapping):
        raise DefinitionError(f"{where}: a measure is a mapping (count/sum/distinct)")
    kinds = [k for k in ("count", "sum", "distinct") if k in raw]
    if len(kinds) != 1:
        raise DefinitionError(f"{where}: exactly one of count, sum, distinct")
    kind = kinds[0]
    table = raw["count"] if kind == "count" else raw.get("table", period_table)
    table = raw.get("table", table)
    via = tuple(raw.get("via", ()))
    if table != period_table and not via:
        raise DefinitionError(f"{where}: table {table} is not the period table {period_table}: give `via` (its key fields)")
    return Measure(table=table, kind=kind, field=None if kind == "count" else raw[kind], chars=raw.get("chars"),
                   via=via, where=tuple(raw.get("where", ())))


def _check_fields(measure: Measure, period_table: str, columns: Mapping[str, set[str]], where: str) -> None:
    def need(table: str, name: str) -> None:
        if table not in columns:
            raise DefinitionError(f"{where}: no catalog table {table}")
        if name not in columns[table]:
            raise DefinitionError(f"{where}: no field {table}.{name}")

    def conditions(table: str, conds, parent: str) -> None:
        for cond in conds:
            if "exists" in cond:
                sub = cond["exists"]
                for key in sub.get("join", ()):
                    need(sub["table"], key)
                    need(parent, key)
                conditions(sub["table"], sub.get("where", ()), sub["table"])
                continue
            if "field" not in cond:
                raise DefinitionError(f"{where}: a filter names a field or is an exists: {dict(cond)}")
            ops = [k for k in cond if k != "field"]
            if len(ops) != 1 or ops[0] not in ("in", "not_null", *COMPARATORS):
                raise DefinitionError(f"{where}: filter on {cond['field']} takes one of in, not_null, {', '.join(COMPARATORS)}")
            need(table, cond["field"])

    need(measure.table, measure.field) if measure.field else need(measure.table, "xgbz")
    for key in measure.via:
        need(measure.table, key)
        need(period_table, key)
    conditions(measure.table, measure.where, measure.table)


def parse(doc: Mapping[str, Any], columns: Mapping[str, set[str]], source: str = "<definitions>") -> Definitions:
    """Definitions from one parsed YAML document; `columns` maps each catalog table to its field names."""
    indicators = []
    seen = set()
    for raw in doc.get("indicators", ()):
        where = f"{source}: {raw.get('id', '?')}"
        if raw.get("id") in seen or not raw.get("id"):
            raise DefinitionError(f"{where}: every indicator has a unique id")
        seen.add(raw["id"])
        common = dict(id=raw["id"], code=raw.get("code"), name=raw["name"], unit=raw.get("unit", ""),
                      eval_table=raw.get("table", "ylfwnl"))
        if raw.get("derivable", True) is False:
            if not raw.get("why"):
                raise DefinitionError(f"{where}: a non-derivable indicator says why")
            indicators.append(Indicator(**common, derivable=False, why=raw["why"]))
            continue
        period = raw.get("period") or {}
        if "table" not in period or "field" not in period:
            raise DefinitionError(f"{where}: period needs table and field")
        ptable, pfield = period["table"], period["field"]
        if ptable not in columns or pfield not in columns[ptable]:
            raise DefinitionError(f"{where}: no field {ptable}.{pfield}")
        num = _measure(raw["numerator"], ptable, f"{where} numerator")
        den = _measure(raw["denominator"], ptable, f"{where} denominator") if raw.get("denominator") else None
        for m, label in ((num, "numerator"), (den, "denominator")):
            if m is not None:
                _check_fields(m, ptable, columns, f"{where} {label}")
        tol = raw.get("tolerance") or {}
        indicators.append(Indicator(**common, period_table=ptable, period_field=pfield, numerator=num,
                                    denominator=den, scale=float(raw.get("scale", 1)),
                                    tolerance_abs=float(tol.get("abs", 0)), tolerance_rel=float(tol.get("rel", 0))))
    reported = {}
    for item in doc.get("reported_only") or ():
        if item.get("table") not in columns or not item.get("why"):
            raise DefinitionError(f"{source}: reported_only names a catalog table and says why: {item}")
        codes = item.get("codes", ())
        reported[item["table"]] = (("*",) if codes == "*" else tuple(str(c) for c in codes), item["why"])
    return Definitions(tuple(indicators), reported)


def load(folder: Path, catalog) -> Definitions:
    """Every *.yaml of the folder, in name order, as one set of definitions over the catalog's fields."""
    columns = catalog_columns(catalog)
    indicators: list[Indicator] = []
    reported: dict[str, tuple[tuple[str, ...], str]] = {}
    for path in sorted(Path(folder).glob("*.yaml")):
        part = parse(yaml.safe_load(path.read_text(encoding="utf-8")) or {}, columns, path.name)
        indicators += part.indicators
        reported.update(part.reported_only)
    ids = [i.id for i in indicators]
    if len(ids) != len(set(ids)):
        raise DefinitionError(f"{folder}: an indicator id is defined twice")
    tables = {i.eval_table for i in indicators} | set(reported)
    return Definitions(tuple(indicators), reported, {t: catalog.tables[t].batch_time for t in sorted(tables)})


def catalog_columns(catalog) -> dict[str, set[str]]:
    return {name: {f.name for f in table.fields} for name, table in catalog.tables.items()}
