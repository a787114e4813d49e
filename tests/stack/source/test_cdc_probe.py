"""Real CDC through the whole local stack: PostgreSQL (HIS) → Debezium on Kafka Connect → Kafka →
kafka-python and the Faust agent. A dedicated probe table (the awkward types: µs timestamp, numeric(12,2),
Chinese text, NULL) in its own HIS database keeps these tests independent of the HIS model; the database,
the connector (slot, publication), the topics and the worker's group are this run's and removed after it."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import devstack.postgres
import psycopg2
import pytest
from click.testing import CliRunner
from hisbridge.cli import main as cli_main
from hisbridge.contract import heartbeat_topic
from hisbridge.ops import connectors
from hisbridge.ops.connectors import ConnectorSpec
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from support import wait_for

pytestmark = pytest.mark.stack

PROBE_DDL = """CREATE SCHEMA IF NOT EXISTS stackprobe;
CREATE TABLE IF NOT EXISTS stackprobe.probe (
  id bigint PRIMARY KEY, seen_at timestamp(6) NOT NULL, amount numeric(12,2), label text, note text)"""

INSERTED = {"seen_at": datetime(2026, 3, 1, 17, 59, 59, 999999), "amount": Decimal("1234567890.12"),
            "label": "门急诊诊疗信息 张三", "note": None}
UPDATED = {"amount": Decimal("-0.01"), "note": "复诊 備註"}


class Probe:
    """This run's probe: HIS database, settings pointing at it, connector spec and topic names."""

    def __init__(self, base, res) -> None:
        self.db = f"probe_{res.id}"
        his_dsn = res.database("his", self.db)
        devstack.postgres.his(base).prepare_cdc(self.db)
        self.prefix = res.topics(f"probe{res.id}")
        self.settings = base.with_values(connections={"his_dsn": his_dsn}, source={"db": self.db,
                                                                                   "topic_prefix": self.prefix})
        self.spec = ConnectorSpec(res.connector(f"stackprobe-{res.id}"), "postgres", ("stackprobe.probe",),
                                  heartbeat_ms=1000)
        self.topic = f"{self.prefix}.stackprobe.probe"
        self.heartbeat_topic = res.topics(heartbeat_topic(self.prefix))

    def connection(self):
        conn = psycopg2.connect(self.settings.connections.his_dsn)
        conn.autocommit = True
        return conn


@pytest.fixture(scope="module")
def probe(settings, module_resources):
    probe = Probe(settings, module_resources)
    conn = probe.connection()
    try:
        with conn.cursor() as cur:
            cur.execute(PROBE_DDL)
    finally:
        conn.close()
    connectors.apply(probe.settings, probe.spec, timeout=120)
    return probe


def ensure_topic(bootstrap: str, topic: str) -> None:
    """On a fresh stack the raw topic appears only with the first change; the test must read from before it."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def consumer_at_end(bootstrap: str, topic: str) -> KafkaConsumer:
    ensure_topic(bootstrap, topic)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    wait_for(f"metadata of {topic}", lambda: consumer.topics() and consumer.partitions_for_topic(topic), 30)
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})]
    consumer.assign(partitions)
    consumer.seek_to_end(*partitions)
    for tp in partitions:
        consumer.position(tp)  # resolve the end offset now, before the changes are made
    return consumer


def row_id(key: dict | None) -> int | None:
    return key["payload"]["id"] if key else None


def collect(consumer: KafkaConsumer, wanted: int, expected: int, timeout: float = 60.0) -> list[tuple]:
    """(key, value) pairs of row `wanted` until `expected` records (tombstone included) arrived."""
    found: list[tuple] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(found) < expected:
        for records in consumer.poll(timeout_ms=500).values():
            for rec in records:
                key = json.loads(rec.key) if rec.key else None
                if row_id(key) == wanted:
                    found.append((key, json.loads(rec.value) if rec.value else None))
    return found


@pytest.fixture(scope="module")
def probe_changes(probe):
    """Insert, update, delete one fresh row; the envelopes as kafka-python reads them."""
    wanted = time.time_ns() // 1000
    consumer = consumer_at_end(probe.settings.connections.kafka_bootstrap, probe.topic)
    conn = probe.connection()
    with conn.cursor() as cur:
        cur.execute("INSERT INTO stackprobe.probe (id, seen_at, amount, label, note) VALUES (%s,%s,%s,%s,%s)",
                    (wanted, INSERTED["seen_at"], INSERTED["amount"], INSERTED["label"], INSERTED["note"]))
        cur.execute("UPDATE stackprobe.probe SET amount = %s, note = %s WHERE id = %s",
                    (UPDATED["amount"], UPDATED["note"], wanted))
        cur.execute("DELETE FROM stackprobe.probe WHERE id = %s", (wanted,))
    conn.close()
    records = collect(consumer, wanted, expected=4)
    consumer.close()
    return wanted, records


def field_schema(envelope: dict, image: str, column: str) -> dict:
    struct = next(f for f in envelope["schema"]["fields"] if f["field"] == image)
    return next(f for f in struct["fields"] if f["field"] == column)


def decimal_value(envelope: dict, image: str) -> Decimal:
    """decimal.handling.mode=precise: base64 of the big-endian two's-complement unscaled value."""
    scale = int(field_schema(envelope, image, "amount")["parameters"]["scale"])
    raw = base64.b64decode(envelope["payload"][image]["amount"])
    return Decimal(int.from_bytes(raw, "big", signed=True)).scaleb(-scale)


def micros_since_epoch(naive: datetime) -> int:
    """Debezium MicroTimestamp: the wall-clock value read as UTC, in µs."""
    return (naive - datetime(1970, 1, 1)) // timedelta(microseconds=1)


def test_insert_update_delete_arrive_with_op_codes_then_a_tombstone(probe_changes):
    _, records = probe_changes
    ops = [value["payload"]["op"] if value else None for _, value in records]
    assert ops == ["c", "u", "d", None]


def test_insert_envelope_keeps_microseconds_exact_decimal_chinese_text_and_null(probe_changes):
    _, records = probe_changes
    insert = records[0][1]
    after = insert["payload"]["after"]
    assert insert["payload"]["before"] is None
    assert field_schema(insert, "after", "seen_at")["name"] == "io.debezium.time.MicroTimestamp"
    assert after["seen_at"] == micros_since_epoch(INSERTED["seen_at"])
    assert decimal_value(insert, "after") == INSERTED["amount"]
    assert after["label"] == INSERTED["label"]
    assert after["note"] is None
    assert insert["payload"]["source"]["table"] == "probe"


def test_update_carries_full_before_and_after_images(probe_changes):
    _, records = probe_changes
    update = records[1][1]
    assert decimal_value(update, "before") == INSERTED["amount"]
    assert update["payload"]["before"]["note"] is None
    assert decimal_value(update, "after") == UPDATED["amount"]
    assert update["payload"]["after"]["note"] == UPDATED["note"]
    assert update["payload"]["after"]["seen_at"] == micros_since_epoch(INSERTED["seen_at"])


def test_delete_has_the_last_image_before_and_no_after(probe_changes):
    wanted, records = probe_changes
    delete = records[2][1]
    assert delete["payload"]["after"] is None
    assert delete["payload"]["before"]["id"] == wanted
    assert delete["payload"]["before"]["note"] == UPDATED["note"]


@pytest.fixture(scope="module")
def faust_worker(tmp_path_factory, probe, module_resources):
    """`hisbridge worker` as its own process with a fresh consumer group and its own received file."""
    out = tmp_path_factory.mktemp("worker") / "received.jsonl"
    log = out.with_suffix(".log")
    app_id = module_resources.groups_starting(f"stackprobe-{module_resources.id}")
    module_resources.topics(app_id)            # Faust's own leader-assignor topic
    env = {**os.environ, "HISBRIDGE_WORKER_APP_ID": app_id, "HISBRIDGE_WORKER_OUT": str(out),
           "HISBRIDGE_WORKER_WEB_PORT": "0", "HISBRIDGE_RAW_TOPIC": probe.topic, "HISBRIDGE_AGENTS": "probe"}
    with open(log, "wb") as log_fh:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "hisbridge"), "worker", "--loglevel", "info"],
                                env=env, stdout=log_fh, stderr=subprocess.STDOUT)
    yield out, log, proc
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def received_for(out: Path, wanted: int) -> list[dict]:
    if not out.exists():
        return []
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [rec for rec in lines if row_id(rec["key"]) == wanted]


def test_the_faust_agent_receives_the_same_envelopes(probe, probe_changes, faust_worker):
    wanted, records = probe_changes
    out, log, proc = faust_worker

    def all_received():
        assert proc.poll() is None, f"worker exited:\n{log.read_text(errors='replace')[-3000:]}"
        return len(received_for(out, wanted)) >= len(records)

    wait_for("the worker to receive every envelope", all_received, 90, 0.5)
    got = received_for(out, wanted)
    assert [rec["value"] for rec in got] == [value for _, value in records]
    assert all(rec["topic"] == probe.topic for rec in got)


def test_heartbeats_arrive_while_nothing_changes(probe):
    consumer = consumer_at_end(probe.settings.connections.kafka_bootstrap, probe.heartbeat_topic)
    started_ms = int(time.time() * 1000)
    beats: list[int] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(beats) < 3:
        for records in consumer.poll(timeout_ms=500).values():
            beats += [json.loads(rec.value)["payload"]["ts_ms"] for rec in records]
    consumer.close()
    assert len(beats) >= 3
    assert beats == sorted(beats) and beats[-1] > beats[0]
    assert beats[-1] >= started_ms - 2000


def test_second_apply_is_a_noop(probe):
    client = connectors.ConnectClient(probe.settings.connections.connect_url)
    before = client.current_config(probe.spec.name)
    assert connectors.apply(probe.settings, probe.spec) == "unchanged"
    assert connectors.cdc_password(probe.settings) not in json.dumps(before)  # Connect holds a file reference
    assert client.current_config(probe.spec.name) == before
    ok, failure = connectors.running_or_failure(client.status(probe.spec.name))
    assert ok and failure is None


def test_wrong_his_password_is_named_and_not_echoed(probe, resources, monkeypatch):
    wrong = f"wrong-{uuid.uuid4().hex}"
    for key, value in {"HISBRIDGE_HIS_PASSWORD": wrong, "HISBRIDGE_HIS_DSN": probe.settings.connections.his_dsn,
                       "HISBRIDGE_TOPIC_PREFIX": probe.prefix}.items():
        monkeypatch.setenv(key, value)
    name = resources.connector(f"stackprobe-badpassword-{resources.id}")
    result = CliRunner().invoke(cli_main, ["connectors", "apply", "--name", name,
                                           "--tables", "stackprobe.probe", "--timeout", "60"])
    assert result.exit_code == 2        # a configuration error (hisbridge.messages.EXIT_USAGE), not a failed check
    assert f'password authentication failed for user "{probe.settings.source.user}"' in result.output
    assert wrong not in result.output
    assert connectors.ConnectClient(probe.settings.connections.connect_url).current_config(name) is None


def test_unreachable_connect_is_named(probe):
    unreachable = probe.settings.with_values(connections={"connect_url": "http://127.0.0.1:9"})
    with pytest.raises(connectors.ConnectorError, match="Kafka Connect is unreachable at http://127.0.0.1:9"):
        connectors.apply(unreachable, probe.spec, timeout=5)
