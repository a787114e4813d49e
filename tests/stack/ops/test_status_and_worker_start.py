"""`hisbridge status` and `hisbridge worker --background` on the real stack: status answers within seconds when
Kafka or a database is unreachable, --json carries every section, a PAUSED connector is shown as PAUSED with
its slot's retained WAL growing; a worker that cannot start (no SM4 key) is reported with the reason from its
log and a non-zero exit, never "started"."""
from __future__ import annotations

import json
import os
import time

import psycopg2
import pytest
from click.testing import CliRunner
from hisbridge.cli import main as cli_main
from hisbridge.ops import connectors
from hisbridge.ops.connectors import ConnectClient, ConnectorSpec
from hisbridge.settings import environment_for
from support import free_port, wait_for

pytestmark = pytest.mark.stack


def run_cli(env: dict[str, str], *args: str):
    return CliRunner().invoke(cli_main, list(args), env={**os.environ, **env}, catch_exceptions=False)


def test_status_says_at_once_what_is_down(settings):
    dead = free_port()
    env = {"HISBRIDGE_KAFKA_BOOTSTRAP": f"127.0.0.1:{dead}",
           "HISBRIDGE_STAGING_DSN": f"host=127.0.0.1 port={dead} dbname=staging user=postgres",
           "HISBRIDGE_CONNECT_URL": f"http://127.0.0.1:{dead}"}
    started = time.monotonic()
    result = run_cli(env, "status", "--json")
    took = time.monotonic() - started
    assert result.exit_code == 0, result.output
    sections = json.loads(result.output)
    assert took < 15, took         # each reader gives up after connections.connect_timeout (3 s), all at once
    for name in ("lag", "quarantine", "delivery", "connectors"):
        assert sections[name]["ok"] is False and str(dead) in sections[name]["error"], (name, sections[name])
    assert sections["stack"]["ok"] and sections["slots"]["ok"]


@pytest.fixture(scope="module")
def paused(settings, module_resources):
    """A connector of this run, paused: its slot keeps the WAL the HIS writes meanwhile."""
    res = module_resources
    db, his_dsn, prefix = res.cdc_his("status", "CREATE SCHEMA statusprobe; "
                                                "CREATE TABLE statusprobe.t (id int PRIMARY KEY, pad text)")
    conn = psycopg2.connect(his_dsn)
    conn.autocommit = True
    name = res.connector(f"status-{res.id}")
    run = settings.with_values(connections={"his_dsn": his_dsn}, source={"db": db, "topic_prefix": prefix})
    connectors.apply(run, ConnectorSpec(name, "postgres", ("statusprobe.t",), heartbeat_ms=1000), timeout=120)
    client = ConnectClient(run.connections.connect_url)
    assert client.request("PUT", f"/connectors/{name}/pause")[0] in (200, 202, 204)
    wait_for("connector and task PAUSED", lambda: {p.get("state") for p in [
        (client.status(name) or {}).get("connector", {}), *(client.status(name) or {}).get("tasks", [])]} == {"PAUSED"},
        60, 0.5)
    with conn.cursor() as cur:          # ~16 MB of WAL the paused slot cannot confirm
        cur.execute("INSERT INTO statusprobe.t SELECT g, repeat('x', 1000) FROM generate_series(1, 16000) g")
    conn.close()
    yield run, name
    client.request("PUT", f"/connectors/{name}/resume")


def test_a_paused_connector_is_paused_and_its_slot_shows_the_wal_it_keeps(paused):
    run, name = paused
    sections = json.loads(run_cli(environment_for(run, ["connections.his_dsn", "source.db"]), "status", "--json").output)
    (mine,) = [c for c in sections["connectors"]["data"] if c["name"] == name]
    assert mine["state"] == "PAUSED" and all(t["state"] == "PAUSED" for t in mine["tasks"])
    (slot,) = [s for s in sections["slots"]["data"] if s["name"] == connectors.slot_name(name)]
    assert slot["wal_status"] in ("reserved", "extended") and slot["retained_bytes"] > 8 * 1024 * 1024
    assert slot["safe_wal_size"] is not None        # max_slot_wal_keep_size is set on the local HIS
    screen = run_cli(environment_for(run, ["connections.his_dsn", "source.db"]), "status").output
    assert f"{name}: PAUSED" in screen and f"{connectors.slot_name(name)}: " in screen


def test_worker_background_without_sm4_key_fails_with_the_reason(settings, resources):
    app_id = resources.groups_starting(f"hisbridge-nokey-{resources.id}")
    resources.topics(app_id)
    env = {"HISBRIDGE_SM4_KEY": "", "HISBRIDGE_SM4_KEY_FILE": "", "HISBRIDGE_WORKER_APP_ID": app_id,
           "HISBRIDGE_WORKER_WEB_PORT": str(free_port()), "HISBRIDGE_LANG": "both"}
    from devstack.worker import Worker
    if Worker(settings).is_running():
        pytest.fail("a background worker named `worker` runs on this stack: stop it (`hisbridge stack down worker`)")
    started = time.monotonic()
    result = CliRunner().invoke(cli_main, ["worker", "--background"],
                                env={k: v for k, v in {**os.environ, **env}.items() if v != ""} |
                                {"HISBRIDGE_SM4_KEY": "", "HISBRIDGE_SM4_KEY_FILE": ""})
    assert result.exit_code != 0 and "started" not in result.output and "已启动" not in result.output
    assert "no SM4 key" in result.output and "HISBRIDGE_SM4_KEY" in result.output, result.output
    assert time.monotonic() - started < 60
    assert not Worker(settings).is_running()
