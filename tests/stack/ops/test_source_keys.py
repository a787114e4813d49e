"""Reconcile's HIS side on both engines: the keys ops.source_keys derives from the source mapping and reads from
a loaded simulated HIS are, per catalog table and batch, exactly the keys the simulator's manifest says must
arrive downstream (delivered or quarantined); and a missing key is found by `reconcile` without --sim-*."""
from __future__ import annotations

from datetime import date

import pytest
from hisbridge.catalog import load_catalog
from hisbridge.chain.mapping import load_mapping
from hisbridge.ops import reconcile, source_keys
from hisbridge.sim import expectations, generate, load
from support.mariadb import own_mariadb

pytestmark = pytest.mark.stack
SEED, VISITS, BAD = 31, 400, 0.05
DAY = date(2026, 3, 5)        # the 5th: the monthly and yearly evaluation indicators are filled too
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
