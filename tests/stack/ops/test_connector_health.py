"""Connector health on the real stack: a Debezium task made to fail for real — its role lost the right to
read a captured table, so the snapshot fails with "permission denied" — is restarted by the worker's
supervisor with back-off, every restart is counted and logged with the trace summary, the metrics show the
FAILED task with its reason, and once the right is back the task stays RUNNING.

(A refused or dropped HIS connection, or a rotated password, never FAILS a Debezium PostgreSQL task: its
start is retried forever with the task shown RUNNING — so the rights, not the connection, are broken here.)
The HIS database, connector, slot, topics and worker are this run's own."""
from __future__ import annotations

import os
import re
import urllib.request

import psycopg2
import pytest
from devstack.worker import Worker
from hisbridge.ops import connectors
from hisbridge.ops.connectors import (CAPTURE_GROUP, ConnectClient, ConnectorError, ConnectorSpec,
                                      running_or_failure)
from hisbridge.settings import environment_for
from support import free_port, wait_for

pytestmark = pytest.mark.stack
TABLE = "healthprobe.t"


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in a /metrics text (labels matched as given, others ignored)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def set_read_right(dsn: str, granted: bool) -> None:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f"GRANT SELECT ON {TABLE} TO {CAPTURE_GROUP}" if granted
                        else f"REVOKE SELECT ON {TABLE} FROM {CAPTURE_GROUP}")
    finally:
        conn.close()


@pytest.fixture(scope="module")
def watched(settings, module_resources, tmp_path_factory):
    """This run's HIS database with one table, and a worker (no stages) watching the connector to come."""
    res = module_resources
    db, his_dsn, prefix = res.cdc_his("health", f"CREATE SCHEMA healthprobe; CREATE TABLE {TABLE} (id int PRIMARY KEY); "
                                                f"INSERT INTO {TABLE} VALUES (1)")
    name = res.connector(f"health-{res.id}")
    # max_retries 1: Debezium retries a failed snapshot once (every 10 s), then the task is FAILED
    run = settings.with_values(connections={"his_dsn": his_dsn},
                               source={"db": db, "topic_prefix": prefix, "connector": name, "max_retries": 1})
    port = free_port()
    app_id = res.groups_starting(f"hisbridge-health-{res.id}")
    res.topics(app_id)
    key = tmp_path_factory.mktemp("health") / "sm4.key"
    key.write_text(os.urandom(16).hex() + "\n")      # throwaway test key
    env = {**environment_for(run, ["connections.his_dsn", "source.db", "source.topic_prefix", "source.connector"]),
           "HISBRIDGE_AGENTS": "none", "HISBRIDGE_WORKER_APP_ID": app_id, "HISBRIDGE_WORKER_WEB_PORT": str(port),
           "HISBRIDGE_WATCH_CONNECTORS": name, "HISBRIDGE_METRICS_EVERY": "1", "HISBRIDGE_RESTART_FIRST": "1",
           "HISBRIDGE_RESTART_CAP": "4", "HISBRIDGE_RESTART_RESET": "3600", "HISBRIDGE_SM4_KEY_FILE": str(key)}
    worker = Worker(run.with_values(worker={"web_port": port, "app_id": app_id}), f"worker-health-{res.id}")
    res.finally_(worker.stop)
    worker.start_background(env=env)
    worker.wait_healthy(120)
    return run, name, port, worker


def test_a_failed_task_is_restarted_counted_and_reported_until_it_runs_again(watched):
    run, name, port, worker = watched
    since = worker.log_size()
    his_dsn = run.connections.his_dsn
    connectors.prepare_postgres_tables(his_dsn, (TABLE,))
    set_read_right(his_dsn, False)
    try:
        connectors.apply(run, ConnectorSpec(name, "postgres", (TABLE,), heartbeat_ms=1000), timeout=120,
                         prepare=False)
    except ConnectorError:
        pass        # FAILED before apply saw it RUNNING: what this test wants

    def failed_text() -> str | None:
        text = scrape(port)
        return text if 'hisbridge_connector_task_failed_info{connector="%s"' % name in text else None

    text = wait_for("the task FAILED and reported with its reason", failed_text, 120, 0.5)
    reason = re.search(r'hisbridge_connector_task_failed_info\{[^}]*reason="([^"]*)"', text).group(1)
    assert "permission denied for table t" in reason, reason

    # it keeps failing: restarted again and again with a growing back-off, each restart counted; the log writes
    # the first with its reason and, being a repeated error, the ones within the next minute only as a count
    # on the next line after it (hisbridge.logs.RepeatFilter)
    wait_for("two restarts in a row", lambda: (sample(scrape(port), "hisbridge_connector_task_consecutive_restarts",
                                                     connector=name, task="0") or 0) >= 2, 120, 1)
    with open(worker.log, "rb") as fh:
        fh.seek(since)
        log = fh.read().decode(errors="replace")
    restarts = [line for line in log.splitlines() if f"connector {name} task 0 FAILED" in line and "restarted" in line]
    assert len(restarts) >= 1 and all("permission denied for table t" in line for line in restarts), restarts

    set_read_right(his_dsn, True)
    client = ConnectClient(run.connections.connect_url)
    wait_for("RUNNING again after a restart", lambda: running_or_failure(client.status(name))[0], 120, 1)
    wait_for("the FAILED series gone", lambda: failed_text() is None, 30, 1)
    total = sample(scrape(port), "hisbridge_connector_task_restarts_total", connector=name, task="0")
    assert total is not None and total >= 2
