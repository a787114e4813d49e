"""Connector size limits (issue 11 item 3, the Debezium side): a 1.5 MB HIS text value — over Kafka's 1 MB
defaults — reaches its raw topic instead of failing the task; the raw topic is created with the template's
max.message.bytes; a row over the configured limit is skipped by Connect (errors.tolerance=all) while the
task stays RUNNING and the next row still arrives. Own HIS database, connector and topics."""
from __future__ import annotations

import json

import psycopg2
import pytest
from hisbridge.ops import connectors
from hisbridge.ops.connectors import ConnectorSpec
from kafka import KafkaConsumer
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from support import wait_for

pytestmark = pytest.mark.stack
DDL = "CREATE SCHEMA big; CREATE TABLE big.doc (id int PRIMARY KEY, body text)"
LIMIT = 4 * 1024 * 1024        # this test's connector limit: 1.5 MB fits, 6 MB does not


@pytest.fixture(scope="module")
def his(settings, module_resources):
    res = module_resources
    db, dsn, prefix = res.cdc_his("bigrow", DDL)
    run = settings.with_values(connections={"his_dsn": dsn}, source={"db": db, "topic_prefix": prefix,
                                                                     "max_record_bytes": LIMIT})
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    spec = ConnectorSpec(res.connector(f"bigrow-{res.id}"), "postgres", ("big.doc",), heartbeat_ms=1000)
    connectors.apply(run, spec, timeout=120)
    yield run, conn, spec, f"{prefix}.big.doc"
    conn.close()


def _insert(conn, row_id: int, size: int) -> None:
    with conn.cursor() as cur:
        cur.execute("INSERT INTO big.doc VALUES (%s, repeat('病', %s))", (row_id, size // 3))   # 3 bytes in UTF-8


def _ids(bootstrap: str, topic: str, want: int) -> list[int]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=2000, fetch_max_bytes=LIMIT * 2,
                             max_partition_fetch_bytes=LIMIT * 2)
    seen: list[int] = []
    try:
        def got() -> bool:
            for msg in consumer:
                if msg.value:
                    seen.append(json.loads(msg.value)["payload"]["after"]["id"])
            return len(seen) >= want
        wait_for(f"{want} rows on {topic}", got, timeout=90, every=0.5)
    finally:
        consumer.close()
    return seen


def test_a_row_of_1_5_mb_arrives_and_the_topic_takes_the_templates_limit(his, settings):
    run, conn, spec, topic = his
    _insert(conn, 0, 100)
    # Connect creates the topic with the template's settings; a consumer asking first would have the broker
    # auto-create it with its own 1 MB default
    admin = KafkaAdminClient(bootstrap_servers=settings.connections.kafka_bootstrap)
    try:
        wait_for(f"{topic} created by Connect", lambda: topic in admin.list_topics(), timeout=60, every=0.5)
    finally:
        admin.close()
    _insert(conn, 1, 1_500_000)
    assert _ids(settings.connections.kafka_bootstrap, topic, 2) == [0, 1]
    admin = KafkaAdminClient(bootstrap_servers=settings.connections.kafka_bootstrap)
    try:
        config = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        admin.close()
    assert config["topic"][topic]["max.message.bytes"]["value"] == str(LIMIT)


def test_a_row_over_the_limit_is_skipped_and_the_task_keeps_running(his, settings):
    run, conn, spec, topic = his
    _insert(conn, 2, LIMIT + 2_000_000)
    _insert(conn, 3, 100)
    ids = _ids(settings.connections.kafka_bootstrap, topic, 3)
    assert ids == [0, 1, 3]          # row 2 is not in Kafka: reconcile against the HIS reports it missing
    state = connectors.ConnectClient(run.connections.connect_url).status(spec.name)
    assert state["connector"]["state"] == "RUNNING" and all(t["state"] == "RUNNING" for t in state["tasks"])
