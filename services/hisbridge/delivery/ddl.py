"""Schema upkeep of the staging and front-end databases: each DDL script runs once per version of its text.

The scripts are idempotent (IF NOT EXISTS), but idempotent DDL still takes its table's lock:
`ALTER TABLE … ADD COLUMN IF NOT EXISTS` takes ACCESS EXCLUSIVE even when the column is there, and
`CREATE INDEX IF NOT EXISTS` takes SHARE. Queued behind a flush's open transaction, such a lock holds up
every reader and writer of the table that comes after it. So every process that connects (worker, CLI,
demo) reads one row of `hisbridge.schema_applied` and runs a script only when that version of it has not
been applied to that database yet, or a table it creates is gone (dropped by hand: made again, empty, as
when the script ran at every connect).
"""
from __future__ import annotations

import hashlib
import re
from functools import cache

_CREATES = re.compile(r"CREATE TABLE IF NOT EXISTS ([\w.]+)", re.IGNORECASE)

REGISTRY_SQL = """
CREATE SCHEMA IF NOT EXISTS hisbridge;
CREATE TABLE IF NOT EXISTS hisbridge.schema_applied (
    name text NOT NULL, fingerprint text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, fingerprint));
"""


@cache   # a module's script is one constant, asked for at every connect
def fingerprint(script: str) -> str:
    return hashlib.sha256(script.encode("utf-8")).hexdigest()


@cache
def created_tables(script: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_CREATES.findall(script)))


def applied(conn, name: str, script: str) -> bool:
    """This version of the script has been applied to the connection's database and every table it creates
    is there (reads the catalog and the registry only: to_regclass locks no table)."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('hisbridge.schema_applied') IS NOT NULL")
        if not cur.fetchone()[0]:
            return False
        cur.execute("""SELECT EXISTS (SELECT 1 FROM hisbridge.schema_applied WHERE name = %s AND fingerprint = %s)
                              AND NOT EXISTS (SELECT 1 FROM unnest(%s::text[]) t WHERE to_regclass(t) IS NULL)""",
                    (name, fingerprint(script), list(created_tables(script))))
        return cur.fetchone()[0]


def apply_once(conn, name: str, script: str) -> bool:
    """Run `script` unless this version of it was applied already; True when it ran. Concurrent callers
    serialise on an advisory lock and the script stays idempotent, so two first starts are safe."""
    if applied(conn, name, script):
        return False
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"hisbridge.ddl.{name}",))
        cur.execute(script)
        cur.execute(REGISTRY_SQL)
        cur.execute("INSERT INTO hisbridge.schema_applied (name, fingerprint) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    (name, fingerprint(script)))
    return True
