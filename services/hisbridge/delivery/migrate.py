"""The front-end's tables against the catalog: what each lacks (catalog.ddl.frontend_migration, pure), read
from the front-end's information_schema, and the ALTER statements applied in one transaction."""
from __future__ import annotations

from typing import Iterable

from hisbridge.catalog.ddl import FrontendMigration, frontend_migration
from hisbridge.catalog.model import Table
from hisbridge.delivery.flush import lock_frontend_ddl
from psycopg2 import sql


def plan(conn, tables: Iterable[Table]) -> list[FrontendMigration]:
    """Per catalog table, what its front-end table (in the connection's current schema) needs."""
    tables = list(tables)
    with conn, conn.cursor() as cur:
        cur.execute("""SELECT table_name, column_name FROM information_schema.columns
                       WHERE table_schema = current_schema() AND table_name = ANY(%s)""",
                    ([t.name for t in tables],))
        columns: dict[str, set[str]] = {}
        for name, column in cur.fetchall():
            columns.setdefault(name, set()).add(column)
        out = []
        for t in tables:
            rows = False
            if t.name in columns:
                cur.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(t.name)))
                rows = cur.fetchone()[0]
            out.append(frontend_migration(t, columns.get(t.name), rows))
    return out


def apply(conn, migrations: Iterable[FrontendMigration]) -> int:
    """Every ADD COLUMN of `migrations`, in one transaction (all or none), under the front-end DDL lock.
    Returns the columns added."""
    statements = [s for m in migrations for s in m.statements]
    with conn, conn.cursor() as cur:
        lock_frontend_ddl(cur)
        for statement in statements:
            cur.execute(statement)
    return sum(1 for s in statements if s.startswith("ALTER TABLE"))
