"""The generic evaluator: an indicator's numerator and denominator over one period's detail rows.

Python over rows, not SQL generated per definition: the same rows come from two places (the front-end's typed
columns, the staging database's JSON payloads), a month of one hospital's detail is small (tens of thousands of
rows), and a plain function over dicts is tested without a database. The source (source.py) only narrows the
read to the period; this module decides membership exactly (period month, cancelled rows, joins)."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Iterable, Mapping, Sequence

from hisbridge.indicators.definitions import Indicator, Measure

Rows = Mapping[str, Sequence[Mapping[str, Any]]]    # catalog table → its rows (field → value)

FOUR = Decimal("0.0001")
NO_DETAIL = "该月没有明细数据 / no detail rows for the month"


@dataclass(frozen=True)
class Derived:
    id: str
    code: str | None
    name: str
    unit: str
    numerator: Decimal | None
    denominator: Decimal | None
    value: Decimal | None          # None: not derivable, or a ratio over an empty denominator
    why: str = ""

    def as_dict(self) -> dict[str, Any]:
        def num(x):
            return None if x is None else str(x)
        return {"id": self.id, "code": self.code, "name": self.name, "unit": self.unit,
                "numerator": num(self.numerator), "denominator": num(self.denominator), "value": num(self.value),
                **({"why": self.why} if self.why else {})}


def month_of(value: Any) -> str:
    """'YYYY-MM' of a date, datetime or its ISO text."""
    return str(value)[:7]


def live(row: Mapping[str, Any]) -> bool:
    """A cancelled row (撤销标志 1) is no longer part of the hospital's figures."""
    return str(row.get("xgbz", "0")) != "1"


def _number(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return None


def _compare(value: Any, op: str, bound: Any) -> bool:
    left, right = _number(value), _number(bound)
    if left is None or right is None:
        return False
    return {"eq": left == right, "lt": left < right, "le": left <= right, "gt": left > right,
            "ge": left >= right}[op]


def _key(row: Mapping[str, Any], fields: Iterable[str]) -> tuple:
    """A join key: the organisation code always (one hospital's child never joins another's parent) and the
    definition's key fields."""
    return tuple(str(row.get(f)) for f in ("yljgdm", *fields))


class Joins:
    """The rows of a table grouped by a join key, built once per (table, key fields) and evaluation: an
    `exists` looks up its row's key instead of scanning the child table (a month is 10^4 parents × 10^4
    children)."""

    def __init__(self, rows: Rows) -> None:
        self.rows, self._by = rows, {}

    def children(self, table: str, fields: tuple[str, ...], key: tuple) -> list[Mapping[str, Any]]:
        if (table, fields) not in self._by:
            grouped: dict[tuple, list] = {}
            for r in self.rows.get(table, ()):
                if live(r):
                    grouped.setdefault(_key(r, fields), []).append(r)
            self._by[(table, fields)] = grouped
        return self._by[(table, fields)].get(key, [])


def passes(row: Mapping[str, Any], where: Iterable[Mapping[str, Any]], joins: Joins) -> bool:
    """Every filter holds for the row (a missing value fails every filter but a negated one)."""
    for cond in where:
        if "exists" in cond:
            sub = cond["exists"]
            on = tuple(sub.get("join", ()))
            if not any(passes(r, sub.get("where", ()), joins) for r in joins.children(sub["table"], on, _key(row, on))):
                return False
            continue
        value = row.get(cond["field"])
        if "in" in cond:
            if value is None or str(value) not in {str(v) for v in cond["in"]}:
                return False
        elif "not_null" in cond:
            if (value is None or value == "") == bool(cond["not_null"]):
                return False
        else:
            op = next(k for k in cond if k != "field")
            if not _compare(value, op, cond[op]):
                return False
    return True


def period_rows(indicator: Indicator, month: str, rows: Rows) -> list[Mapping[str, Any]]:
    return [r for r in rows.get(indicator.period_table, ())
            if live(r) and r.get(indicator.period_field) is not None and month_of(r[indicator.period_field]) == month]


def measure(m: Measure, period: list[Mapping[str, Any]], joins: Joins) -> Decimal:
    """The aggregate of one measure over the period's rows (or their children joined on `via`)."""
    if m.via:
        members = [c for r in period for c in joins.children(m.table, m.via, _key(r, m.via))]
    else:
        members = period
    members = [r for r in members if passes(r, m.where, joins)]
    if m.kind == "count":
        return Decimal(len(members))
    if m.kind == "sum":
        return sum((_number(r.get(m.field)) or Decimal(0) for r in members), Decimal(0))
    values = {str(r[m.field])[:m.chars] if m.chars else str(r[m.field]) for r in members if r.get(m.field) not in (None, "")}
    return Decimal(len(values))


def derive(indicator: Indicator, month: str, rows: Rows, joins: Joins | None = None) -> Derived:
    """One indicator for one month ('YYYY-MM'); `joins` shares the join indexes between indicators."""
    base = dict(id=indicator.id, code=indicator.code, name=indicator.name, unit=indicator.unit)
    if not indicator.derivable:
        return Derived(**base, numerator=None, denominator=None, value=None, why=indicator.why)
    period = period_rows(indicator, month, rows)
    if not period:     # no detail of that month in hisbridge (history before go-live): nothing to check against
        return Derived(**base, numerator=None, denominator=None, value=None, why=NO_DETAIL)
    joins = joins or Joins(rows)
    num = measure(indicator.numerator, period, joins)
    if indicator.denominator is None:
        return Derived(**base, numerator=num, denominator=None, value=num)
    den = measure(indicator.denominator, period, joins)
    value = None if den == 0 else (num / den * Decimal(str(indicator.scale))).quantize(FOUR, ROUND_HALF_UP)
    return Derived(**base, numerator=num, denominator=den, value=value)


def derive_all(indicators: Iterable[Indicator], month: str, rows: Rows) -> list[Derived]:
    joins = Joins(rows)
    return [derive(i, month, rows, joins) for i in indicators]
