"""Thin shell: write the simulated hospital's schema, dictionaries and events into its HIS — PostgreSQL
(psycopg2) or MariaDB/MySQL (PyMySQL) — in that engine's dialect (sim.dialect); the connection says which.

Two ways to apply a window's events:
- back-dated (`load_backdated`): one transaction, inserts in bulk (execute_values / a multi-row INSERT),
  then updates batched by "the n-th update of a row" so each row still sees its updates in order — fast
  (tens of thousands of rows per second) while every row keeps its simulated timestamps;
- live (`load_live`): events applied one by one when an accelerated simulated clock reaches them.
"""
from __future__ import annotations

import time as _time
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Callable, Iterable

from hisbridge import hisdb
from hisbridge.sim import dialect
from hisbridge.sim.generate import PRIMARY_KEYS, Event, dictionary_rows

ENGINES = ("postgres", "mariadb", "mysql")


def schema_sql(engine: str = "postgres") -> str:
    return dialect.schema_sql(engine)


def connect(dsn: str, engine: str = "postgres"):
    """The HIS as an administrator (hisbridge.hisdb); HisConnectionError naming where when it cannot be reached."""
    return hisdb.connect(dsn, engine)


def init_schema(conn, seed: int, reset: bool = False) -> None:
    """Create schema `his` (idempotent) and its department/staff dictionaries."""
    engine = hisdb.engine_of(conn)
    with hisdb.transaction(conn) as cur:
        if reset:
            cur.execute(dialect.drop_schema_sql(engine))
        for statement in dialect.schema_statements(engine):
            cur.execute(statement)
        for table, rows in dictionary_rows(seed).items():
            _insert_rows(cur, engine, table, rows, if_absent=True)


def _insert_rows(cur, engine: str, table: str, rows: list[dict], if_absent: bool) -> None:
    if not rows:
        return
    columns = list(rows[0])
    statement = dialect.insert_sql(engine, table, columns, if_absent, PRIMARY_KEYS[table])
    values = [tuple(r[c] for c in columns) for r in rows]
    if engine == "postgres":
        from psycopg2.extras import execute_values
        execute_values(cur, statement, values, page_size=1000)
    else:
        cur.executemany(statement, values)      # PyMySQL sends one multi-row INSERT per batch


def _update_params(table: str, row: dict) -> tuple:
    keys = PRIMARY_KEYS[table]
    return tuple(v for c, v in row.items() if c not in keys) + tuple(row[k] for k in keys)


def _execute_updates(cur, engine: str, statement: str, params: list[tuple]) -> None:
    if engine == "postgres":
        from psycopg2.extras import execute_batch
        execute_batch(cur, statement, params, page_size=500)
    else:
        cur.executemany(statement, params)


def load_backdated(conn, events: Iterable[Event]) -> dict[str, int]:
    """Apply a window's events in one transaction; returns statement counts per table.op."""
    engine = hisdb.engine_of(conn)
    inserts: dict[tuple[str, str], list[dict]] = defaultdict(list)
    updates: dict[tuple[int, str, tuple[str, ...]], list[dict]] = defaultdict(list)
    rank: dict[tuple, int] = defaultdict(int)
    counts: dict[str, int] = defaultdict(int)
    for event in events:
        counts[f"{event.table}.{event.op}"] += 1
        if event.op == "update":
            key = (event.table, tuple(event.row[k] for k in PRIMARY_KEYS[event.table]))
            rank[key] += 1   # the n-th update of a row runs after every (n-1)-th update
            updates[(rank[key], event.table, tuple(event.row))].append(event.row)
        else:
            inserts[(event.table, event.op)].append(event.row)
    with hisdb.transaction(conn) as cur:
        for (table, op), rows in inserts.items():
            _insert_rows(cur, engine, table, rows, if_absent=op == "ensure")
        for (_, table, columns), rows in sorted(updates.items(), key=lambda item: item[0][0]):
            statement = dialect.update_sql(engine, table, columns, PRIMARY_KEYS[table])
            _execute_updates(cur, engine, statement, [_update_params(table, r) for r in rows])
    return dict(counts)


def apply_event(cur, event: Event, engine: str = "postgres") -> None:
    if event.op == "update":
        cur.execute(dialect.update_sql(engine, event.table, tuple(event.row), PRIMARY_KEYS[event.table]),
                    _update_params(event.table, event.row))
    else:
        _insert_rows(cur, engine, event.table, [event.row], if_absent=event.op == "ensure")


def load_live(conn, events: list[Event], sim_start: datetime, speed: float,
              progress: Callable[[datetime, int], None] | None = None,
              progress_every: timedelta = timedelta(minutes=30)) -> int:
    """Apply events when the simulated clock (sim_start + elapsed·speed) reaches them; commit per tick."""
    if speed <= 0:
        raise ValueError("speed must be positive")
    engine = hisdb.engine_of(conn)
    wall_start = _time.monotonic()
    next_report = sim_start
    applied = 0
    cur = conn.cursor()
    try:
        for event in events:
            now = sim_start + timedelta(seconds=(_time.monotonic() - wall_start) * speed)
            if event.at > now:
                conn.commit()    # everything due so far becomes visible (and reaches the WAL) before waiting
                _time.sleep((event.at - now).total_seconds() / speed)
            apply_event(cur, event, engine)
            applied += 1
            if progress and event.at >= next_report:
                progress(event.at, applied)
                next_report = event.at + progress_every
        conn.commit()
    finally:
        cur.close()
    return applied
