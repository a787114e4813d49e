"""Reported evaluation rows against the derived figures: one comparison per reported row, and the quality
reason `indicator_mismatch` (both values in it) for a row outside the indicator's tolerance."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable, Mapping

from hisbridge.indicators.definitions import Definitions, Indicator
from hisbridge.indicators.evaluate import Derived

RULE = "indicator_mismatch"

# status of a comparison
OK, MISMATCH, NOT_DERIVABLE, REPORTED_ONLY, UNDEFINED = "ok", "mismatch", "not_derivable", "reported_only", "undefined"
NO_DETAIL = "no_detail"     # the month has no detail rows in hisbridge: nothing to compare with


@dataclass(frozen=True)
class Comparison:
    table: str
    code: str
    name: str
    status: str
    reported: Mapping[str, Decimal | None]     # value, numerator, denominator as reported (zbz, fz, fm)
    derived: Mapping[str, Decimal | None]
    differs: tuple[str, ...] = ()               # which of value / numerator / denominator are out of tolerance

    def reason(self) -> dict[str, Any] | None:
        """The quality reason for a mismatch ({rule, field, message}, the message carrying both values)."""
        if self.status != MISMATCH:
            return None
        parts = "; ".join(f"{what} {figure(self.reported.get(what))} ≠ {figure(self.derived.get(what))}" for what in self.differs)
        field = {"value": "zbz", "numerator": "fz", "denominator": "fm"}[self.differs[0]]
        return {"rule": RULE, "field": field,
                "message": f"指标 {self.code} {self.name} 上报值与明细数据推算值不符（上报 ≠ 推算）：{parts} / "
                           f"indicator {self.code} reported ≠ derived from the detail rows: {parts}",
                "reported": {k: figure(v) for k, v in self.reported.items()},
                "derived": {k: figure(v) for k, v in self.derived.items()}}

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "code": self.code, "name": self.name, "status": self.status,
                "reported": {k: figure(v) for k, v in self.reported.items()},
                "derived": {k: figure(v) for k, v in self.derived.items()}, "differs": list(self.differs)}


def figure(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f") if isinstance(value, Decimal) else str(value)


def _number(value: Any) -> Decimal | None:
    return None if value is None or value == "" else Decimal(str(value))


def _outside(reported: Decimal | None, derived: Decimal | None, abs_tol: float, rel_tol: float) -> bool:
    """A reported figure is checked only when reported; a derived None (a ratio over an empty denominator)
    accepts only no value or 0 — how a hospital commonly fills a rate over nothing (no deaths of no patients)."""
    if reported is None:
        return False
    if derived is None:
        return reported != 0
    allowed = max(Decimal(str(abs_tol)), abs(derived) * Decimal(str(rel_tol)))
    return abs(reported - derived) > allowed


def compare_row(table: str, row: Mapping[str, Any], indicators: Mapping[str, Indicator],
                derived: Mapping[str, Derived], reported_only: bool = False) -> Comparison:
    """One reported evaluation row (zbdm, zbmc, zbz, fz, fm) against its indicator's derived figures.
    The value takes the indicator's tolerance in its unit; numerator and denominator, being counts or sums,
    the relative tolerance (and the absolute one of a plain count)."""
    code = str(row.get("zbdm"))
    reported = {"value": _number(row.get("zbz")), "numerator": _number(row.get("fz")),
                "denominator": _number(row.get("fm"))}
    name = row.get("zbmc") or ""
    ind = indicators.get(code)
    if ind is None:
        status = REPORTED_ONLY if reported_only else UNDEFINED
        return Comparison(table, code, name, status, reported, {})
    if not ind.derivable:
        return Comparison(table, code, ind.name, NOT_DERIVABLE, reported, {})
    got = derived[ind.id]
    if got.why:
        return Comparison(table, code, ind.name, NO_DETAIL, reported, {})
    figures = {"value": got.value, "numerator": got.numerator, "denominator": got.denominator}
    tol = {"value": (ind.tolerance_abs, 0.0),
           "numerator": (0.0 if ind.denominator is not None else ind.tolerance_abs, ind.tolerance_rel),
           "denominator": (0.0, ind.tolerance_rel)}
    differs = tuple(what for what in ("value", "numerator", "denominator")
                    if _outside(reported[what], figures[what], *tol[what]))
    return Comparison(table, code, ind.name, MISMATCH if differs else OK, reported, figures, differs)


def compare(table: str, rows: Iterable[Mapping[str, Any]], definitions: Definitions,
            derived: Iterable[Derived]) -> list[Comparison]:
    """Every reported row of one evaluation table for one period, in code order. Key-specialty rows
    (zdzkzb) compare only with indicators defined for their own table."""
    by_code = definitions.by_code(table)
    by_id = {d.id: d for d in derived}
    return sorted((compare_row(table, r, by_code, by_id, definitions.is_reported_only(table, str(r.get("zbdm"))))
                   for r in rows), key=lambda c: c.code)
