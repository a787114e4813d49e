"""Thin shell: write the simulated hospital's schema, dictionaries and events into PostgreSQL (psycopg2).

Two ways to apply a window's events:
- back-dated (`load_backdated`): one transaction, inserts with execute_values, then updates batched by
  "the n-th update of a row" so each row still sees its updates in order — fast (tens of thousands of
  rows per second) while every row keeps its simulated timestamps;
- live (`load_live`): events applied one by one when an accelerated simulated clock reaches them.
"""
from __future__ import annotations

import time as _time
from collections import defaultdict
from datetime import datetime, timedelta
from importlib import resources
from typing import Callable, Iterable

import psycopg2
from hisbridge.sim.generate import PRIMARY_KEYS, Event, dictionary_rows
from psycopg2 import sql
from psycopg2.extras import execute_batch, execute_values

SCHEMA = "his"


def schema_sql() -> str:
    return resources.files("hisbridge.sim").joinpath("his_schema.sql").read_text(encoding="utf-8")


def connect(dsn: str):
    try:
        return psycopg2.connect(dsn)
    except psycopg2.OperationalError as exc:
        raise RuntimeError(f"cannot connect to the HIS database ({dsn}): {exc}".strip()) from exc


def init_schema(conn, seed: int, reset: bool = False) -> None:
    """Create schema `his` (idempotent) and its department/staff dictionaries."""
    with conn, conn.cursor() as cur:
        if reset:
            cur.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        cur.execute(schema_sql())
        for table, rows in dictionary_rows(seed).items():
            _insert_rows(cur, table, rows, if_absent=True)


def _insert_rows(cur, table: str, rows: list[dict], if_absent: bool) -> None:
    if not rows:
        return
    columns = list(rows[0])
    statement = sql.SQL("INSERT INTO {} ({}) VALUES %s{}").format(
        sql.Identifier(SCHEMA, table), sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(" ON CONFLICT DO NOTHING") if if_absent else sql.SQL(""))
    execute_values(cur, statement.as_string(cur), [tuple(r[c] for c in columns) for r in rows], page_size=1000)


def _update_statement(cur, table: str, columns: tuple[str, ...]) -> str:
    keys = PRIMARY_KEYS[table]
    sets = [c for c in columns if c not in keys]
    return sql.SQL("UPDATE {} SET {} WHERE {}").format(
        sql.Identifier(SCHEMA, table),
        sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in sets),
        sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in keys)).as_string(cur)


def _update_params(table: str, row: dict) -> tuple:
    keys = PRIMARY_KEYS[table]
    return tuple(v for c, v in row.items() if c not in keys) + tuple(row[k] for k in keys)


def load_backdated(conn, events: Iterable[Event]) -> dict[str, int]:
    """Apply a window's events in one transaction; returns statement counts per table.op."""
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
    with conn, conn.cursor() as cur:
        for (table, op), rows in inserts.items():
            _insert_rows(cur, table, rows, if_absent=op == "ensure")
        for (_, table, columns), rows in sorted(updates.items(), key=lambda item: item[0][0]):
            execute_batch(cur, _update_statement(cur, table, columns),
                          [_update_params(table, r) for r in rows], page_size=500)
    return dict(counts)


def apply_event(cur, event: Event) -> None:
    if event.op == "update":
        cur.execute(_update_statement(cur, event.table, tuple(event.row)), _update_params(event.table, event.row))
    else:
        _insert_rows(cur, event.table, [event.row], if_absent=event.op == "ensure")


def load_live(conn, events: list[Event], sim_start: datetime, speed: float,
              progress: Callable[[datetime, int], None] | None = None,
              progress_every: timedelta = timedelta(minutes=30)) -> int:
    """Apply events when the simulated clock (sim_start + elapsed·speed) reaches them; commit per tick."""
    if speed <= 0:
        raise ValueError("speed must be positive")
    wall_start = _time.monotonic()
    next_report = sim_start
    applied = 0
    with conn.cursor() as cur:
        for event in events:
            now = sim_start + timedelta(seconds=(_time.monotonic() - wall_start) * speed)
            if event.at > now:
                conn.commit()    # everything due so far becomes visible (and reaches the WAL) before waiting
                _time.sleep((event.at - now).total_seconds() / speed)
            apply_event(cur, event)
            applied += 1
            if progress and event.at >= next_report:
                progress(event.at, applied)
                next_report = event.at + progress_every
        conn.commit()
    return applied
