"""The source mapping against the HIS's own catalog (information_schema): every table and column the
mapping names must exist, and a column that feeds a catalog field as it is must have a type that can.

Pure: `references(mapping)` lists what the mapping reads, each with the file:line that names it;
`check(references, columns)` compares them with {"schema.table": {column: data_type}} as the HIS reports
it (hisdb.his_columns reads it from PostgreSQL or MariaDB/MySQL). Problems are catalogue messages
(messages.OperatorError parameters), so the CLI prints them in the operator's language.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable, Mapping

from hisbridge.catalog.model import Field
from hisbridge.chain.mapping import Expr, SourceMapping, TableMapping

Columns = Mapping[str, Mapping[str, str]]      # "schema.table" → column → information_schema data_type


@dataclass(frozen=True)
class Reference:
    source: str                   # schema.table
    column: str | None            # None: the table itself
    origin: str                   # "file:line (what)"
    feeds: Field | None = None    # the catalog field it fills unchanged (no value map, no expression around it)
    table: str | None = None      # that field's catalog table


@dataclass(frozen=True)
class Problem:
    message_id: str
    params: Mapping[str, object]


def _where(origin: str) -> str:
    return origin.split(" (", 1)[0]


def _aliases(mapping: SourceMapping, table: TableMapping) -> dict[str, set[str]]:
    """alias → the HIS tables its rows come from (a driver's alias is also a join's when another driver
    drove: `visit` is the driver row or the looked-up one)."""
    out: dict[str, set[str]] = {}
    bound = [(d.alias, d.source) for d in table.drivers]
    bound += [(d.each.alias, mapping.lookups[d.each.lookup].source) for d in table.drivers if d.each]
    bound += [(j.alias, mapping.lookups[j.lookup].source) for j in table.joins.values()]
    for alias, source in bound:
        out.setdefault(alias, set()).add(source)
    return out


def _expr_refs(expr: Expr, aliases: Mapping[str, set[str]], origin: str, feeds: Field | None = None,
               table: str | None = None) -> list[Reference]:
    return [Reference(source, column, origin, feeds if expr.column else None, table)
            for alias, column in sorted(expr.columns) for source in sorted(aliases.get(alias, ()))]


def references(mapping: SourceMapping) -> list[Reference]:
    """Every HIS table and column the mapping reads, in file order."""
    refs: list[Reference] = []
    for lookup in mapping.lookups.values():
        refs.append(Reference(lookup.source, None, lookup.origin))
        refs += [Reference(lookup.source, c, lookup.origin) for c in lookup.key + lookup.member]
    for table in mapping.tables.values():
        aliases = _aliases(mapping, table)
        for d in table.drivers:
            refs.append(Reference(d.source, None, d.origin))
            refs += [Reference(d.source, c, d.origin) for c in d.when_columns]
            if d.each:
                refs += [r for k in d.each.key for r in _expr_refs(k, aliases, d.origin)]
                refs += [Reference(source, c, d.origin) for source in aliases[d.each.alias]
                         for c in d.each.when_columns]
        for j in table.joins.values():
            refs += [r for k in j.key for r in _expr_refs(k, aliases, j.origin)]
            refs += [Reference(source, c, j.origin) for source in aliases[j.alias] for c in j.when_columns]
        for f in table.fields:
            plain = f.valuemap is None and f.name_of is None
            refs += _expr_refs(f.expr, aliases, f.origin, f.target if plain else None, table.table)
    unique = {(r.source, r.column, r.origin, r.table, r.feeds.name if r.feeds else None): r for r in refs}
    return sorted(unique.values(), key=lambda r: (_line(r.origin), r.source, r.column or ""))


def _line(origin: str) -> tuple[str, int]:
    path, _, rest = _where(origin).rpartition(":")
    return (path, int(rest)) if rest.isdigit() else (origin, 0)


# information_schema data_type → what it holds (PostgreSQL and MariaDB/MySQL spellings)
_FAMILY = {
    "text": {"character varying", "varchar", "character", "char", "text", "tinytext", "mediumtext", "longtext",
             "enum", "set", "uuid", "citext", "name"},
    "int": {"smallint", "integer", "bigint", "int", "tinyint", "mediumint"},
    "decimal": {"numeric", "decimal", "real", "double precision", "double", "float"},
    "date": {"date"},
    "datetime": {"timestamp without time zone", "timestamp with time zone", "timestamp", "datetime"},
    "time": {"time without time zone", "time with time zone", "time"},
    "bool": {"boolean", "bit"},
    "binary": {"bytea", "blob", "tinyblob", "mediumblob", "longblob", "binary", "varbinary"},
}
# catalog kind → families whose values the mapping turns into it (text parses when it is exact: the quality
# rules report the rows that do not; a date or a time of day never becomes a number, a number never a date)
_FEEDS = {
    "string": {"text", "int", "decimal", "date", "datetime", "time", "bool"},
    "int": {"int", "text", "bool", "decimal"},
    "decimal": {"decimal", "int", "text"},
    "date": {"date", "datetime", "text"},
    "datetime": {"datetime", "text"},
}


def family(data_type: str) -> str:
    lowered = data_type.strip().lower()
    return next((name for name, types in _FAMILY.items() if lowered in types), "other")


def can_feed(data_type: str, target: Field) -> bool:
    allowed = _FEEDS.get(target.kind)
    return allowed is None or family(data_type) in allowed or family(data_type) == "other"


def _hint(name: str, known: Iterable[str]) -> dict[str, str]:
    close = difflib.get_close_matches(name, list(known), n=1)
    return {"hint": f"（是否要写 {close[0]}？）" if close else "", "hint_en": f" (did you mean {close[0]}?)" if close else ""}


def check(refs: Iterable[Reference], columns: Columns) -> list[Problem]:
    """Missing tables, missing columns (with the closest existing name) and types that cannot feed the field."""
    problems: list[Problem] = []
    missing_tables: set[str] = set()
    for ref in refs:
        where = _where(ref.origin)
        if ref.source not in columns:
            if ref.source not in missing_tables:
                missing_tables.add(ref.source)
                problems.append(Problem("mapping.missing_table", {"where": where, "source": ref.source,
                                                                  **_hint(ref.source, columns)}))
            continue
        if ref.column is None:
            continue
        have = columns[ref.source]
        if ref.column not in have:
            problems.append(Problem("mapping.missing_column", {"where": where, "source": ref.source,
                                                               "column": ref.column, **_hint(ref.column, have)}))
        elif ref.feeds is not None and not can_feed(have[ref.column], ref.feeds):
            problems.append(Problem("mapping.type_mismatch", {
                "where": where, "source": ref.source, "column": ref.column, "his_type": have[ref.column],
                "table": ref.table, "field": ref.feeds.name, "field_type": ref.feeds.type}))
    return problems
