"""`connectors apply` without --tables captures what the source mapping reads (drivers and reference
tables), and every apply says which tables it added or removed compared with the running connector — on
the real Kafka Connect with Debezium, against a simulated HIS database of this test's own."""
from __future__ import annotations

import pytest
from click.testing import CliRunner
from hisbridge.catalog import load_catalog
from hisbridge.chain.mapping import load_mapping
from hisbridge.cli import main

pytestmark = pytest.mark.stack


def apply(env: dict, *extra: str):
    result = CliRunner().invoke(main, ["connectors", "apply", "--name", env["name"], "--heartbeat-ms", "1000",
                                       *extra], env={"HISBRIDGE_LANG": "en", **env["vars"]})
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def test_apply_takes_the_mapping_tables_and_reports_the_difference(settings, resources):
    _, his_dsn, prefix = resources.cdc_his("his_conn")
    env = {"name": resources.connector(f"cli-apply-{resources.id}"),
           "vars": {"HISBRIDGE_HIS_DSN": his_dsn, "HISBRIDGE_TOPIC_PREFIX": prefix, "HISBRIDGE_CAPTURE_TABLES": None}}
    loaded = CliRunner().invoke(main, ["sim", "init"], env=env["vars"])
    assert loaded.exit_code == 0, loaded.output
    mapped = load_mapping(load_catalog()).sources
    assert len(mapped) == 12 and "his.pat_master" in mapped and "his.dept_dict" in mapped   # reference tables too

    first = apply(env, "--tables", "his.op_visit,his.pat_master")
    assert first == (f"connector {env['name']}: created, RUNNING, 2 tables captured; added his.op_visit, "
                     f"his.pat_master; removed -")
    rest = ", ".join(t for t in mapped if t not in ("his.op_visit", "his.pat_master"))
    assert apply(env) == f"connector {env['name']}: updated, RUNNING, 12 tables captured; added {rest}; removed -"
    assert apply(env) == f"connector {env['name']}: unchanged, RUNNING, 12 tables captured; added -; removed -"
    others = ", ".join(t for t in mapped if t != "his.op_visit")
    assert apply(env, "--tables", "his.op_visit") == (f"connector {env['name']}: updated, RUNNING, 1 tables "
                                                      f"captured; added -; removed {others}")
