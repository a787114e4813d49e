"""Reconcile's HIS side on both engines: the keys ops.source_keys derives from the source mapping and reads from
a loaded simulated HIS are, per catalog table and batch, exactly the keys the simulator's manifest says must
arrive downstream (delivered or quarantined); and a missing key is found by `reconcile` without --sim-*."""
from __future__ import annotations

import ast
from datetime import date

import pytest
from hisbridge.catalog import load_catalog
from hisbridge.chain.mapping import load_mapping
from hisbridge.ops import reconcile, source_keys
from hisbridge.sim import expectations, generate, load
from support.mariadb import own_mariadb

pytestmark = pytest.mark.stack
SEED, VISITS, BAD = 31, 400, 0.05
DAY = date(2026, 3, 11)       # the 11th: the monthly evaluation indicators are filled too (generate.INDICATOR_DAY)
CATALOG = load_catalog()
MAPPING = load_mapping(CATALOG)


@pytest.fixture(scope="module", params=["postgres", "mariadb"])
def his(request, module_resources):
    if request.param == "postgres":
        conn = load.connect(module_resources.database("his", f"his_srckeys_{module_resources.id}"))
    else:
        conn = load.connect(own_mariadb(module_resources).admin_dsn(), "mariadb")
    load.init_schema(conn, seed=SEED)
    activity = generate.day_activity(SEED, DAY, VISITS, BAD)
    load.load_backdated(conn, activity.events)
    yield request.param, conn, expectations.sim_expectations(activity, MAPPING, CATALOG, generate.PRIMARY_KEYS)
    conn.close()


def test_his_keys_of_every_table_and_batch_are_the_manifests(his):
    engine, conn, want = his
    columns = source_keys.read_columns(conn, MAPPING.sources)
    assert set(columns) == set(MAPPING.sources)
    compared = 0
    for (name, batch), expected in sorted(want.items()):
        table = CATALOG.table(name)
        start, end = reconcile.batch_range(table, batch)
        got = source_keys.source_keys(conn, engine, MAPPING, table, batch, start, end, columns)
        assert got.keys == expected.delivered | {k for k, _ in expected.quarantined}, (name, batch)
        assert got.unkeyed == 0
        compared += len(got.keys)
    assert compared > 300 and {n for n, _ in want} >= {"mjzzlxx", "basy", "basy_zd", "zyhzryxx", "ylfwnl"}


def test_the_batch_rule_cuts_at_1800_like_the_worker(his):
    engine, conn, want = his
    table = CATALOG.table("mjzzlxx")
    columns = source_keys.read_columns(conn, MAPPING.sources)
    batches = sorted(b for n, b in want if n == "mjzzlxx")
    for batch in batches:
        start, end = reconcile.batch_range(table, batch)
        got = source_keys.source_keys(conn, engine, MAPPING, table, batch, start, end, columns)
        others = [source_keys.source_keys(conn, engine, MAPPING, table, b, *reconcile.batch_range(table, b), columns)
                  for b in batches if b != batch]
        assert all(not (got.keys & o.keys) for o in others)


def test_reconcile_without_sim_reads_the_his_as_the_cdc_role_and_lists_what_is_missing(settings, resources):
    """Nothing downstream (empty staging and front-end, no quarantine topic): every HIS key of the batch is
    missing, the first N are listed, and the verdict is NOT OK (exit 1)."""
    import devstack.postgres
    import psycopg2
    from click.testing import CliRunner
    from hisbridge.cli import main as cli_main
    from hisbridge.delivery import staging
    from hisbridge.delivery.flush import ensure_frontend
    from hisbridge.ops import connectors
    from hisbridge.settings import environment_for

    db = f"his_recon_{resources.id}"
    his_dsn = resources.database("his", db)
    devstack.postgres.his(settings).prepare_cdc(db)
    conn = load.connect(his_dsn)
    load.init_schema(conn, seed=SEED)
    activity = generate.day_activity(SEED, DAY, VISITS, BAD)
    load.load_backdated(conn, activity.events)
    conn.close()
    connectors.prepare_postgres_tables(his_dsn, MAPPING.sources)    # SELECT for the CDC role, as `apply` does
    stage_dsn = resources.database("frontend", f"recon_stage_{resources.id}")
    front_dsn = resources.database("frontend", f"recon_front_{resources.id}")
    for dsn, ensure in ((stage_dsn, staging.ensure_schema), (front_dsn, ensure_frontend)):
        c = psycopg2.connect(dsn)
        ensure(c)
        c.close()
    run = settings.with_values(connections={"his_dsn": his_dsn, "staging_dsn": stage_dsn, "frontend_dsn": front_dsn},
                               source={"db": db}, worker={"core_prefix": f"nocore{resources.id}"})
    want = expectations.sim_expectations(activity, MAPPING, CATALOG, generate.PRIMARY_KEYS)[("mjzzlxx", DAY.isoformat())]
    result = CliRunner().invoke(cli_main, ["reconcile", "--batch", DAY.isoformat(), "--table", "mjzzlxx",
                                           "--show", "5"], env=environment_for(run))
    assert result.exit_code == 1, result.output
    assert "expected = the HIS (postgres" in result.output and "as hisbridge_cdc)" in result.output
    n = len(want.delivered) + len(want.quarantined)
    line = next(l for l in result.output.splitlines() if " missing e.g. " in l)
    assert line.startswith(f"  mjzzlxx {DAY.isoformat()}: {n} missing e.g. ")
    listed = ast.literal_eval(line.split(" e.g. ", 1)[1])     # the list the report prints
    assert len(listed) == 5 and set(listed) <= want.delivered | {k for k, _ in want.quarantined}
    assert "reconciliation NOT OK: mjzzlxx of batch" in result.output
