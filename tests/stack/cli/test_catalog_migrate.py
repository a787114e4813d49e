"""`hisbridge catalog migrate-frontend` on a real front-end database made from an earlier catalog: the fields
a revision added are listed, then added with --apply (nullable where rows exist), then nothing is left."""
from __future__ import annotations

from datetime import datetime

import psycopg2
import pytest
from click.testing import CliRunner
from hisbridge.catalog import load_catalog
from hisbridge.catalog.sample import sample_records
from hisbridge.cli import main
from hisbridge.delivery.flush import ensure_frontend

pytestmark = pytest.mark.stack
TABLE = load_catalog().table("mjzzlxx")


def _columns(conn, table: str) -> dict[str, str]:
    with conn, conn.cursor() as cur:
        cur.execute("""SELECT column_name, is_nullable FROM information_schema.columns
                       WHERE table_schema = current_schema() AND table_name = %s""", (table,))
        return dict(cur.fetchall())


def test_migrate_frontend_adds_the_fields_a_revision_added_and_then_finds_nothing(resources):
    dsn = resources.database("frontend", f"migrate_front_{resources.id}")
    conn = psycopg2.connect(dsn)
    try:
        ensure_frontend(conn)
        row = {**sample_records(TABLE, 1, seed=3)[0], "report_datetime": datetime(2026, 3, 2, 18, 5)}
        with conn, conn.cursor() as cur:           # a delivered row, then the table as an earlier catalog made it
            cur.execute(f"INSERT INTO mjzzlxx ({', '.join(row)}) VALUES ({', '.join(['%s'] * len(row))})",
                        list(row.values()))
            cur.execute("ALTER TABLE mjzzlxx DROP COLUMN gzdw, DROP COLUMN jzksmc")
        with pytest.raises(psycopg2.errors.UndefinedColumn):       # the sink's DDL names what is not there
            ensure_frontend(conn)
        env = {"HISBRIDGE_FRONTEND_DSN": dsn, "HISBRIDGE_LANG": "en"}

        def run(*args: str):
            return CliRunner().invoke(main, ["catalog", "migrate-frontend", *args], env=env)

        review = run()
        assert review.exit_code == 1, review.output
        assert review.stdout.splitlines() == [
            "ALTER TABLE mjzzlxx ADD COLUMN IF NOT EXISTS gzdw text;",
            "COMMENT ON COLUMN mjzzlxx.gzdw IS '工作单位（SM4 密文）';",
            "ALTER TABLE mjzzlxx ADD COLUMN IF NOT EXISTS jzksmc varchar(50);",
            "COMMENT ON COLUMN mjzzlxx.jzksmc IS '就诊科室名称';",
            "mjzzlxx: jzksmc required in the catalog, added nullable (the table holds rows without them)"]
        assert review.stderr.strip() == ("1 front-end table(s) lack catalog fields: review the statements above, "
                                         "then run with --apply")
        assert "gzdw" not in _columns(conn, "mjzzlxx")              # reviewing changes nothing
        applied = run("--apply")
        assert applied.exit_code == 0 and applied.stdout.splitlines()[-1] == "added 2 column(s) to 1 table(s)"
        columns = _columns(conn, "mjzzlxx")
        assert columns["gzdw"] == "YES" and columns["jzksmc"] == "YES" and set(columns) == set(TABLE.field_names)
        again = run()
        assert again.exit_code == 0 and again.stdout.strip() == "the front-end tables hold every catalog field: nothing to do"
        ensure_frontend(conn)                                       # and the sink's DDL runs again
    finally:
        conn.close()
