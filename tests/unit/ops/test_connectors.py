"""Pure parts of hisbridge.ops.connectors: rendering the template, naming, reading Connect's answers."""
from __future__ import annotations

import json

import pytest
from hisbridge.ops import connectors
from hisbridge.ops.connectors import ConnectorSpec
from hisbridge.settings import defaults

SETTINGS = defaults()


def test_every_postgres_template_placeholder_gets_a_value_and_the_password_only_where_asked():
    spec = ConnectorSpec("Demo-1", "postgres", ("his.op_register",), heartbeat_ms=2500)
    template = json.loads(connectors.template_path(SETTINGS, "postgres").read_text(encoding="utf-8"))
    rendered = connectors.render(template, connectors.template_values(spec, SETTINGS, "s3cret"))
    assert not any("${" in value for value in rendered.values())
    assert [k for k, v in rendered.items() if "s3cret" in v] == ["database.password"]
    assert rendered["slot.name"] == "hisbridge_demo_1"
    assert rendered["publication.name"] == "hisbridge_demo_1_pub"
    assert rendered["table.include.list"] == "his.op_register,hisbridge.heartbeat"
    assert rendered["heartbeat.interval.ms"] == "2500"


@pytest.mark.parametrize("kind", ["mariadb", "mysql"])
def test_binlog_templates_render_without_the_postgres_heartbeat_table(kind):
    spec = ConnectorSpec("m", kind, ("his.visit",))
    template = json.loads(connectors.template_path(SETTINGS, kind).read_text(encoding="utf-8"))
    rendered = connectors.render(template, connectors.template_values(spec, SETTINGS, "pw"))
    assert rendered["table.include.list"] == "his.visit"
    assert not any("${" in value for value in rendered.values())


def test_the_mariadb_template_renders_history_keepalive_lock_free_snapshot_and_databases_from_tables():
    spec = ConnectorSpec("his-e2e", "mariadb", ("his.op_visit", "his.pat_master", "emr.note"), heartbeat_ms=2000)
    template = json.loads(connectors.template_path(SETTINGS, "mariadb").read_text(encoding="utf-8"))
    rendered = connectors.render(template, connectors.template_values(spec, SETTINGS, "pw"))
    assert rendered["connector.class"] == "io.debezium.connector.mariadb.MariaDbConnector"
    assert rendered["database.include.list"] == "emr,his"
    assert rendered["table.include.list"] == "his.op_visit,his.pat_master,emr.note"
    assert rendered["schema.history.internal.kafka.topic"] == "hisbridge.schema-history.his-e2e"
    assert rendered["schema.history.internal.kafka.bootstrap.servers"] == SETTINGS.connections.kafka_bootstrap
    assert rendered["snapshot.locking.mode"] == "none" and rendered["connect.keep.alive.interval.ms"] == "5000"
    assert "hisbridge.heartbeat" in rendered["heartbeat.action.query"] and rendered["heartbeat.interval.ms"] == "2000"
    assert "database.timezone" not in rendered and "database.connectionTimeZone" not in rendered


def test_each_connector_is_its_own_binlog_replica_unless_one_is_configured():
    a, b = connectors.replica_server_id("his-a", None), connectors.replica_server_id("his-b", None)
    assert a != b and a == connectors.replica_server_id("his-a", None) and 1_000_000 <= a < 1_000_000 + 2 ** 30
    assert connectors.replica_server_id("his-a", 4242) == 4242


def test_an_unknown_placeholder_is_an_operator_error():
    with pytest.raises(connectors.ConnectorError, match=r"\$\{nope\}"):
        connectors.render({"a": "${nope}"}, {})


def test_failure_reason_takes_the_deepest_cause_without_the_package():
    trace = ("org.apache.kafka.connect.errors.ConnectException: Error while connecting\n"
             "\tat io.debezium.Foo.bar(Foo.java:1)\n"
             "Caused by: org.postgresql.util.PSQLException: FATAL: password authentication failed for user \"x\"\n"
             "\tat org.postgresql.Baz(Baz.java:2)\n")
    assert connectors.failure_reason(trace) == 'PSQLException: FATAL: password authentication failed for user "x"'


def test_running_needs_connector_and_every_task_running_and_reports_a_failed_task():
    running = {"connector": {"state": "RUNNING"}, "tasks": [{"id": 0, "state": "RUNNING"}]}
    assert connectors.running_or_failure(running) == (True, None)
    assert connectors.running_or_failure({"connector": {"state": "RUNNING"}, "tasks": []}) == (False, None)
    failed = {"connector": {"state": "RUNNING"},
              "tasks": [{"id": 0, "state": "FAILED", "trace": "java.lang.IllegalStateException: boom"}]}
    assert connectors.running_or_failure(failed) == (False, "task 0 FAILED: IllegalStateException: boom")


def test_validation_errors_lists_each_flagged_key():
    body = {"configs": [{"value": {"name": "database.hostname", "errors": ["unreachable"]}},
                        {"value": {"name": "topic.prefix", "errors": []}}]}
    assert connectors.validation_errors(body) == ["database.hostname: unreachable"]


def test_redact_masks_the_secret():
    assert connectors.redact("pw=abc in abc", "abc") == "pw=****** in ******"


def test_secret_file_is_private_and_rewritten_only_when_the_password_changes(tmp_path):
    path = tmp_path / "secrets" / "c.properties"
    assert connectors.write_secret(path, "p\\w") is True
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text() == "password=p\\\\w\n"  # java.util.Properties escaping
    assert connectors.write_secret(path, "p\\w") is False
    assert connectors.write_secret(path, "other") is True


def test_the_connector_config_refers_to_the_password_file_not_the_password(tmp_path):
    spec = ConnectorSpec("c", "postgres", ("s.t",))
    template = json.loads(connectors.template_path(SETTINGS, "postgres").read_text(encoding="utf-8"))
    ref = connectors.password_reference(tmp_path / "c.properties")
    rendered = connectors.render(template, connectors.template_values(spec, SETTINGS, ref))
    assert rendered["database.password"] == f"${{file:{tmp_path / 'c.properties'}:password}}"
