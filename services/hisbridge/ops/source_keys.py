"""The business keys the HIS itself says a batch must have: reconcile's source side (issue 11 item 1).

For every catalog table the source mapping already says which HIS rows make a record: its drivers (with
their `when`), a fan-out driver's `each` group, and the joins in the order `map_row` resolves them. From that
data — never from code per table — `key_queries` derives one SELECT per driver:

    SELECT <every column of the driver, its each-members and its joins, by position>
    FROM   <driver source> AS <alias>
    [JOIN  <each source> AS <each alias> ON <each lookup key> = <each key>]        -- no member, no record
    LEFT JOIN <join source> AS <join alias> ON <lookup key columns> = <join key>    -- per join, in join order
    [WHERE <batch-time column> >= start - 1 day AND < end + 1 day]                 -- when it is a time column

and `expected_keys` runs every row through the mapping's own `map_row` (with the joined rows as its
lookups), so `when`, `absent: skip|null|wait`, the key expressions and the batch rule (chain.batch) are
exactly the worker's. The SQL range only narrows what is read; the batch is decided in Python. A record
whose reference row is missing in the HIS itself (MissingLookup) is still expected: the worker quarantines
it. A record that has no key (a key field empty) cannot be matched by key and is counted apart.

Rights: only SELECT on the captured tables and `information_schema.columns` — what the CDC role already
has (connectors/postgres-setup.sql's hisbridge_capture role; on MariaDB `connectors apply --prepare`
grants SELECT per captured table). `cdc_dsn` builds that role's DSN from source.* and its password.

Joins whose key is neither a column nor a constant cannot be written as SQL: ReconcileSourceError names
the join, and reconcile refuses rather than guessing.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, Sequence

from hisbridge.catalog.model import Table
from hisbridge.chain.batch import BatchError, period_for
from hisbridge.chain.mapping import (Driver, Expr, MissingLookup, Mapped, SourceMapping, TableMapping, lookup_key,
                                     map_row)
from hisbridge.contract import business_key
from hisbridge.settings import Settings, is_binlog_kind

TIME_TYPES = frozenset({"timestamp", "timestamp without time zone", "timestamp with time zone", "datetime", "date"})
Columns = Mapping[str, Sequence[tuple[str, str]]]          # "schema.table" → [(column, data type)]


class ReconcileSourceError(ValueError):
    """The mapping cannot be turned into a HIS query (the message names the table and join)."""


@dataclass(frozen=True)
class Part:
    """One table instance in the query: the alias, its HIS source and how many columns it contributes."""
    alias: str
    source: str
    columns: tuple[str, ...]
    role: str                  # driver | each | join
    lookup: str | None = None  # for each / join: the lookup it fills


@dataclass(frozen=True)
class KeyQuery:
    table: str
    driver: str                # the driver alias
    sql: str
    params: tuple[Any, ...]
    parts: tuple[Part, ...]


@dataclass(frozen=True)
class SourceKeys:
    """What the HIS says one (table, batch) must have downstream."""
    keys: frozenset[str]
    waiting: frozenset[str]    # of which a reference row is missing in the HIS itself (→ quarantine)
    unkeyed: int               # records of the batch without a business key (cannot be matched)


# --- pure: the SQL ----------------------------------------------------------------------------------------

def _quote(name: str, engine: str) -> str:
    q = "`" if is_binlog_kind(engine) else '"'
    return q + name.replace(q, q + q) + q


def _table_sql(source: str, engine: str) -> str:
    return ".".join(_quote(p, engine) for p in source.split("."))


def _key_sql(expr: Expr, engine: str, where: str) -> tuple[str, tuple[Any, ...]]:
    if expr.column is not None:
        return f"{_quote(expr.column[0], engine)}.{_quote(expr.column[1], engine)}", ()
    if not expr.refs:
        return "%s", (expr.run({}),)
    raise ReconcileSourceError(f"{where}: key {expr.text} is neither alias.column nor a constant: "
                               f"no HIS query can be derived")


def _on(alias: str, columns: Sequence[str], keys: Sequence[Expr], engine: str, where: str
        ) -> tuple[str, tuple[Any, ...]]:
    terms, params = [], ()
    for column, expr in zip(columns, keys):
        sql, p = _key_sql(expr, engine, where)
        terms.append(f"{_quote(alias, engine)}.{_quote(column, engine)} = {sql}")
        params += p
    return " AND ".join(terms), params


def _columns(columns: Columns, source: str) -> tuple[str, ...]:
    found = columns.get(source)
    if not found:
        raise ReconcileSourceError(f"HIS table {source} is not readable (no columns in information_schema: "
                                   f"missing, or the reconcile role has no SELECT on it)")
    return tuple(c for c, _ in found)


def _batch_filter(tm: TableMapping, parts: Sequence[Part], columns: Columns, start: datetime, end: datetime,
                  engine: str) -> tuple[str, tuple[Any, ...]]:
    """A range on the batch-time column, one day wider each side, when that field is a plain time column."""
    fm = next((f for f in tm.fields if f.name == tm.target.batch_time), None)
    if fm is None or fm.expr.column is None:
        return "", ()
    alias, column = fm.expr.column
    part = next((p for p in parts if p.alias == alias), None)
    types = dict(columns.get(part.source, ())) if part else {}
    if types.get(column, "").lower() not in TIME_TYPES:
        return "", ()
    ref = f"{_quote(alias, engine)}.{_quote(column, engine)}"
    return f" WHERE {ref} >= %s AND {ref} < %s", (start - timedelta(days=1), end + timedelta(days=1))


def key_query(mapping: SourceMapping, tm: TableMapping, driver: Driver, columns: Columns, engine: str,
              start: datetime, end: datetime) -> KeyQuery:
    """The SELECT for one driver of a table (module docstring); start/end: the batch, naive local time."""
    where = f"{tm.origin} driver {driver.alias}"
    parts = [Part(driver.alias, driver.source, _columns(columns, driver.source), "driver")]
    joins, params = [], ()
    if driver.each is not None:
        lookup = mapping.lookups[driver.each.lookup]
        parts.append(Part(driver.each.alias, lookup.source, _columns(columns, lookup.source), "each", lookup.name))
        on, p = _on(driver.each.alias, lookup.key, driver.each.key, engine, where)
        joins.append(f" JOIN {_table_sql(lookup.source, engine)} AS {_quote(driver.each.alias, engine)} ON {on}")
        params += p
    for alias in tm.join_order[driver.alias]:
        join = tm.joins[alias]
        lookup = mapping.lookups[join.lookup]
        parts.append(Part(alias, lookup.source, _columns(columns, lookup.source), "join", lookup.name))
        on, p = _on(alias, lookup.key, join.key, engine, f"{tm.origin} join {alias}")
        joins.append(f" LEFT JOIN {_table_sql(lookup.source, engine)} AS {_quote(alias, engine)} ON {on}")
        params += p
    select = ", ".join(f"{_quote(p.alias, engine)}.{_quote(c, engine)}" for p in parts for c in p.columns)
    filter_sql, filter_params = _batch_filter(tm, parts, columns, start, end, engine)
    sql = (f"SELECT {select} FROM {_table_sql(driver.source, engine)} AS {_quote(driver.alias, engine)}"
           + "".join(joins) + filter_sql)
    return KeyQuery(tm.table, driver.alias, sql, params + filter_params, tuple(parts))


def table_queries(mapping: SourceMapping, table: str, columns: Columns, engine: str, start: datetime,
                  end: datetime) -> list[KeyQuery]:
    """One query per driver: any driver yields the record, so the keys are the union over them."""
    tm = mapping.tables[table]
    return [key_query(mapping, tm, d, columns, engine, start, end) for d in tm.drivers]


# --- pure: rows → keys ---------------------------------------------------------------------------------

def split_row(parts: Sequence[Part], row: Sequence[Any]) -> dict[str, dict[str, Any] | None]:
    """alias → its row (None when a LEFT JOIN found nothing: every column NULL)."""
    out, i = {}, 0
    for part in parts:
        values = row[i:i + len(part.columns)]
        i += len(part.columns)
        out[part.alias] = None if all(v is None for v in values) else dict(zip(part.columns, values))
    return out


def _lookups(mapping: SourceMapping, parts: Sequence[Part], rows: Iterable[Mapping[str, Any]]
             ) -> dict[str, dict[str, Any]]:
    """The joined rows as map_row's lookup tables (keyed exactly as the worker keys them)."""
    tables: dict[str, dict[str, Any]] = defaultdict(dict)
    for bound in rows:
        for part in parts:
            row = bound.get(part.alias)
            if part.role != "join" or row is None:
                continue
            lookup = mapping.lookups[part.lookup]
            tables[lookup.name][lookup_key(row.get(c) for c in lookup.key)] = row
    return tables


def keys_from_rows(mapping: SourceMapping, query: KeyQuery, rows: Iterable[Sequence[Any]], table: Table,
                   batch: str) -> tuple[set[str], set[str], int]:
    """(keys of `batch`, of which waiting for a reference row, unkeyed count) from one query's rows."""
    tm = mapping.tables[query.table]
    driver = next(d for d in tm.drivers if d.alias == query.driver)
    bound_rows = [split_row(query.parts, r) for r in rows]
    lookups = _lookups(mapping, query.parts, bound_rows)
    keys, waiting, unkeyed = set(), set(), 0
    for bound in bound_rows:
        row = bound[driver.alias]
        if row is None or (driver.when is not None and not driver.when(row)):
            continue
        start = {driver.alias: row}
        if driver.each is not None:
            member = bound[driver.each.alias]
            if member is None or (driver.each.when is not None and not driver.each.when(member)):
                continue
            start[driver.each.alias] = member
        result = map_row(mapping, tm, driver, start, False, lookups)
        record = result.record if isinstance(result, Mapped) else \
            result.partial if isinstance(result, MissingLookup) else None
        if record is None:
            continue                               # Skipped: not reportable; Unmappable: no record to key
        try:
            if period_for(table.cadence, record.get(table.batch_time)).name != batch:
                continue
        except (BatchError, TypeError):
            continue                               # no batch time: the worker cannot place it either
        key = business_key(table.key, record)
        if key is None:
            unkeyed += 1
            continue
        keys.add(key)
        if isinstance(result, MissingLookup):
            waiting.add(key)
    return keys, waiting, unkeyed


# --- thin readers -----------------------------------------------------------------------------------------

def cdc_dsn(settings: Settings) -> str:
    """The CDC role's keyword DSN (source.host/port/db/user and its password): the rights reconcile needs."""
    from hisbridge.ops.connectors import cdc_password
    s = settings.source
    fields = {"host": s.host, "port": s.port, "user": s.user, "password": cdc_password(settings)}
    if not is_binlog_kind(s.kind):
        fields["dbname"] = s.db
    return " ".join(f"{k}={v}" for k, v in fields.items())


def read_columns(conn, sources: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
    """"schema.table" → [(column, data type)] of the mapping's sources, as information_schema shows them to
    this role (a table it cannot read is absent)."""
    from hisbridge.hisdb import his_columns
    wanted = set(sources)
    found = his_columns(conn, {s.rpartition(".")[0] for s in wanted})
    return {s: list(found[s].items()) for s in sorted(wanted) if found.get(s)}


def source_keys(conn, engine: str, mapping: SourceMapping, table: Table, batch: str, start: datetime,
                end: datetime, columns: Columns) -> SourceKeys:
    """Run the table's queries in one read-only pass and collect the batch's keys."""
    keys, waiting, unkeyed = set(), set(), 0
    cur = conn.cursor()
    try:
        for query in table_queries(mapping, table.name, columns, engine, start, end):
            cur.execute(query.sql, query.params)
            k, w, u = keys_from_rows(mapping, query, cur.fetchall(), table, batch)
            keys |= k
            waiting |= w
            unkeyed = max(unkeyed, u)              # the same unkeyed record is seen once per driver
    finally:
        cur.close()
        conn.rollback()
    return SourceKeys(frozenset(keys), frozenset(waiting), unkeyed)
