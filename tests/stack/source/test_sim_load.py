"""The simulated HIS loads into each HIS engine exactly as generated: PostgreSQL (a database of this module's
own on the stack's HIS server) and MariaDB (a server of this module's own, support.mariadb), both removed
afterwards, so a day is never loaded twice by accident; and `hisbridge sim --engine mariadb` does the same."""
from __future__ import annotations

from datetime import date, timedelta

import psycopg2
import pymysql
import pytest
from click.testing import CliRunner
from hisbridge import hisdb
from hisbridge.cli import main as cli_main
from hisbridge.sim import generate, load
from support.mariadb import engine_env, own_mariadb

pytestmark = pytest.mark.stack
SEED = 4242
DUPLICATE = {"postgres": psycopg2.IntegrityError, "mariadb": pymysql.IntegrityError}


@pytest.fixture(scope="module")
def mariadb_server(module_resources):
    return own_mariadb(module_resources)


@pytest.fixture(scope="module", params=["postgres", "mariadb"])
def conn(request, module_resources):
    if request.param == "postgres":
        connection = load.connect(module_resources.database("his", f"his_simload_{module_resources.id}"))
    else:
        connection = load.connect(request.getfixturevalue("mariadb_server").admin_dsn(), "mariadb")
    load.init_schema(connection, seed=SEED)
    yield connection
    connection.close()


def select(conn, sql: str, params=()) -> list[dict]:
    with hisdb.transaction(conn) as cur:
        cur.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def test_every_postgres_table_has_full_replica_identity_and_a_primary_key(module_resources):
    connection = load.connect(module_resources.database("his", f"his_simident_{module_resources.id}"))
    try:
        load.init_schema(connection, seed=SEED)
        tables = {r["relname"]: (r["relreplident"], r["has_pk"]) for r in select(connection, """
            SELECT c.relname, c.relreplident, EXISTS (SELECT 1 FROM pg_constraint k
                     WHERE k.conrelid = c.oid AND k.contype = 'p') AS has_pk
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'his' AND c.relkind = 'r'""")}
    finally:
        connection.close()
    assert set(generate.PRIMARY_KEYS) <= set(tables)
    assert all(tables[t] == ("f", True) for t in generate.PRIMARY_KEYS)


def test_every_mariadb_table_has_its_primary_key_and_the_server_logs_full_rows(mariadb_server):
    connection = load.connect(mariadb_server.admin_dsn(), "mariadb")
    try:
        load.init_schema(connection, seed=SEED)
        keys = select(connection, "SELECT table_name AS t, GROUP_CONCAT(column_name ORDER BY ordinal_position) AS k "
                                  "FROM information_schema.key_column_usage WHERE table_schema = 'his' "
                                  "AND constraint_name = 'PRIMARY' GROUP BY table_name")
        server = select(connection, "SELECT @@log_bin AS log_bin, @@binlog_format AS format, "
                                    "@@binlog_row_image AS image, @@global.time_zone AS tz")[0]
    finally:
        connection.close()
    assert {r["t"]: tuple(r["k"].split(",")) for r in keys} == generate.PRIMARY_KEYS
    assert server == {"log_bin": 1, "format": "ROW", "image": "FULL", "tz": "Asia/Shanghai"}


def test_backdated_day_lands_row_for_row_with_microseconds(conn):
    day = date(2001, 1, 1)
    activity = generate.day_activity(SEED, day, 300, 0.05)
    load.load_backdated(conn, activity.events)
    expected = activity.rows()
    for table in ("op_register", "op_visit", "op_diagnosis", "ip_admission", "mr_homepage", "mr_diagnosis"):
        keys = generate.PRIMARY_KEYS[table]
        for row in expected[table]:
            got = select(conn, f"SELECT * FROM his.{table} WHERE " + " AND ".join(f"{k} = %s" for k in keys),
                         [row[k] for k in keys])
            assert got == [row], (table, [row[k] for k in keys])
    start, end = generate.batch_window(day)
    assert select(conn, "SELECT count(*) AS n FROM his.op_register WHERE reg_time IN (%s, %s)",
                  (start, end - timedelta(microseconds=1))) == [{"n": 2}]


def test_loading_the_same_window_twice_is_refused(conn):
    day = date(2001, 3, 1)
    activity = generate.day_activity(SEED, day, 50, 0.0)
    load.load_backdated(conn, activity.events)
    with pytest.raises(DUPLICATE[hisdb.engine_of(conn)]):
        load.load_backdated(conn, activity.events)


def test_the_sim_command_loads_a_day_into_mariadb(mariadb_server, monkeypatch, tmp_path):
    for key, value in engine_env(mariadb_server).items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    result = runner.invoke(cli_main, ["sim", "init", "--reset"])
    assert result.exit_code == 0 and "12 tables, binlog row image FULL" in result.output, result.output
    result = runner.invoke(cli_main, ["sim", "day", "--engine", "mariadb", "--date", "2001-05-01", "--visits", "40",
                                      "--manifest", str(tmp_path / "manifest.json")])
    assert result.exit_code == 0, result.output
    rows = generate.day_activity(1, date(2001, 5, 1), 40, 0.02).rows()
    connection = load.connect(mariadb_server.admin_dsn(), "mariadb")
    try:
        got = select(connection, "SELECT visit_id FROM his.op_visit")
    finally:
        connection.close()
    assert {r["visit_id"] for r in got} == {r["visit_id"] for r in rows["op_visit"]}


def test_mappings_check_finds_the_planted_unmapped_codes_in_mariadb(mariadb_server, monkeypatch):
    for key, value in engine_env(mariadb_server).items():
        monkeypatch.setenv(key, value)
    day = date(2001, 7, 1)
    activity = generate.day_activity(SEED, day, 200, 0.1)
    connection = load.connect(mariadb_server.admin_dsn(), "mariadb")
    try:
        load.init_schema(connection, seed=SEED)
        load.load_backdated(connection, activity.events)
    finally:
        connection.close()
    planted = {(f"his.{d['table']}.{d['column']}", str(d["value"])) for e in activity.manifest["entities"]
               for d in e["defects"] if d["reason"] == generate.UNMAPPED_CODE}
    result = CliRunner().invoke(cli_main, ["mappings", "check"])
    assert result.exit_code == 1, result.output
    listed = {(line.split("\t")[0], line.split("\t")[2]) for line in result.output.splitlines() if "\t" in line}
    assert planted and planted <= listed


def test_sim_indicators_with_detail_loads_the_history_and_derives_the_monthly_figures(module_resources):
    from hisbridge.catalog import load_catalog
    from hisbridge.chain.mapping import load_mapping
    from hisbridge.indicators import definitions
    from hisbridge.settings import load_settings
    from hisbridge.sim import evaluation
    dsn = module_resources.database("his", f"his_simind_{module_resources.id}")
    runner = CliRunner()
    assert runner.invoke(cli_main, ["sim", "init", "--dsn", dsn, "--seed", str(SEED)]).exit_code == 0
    result = runner.invoke(cli_main, ["sim", "indicators", "--dsn", dsn, "--from", "2023-11", "--to", "2023-12",
                                      "--seed", str(SEED), "--detail", "1"])
    assert result.exit_code == 0 and "(2 months)" in result.output, result.output
    catalog = load_catalog()
    windows = evaluation.sample_windows(SEED, ["2023-11", "2023-12"], 1)
    rows = {**generate.dictionary_rows(SEED), **generate.final_rows([e for w in windows for e in w])}
    records = evaluation.catalog_records(load_mapping(catalog), rows, ("basy", "basy_ss", "mjzzlxx"))
    defs = definitions.load(load_settings().paths.indicators, catalog)
    want = {(r["period"], r["indicator_code"]): (r["value"], r["numerator"], r["denominator"])
            for m in ("2023-11", "2023-12") for r in evaluation.month_evaluation(SEED, m, records, defs)[0]}
    connection = load.connect(dsn)
    try:
        got = select(connection, "SELECT period, indicator_code, value, numerator, denominator FROM his.eval_indicator")
        stays = select(connection, "SELECT count(*) AS n FROM his.mr_homepage")[0]["n"]
    finally:
        connection.close()
    assert {(r["period"], r["indicator_code"]): (r["value"], r["numerator"], r["denominator"])
            for r in got if r["period"] != "2023"} == want
    assert {r["period"] for r in got} == {"2023-11", "2023-12", "2023"} and stays == len(rows["mr_homepage"])
    assert {p for (p, _), v in want.items() if v[1] is not None} == {"2023-11", "2023-12"}   # derived
