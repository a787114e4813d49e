"""A month's detail rows for the evaluator, read from one of two places:

- delivered: the front-end database's live rows (xgbz ≠ 1) — what the province holds and checks its
  evaluation figures against, so the truth for `indicators derive` and `check` by default;
- staged: the staging database's rows of every state but superseded (flushed and pending, newest version of
  each key) — the front-end as it will be once the pending rows go out. The sink's cross-check uses it: the
  evaluation rows of month M go out after the daily batches that carry M's detail (or in the same window),
  so staged is what the province will hold when it reads them.

Only the read is SQL (narrowed to the period's month, children by EXISTS on their parent's key); membership is
decided again, exactly, by the evaluator. Table and field names come from the definitions, which were checked
against the catalog at load, and are quoted as identifiers."""
from __future__ import annotations

from datetime import date
from typing import Any, Iterable, Mapping

from psycopg2 import sql

from hisbridge.indicators.definitions import Indicator

SOURCES = ("delivered", "staged")


def month_range(month: str) -> tuple[str, str]:
    """['YYYY-MM-01', first day of the next month) as ISO text (comparable with dates, datetimes and their text)."""
    year, mon = int(month[:4]), int(month[5:7])
    start = date(year, mon, 1)
    end = date(year + (mon == 12), mon % 12 + 1, 1)
    return start.isoformat(), end.isoformat()


def reads(indicators: Iterable[Indicator]) -> dict[tuple[str, str], dict[str, tuple[str, ...]]]:
    """(period table, period field) → {child table: join key fields} to read for them."""
    out: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {}
    for ind in indicators:
        if not ind.derivable:
            continue
        children = out.setdefault((ind.period_table, ind.period_field), {})
        for m in (ind.numerator, ind.denominator):
            if m is None:
                continue
            if m.via:
                children[m.table] = m.via
            for cond in _exists(m.where):
                children[cond["table"]] = tuple(cond.get("join", ()))
    return out


def _exists(where) -> list[Mapping[str, Any]]:
    found = []
    for cond in where:
        if "exists" in cond:
            found.append(cond["exists"])
            found += _exists(cond["exists"].get("where", ()))
    return found


def _frontend_queries(ptable: str, pfield: str, children: Mapping[str, tuple[str, ...]]):
    period = sql.SQL("p.{f} >= %(start)s AND p.{f} < %(end)s").format(f=sql.Identifier(pfield))
    yield ptable, sql.SQL("SELECT to_jsonb(p) FROM {t} p WHERE {period}").format(t=sql.Identifier(ptable), period=period)
    for child, keys in children.items():
        join = sql.SQL(" AND ").join(sql.SQL("p.{k} = c.{k}").format(k=sql.Identifier(k)) for k in ("yljgdm", *keys))
        yield child, sql.SQL("SELECT to_jsonb(c) FROM {c} c WHERE EXISTS (SELECT 1 FROM {t} p WHERE {join} AND {period})"
                             ).format(c=sql.Identifier(child), t=sql.Identifier(ptable), join=join, period=period)


def _staging_queries(ptable: str, pfield: str, children: Mapping[str, tuple[str, ...]]):
    period = sql.SQL("p.tbl = {t} AND p.status <> 'superseded' AND NOT p.revoked "
                     "AND p.payload->>{f} >= %(start)s AND p.payload->>{f} < %(end)s").format(
        t=sql.Literal(ptable), f=sql.Literal(pfield))
    yield ptable, sql.SQL("SELECT p.payload FROM hisbridge.staged p WHERE {period}").format(period=period)
    for child, keys in children.items():
        join = sql.SQL(" AND ").join(sql.SQL("p.payload->>{k} = c.payload->>{k}").format(k=sql.Literal(k))
                                     for k in ("yljgdm", *keys))
        yield child, sql.SQL("SELECT c.payload FROM hisbridge.staged c WHERE c.tbl = {c} AND c.status <> 'superseded' "
                             "AND NOT c.revoked AND EXISTS (SELECT 1 FROM hisbridge.staged p WHERE {period} AND {join})"
                             ).format(c=sql.Literal(child), period=period, join=join)


def detail_rows(cur, indicators: Iterable[Indicator], month: str, source: str = "delivered") -> dict[str, list[dict]]:
    """Catalog table → the rows of `month` (and their children) the indicators need, from `source` (a cursor
    on the front-end database for delivered, on the staging database for staged)."""
    if source not in SOURCES:
        raise ValueError(f"source is one of {SOURCES}")
    start, end = month_range(month)
    queries = _frontend_queries if source == "delivered" else _staging_queries
    rows: dict[str, dict[tuple, dict]] = {}
    for (ptable, pfield), children in reads(indicators).items():
        for table, query in queries(ptable, pfield, children):
            cur.execute(query, {"start": start, "end": end})
            seen = rows.setdefault(table, {})
            for (row,) in cur.fetchall():
                seen[tuple(sorted((k, str(v)) for k, v in row.items()))] = row
    return {table: list(found.values()) for table, found in rows.items()}


def reported_rows(cur, table: str, period_field: str, month: str, source: str = "delivered") -> list[dict]:
    """The evaluation rows of one table for the month (statistics month = its first day); from staging, the
    rows held by the cross-check too (open indicator_mismatch entries: the operator's work list)."""
    start, _ = month_range(month)
    if source == "delivered":
        cur.execute(sql.SQL("SELECT to_jsonb(t) FROM {t} t WHERE t.{f} = %s AND t.xgbz <> '1'").format(
            t=sql.Identifier(table), f=sql.Identifier(period_field)), (start,))
    else:
        cur.execute("SELECT payload FROM hisbridge.staged WHERE tbl = %s AND status <> 'superseded' AND NOT revoked "
                    "AND left(payload->>%s, 10) = %s "
                    "UNION ALL SELECT entry->'record' FROM hisbridge.quarantine WHERE state = 'open' AND tbl = %s "
                    "AND 'indicator_mismatch' = ANY(rules) AND left(entry->'record'->>%s, 10) = %s",
                    (table, period_field, start, table, period_field, start))
    return [row for (row,) in cur.fetchall()]
