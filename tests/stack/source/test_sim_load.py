"""The simulated HIS loads into the stack's HIS PostgreSQL exactly as generated (into a database of this
module's own, removed afterwards, so a day is never loaded twice by accident)."""
from __future__ import annotations

from datetime import date, timedelta

import psycopg2
import psycopg2.extras
import pytest
from hisbridge.sim import generate, load

pytestmark = pytest.mark.stack
SEED = 4242


@pytest.fixture(scope="module")
def conn(module_resources):
    connection = load.connect(module_resources.database("his", f"his_simload_{module_resources.id}"))
    load.init_schema(connection, seed=SEED)
    yield connection
    connection.close()


def test_every_table_has_full_replica_identity_and_a_primary_key(conn):
    with conn.cursor() as cur:
        cur.execute("""SELECT c.relname, c.relreplident, EXISTS (SELECT 1 FROM pg_constraint k
                         WHERE k.conrelid = c.oid AND k.contype = 'p')
                       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                       WHERE n.nspname = 'his' AND c.relkind = 'r'""")
        tables = {name: (ident, has_pk) for name, ident, has_pk in cur.fetchall()}
    assert set(generate.PRIMARY_KEYS) <= set(tables)
    assert all(tables[t] == ("f", True) for t in generate.PRIMARY_KEYS)


def test_backdated_day_lands_row_for_row_with_microseconds(conn):
    day = date(2001, 1, 1)
    activity = generate.day_activity(SEED, day, 300, 0.05)
    load.load_backdated(conn, activity.events)
    expected = activity.rows()
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        for table in ("op_register", "op_visit", "op_diagnosis", "ip_admission", "mr_homepage", "mr_diagnosis"):
            keys = generate.PRIMARY_KEYS[table]
            for row in expected[table]:
                cur.execute(f"SELECT * FROM his.{table} WHERE " + " AND ".join(f"{k} = %s" for k in keys),
                            [row[k] for k in keys])
                assert dict(cur.fetchone()) == row, (table, [row[k] for k in keys])
        start, end = generate.batch_window(day)
        cur.execute("SELECT count(*) AS n FROM his.op_register WHERE reg_time IN (%s, %s)",
                    (start, end - timedelta(microseconds=1)))
        assert cur.fetchone()["n"] == 2


def test_loading_the_same_window_twice_is_refused(conn):
    day = date(2001, 3, 1)
    activity = generate.day_activity(SEED, day, 50, 0.0)
    load.load_backdated(conn, activity.events)
    with pytest.raises(psycopg2.IntegrityError):
        load.load_backdated(conn, activity.events)
