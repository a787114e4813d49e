"""The transform end to end: HIS PostgreSQL → real Debezium (Kafka Connect) → raw topics → the real Faust
worker (`python -m hisbridge.cli.worker`, HISBRIDGE_AGENTS=transform) → core topics and quarantine.

Re-runnable on the same stack: every run has its own HIS business keys (run id in every visit, register and
patient id), its own core topic prefix and consumer group (app id). The HIS side is the test's own database
`his_transformtest` (created and CDC-prepared here when missing), never the shared `his`: a connector's
snapshot and raw topics hold everything in its database, and every new worker re-reads them, so on `his` the
test's runtime grew with whatever `make demo` or `hisbridge sim` had loaded there. Its Debezium connector
`his-transformtest-db` is kept between runs (a connector per run would snapshot and create a slot each time;
kept, it costs one replication slot and its raw topics grow only by this test's ~30 rows a run) and has its
own topic prefix `histrdb`: two connectors writing the same `<prefix>.<schema>.<table>` would duplicate every
event, and two Debezium connectors with one prefix on one Connect worker also clash on their metrics names
(the second waits a minute per phase). Applying it again with the same tables is a no-op. The connector of
older checkouts (`his-transformtest`, prefix `histr`, on `his`) is removed with its slot and topics.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg2
import psycopg2.errors
import pytest
from kafka import KafkaConsumer, TopicPartition

from hisbridge import avrocodec, config, connectors, crypto
from hisbridge.catalog import load_catalog
from hisbridge.mapping import load_mapping
from hisbridge.sim import load as sim_load
from hisbridge.stack import postgres
from hisbridge.topics import not_compacted
from hisbridge.transformloop import transform_group
from test_sink_pipeline import wait_for   # one polling helper for the stack tests

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[2]
# the simulated hospital's own mapping; the unit-test fixture (same HIS layout) only while it is missing
DEMO_MAPPING = ROOT / "schemas" / "mapping" / "demo_hospital.yaml"
FIXTURE_MAPPING = ROOT / "tests" / "unit" / "fixtures" / "mapping" / "test_hospital.yaml"
MAPPING = DEMO_MAPPING if DEMO_MAPPING.exists() else FIXTURE_MAPPING
CATALOG = load_catalog()
TABLE = CATALOG.table("mjzzlxx")
KEY = crypto.parse_key(os.urandom(16).hex(), "test")      # throwaway SM4 key
HIS_DB = "his_transformtest"                              # this test's own HIS database
# a new name and prefix with the new database: Connect keeps a connector's offsets (LSNs of its old
# database) under its name, and the old prefix's raw topics hold the shared database's snapshot
CONNECTOR = "his-transformtest-db"
PREFIX = "histrdb"
STALE_CONNECTOR, STALE_PREFIX = "his-transformtest", "histr"   # older checkouts: on the shared `his`
LOOKUP_WAIT = 20                                          # seconds a visit waits for its patient
D = date(2026, 3, 2)
DEPT, DOCTOR = "1001", "100100"             # in the simulator's dictionaries and the mapping's value maps
VALID_ID, BAD_ID = "11010519491231002X", "110105194912310021"   # GB 11643 worked example; wrong check char


def at(day: date, h: int, m: int = 0, s: int = 0, us: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, h, m, s, us)


class HisRun:
    """This run's HIS rows (ids carry the run id) and what the pipeline must make of them."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex[:8].upper()
        self.now = datetime(2026, 3, 2, 8, 0)

    def pid(self, n: str) -> str:
        return f"P{self.id}{n}"

    def vid(self, n: str) -> str:
        return f"V{self.id}{n}"

    def patient(self, n: str, **over) -> dict:
        row = dict(patient_id=self.pid(n), name=f"测试{n}", sex="F", birth_date=date(1949, 12, 31), id_type="SFZ",
                   id_no=VALID_ID, nationality="中国", nation="HA", phone="13800138000",
                   address=f"广州市越秀区{n}号", contact_name="李四", health_card_no=f"HC{self.id}{n}",
                   created_at=self.now, updated_at=self.now)
        return {**row, **over}

    def register(self, n: str, reg_time: datetime) -> dict:
        return dict(reg_id=f"R{self.id}{n}", patient_id=self.pid(n), dept_code=DEPT, doctor_code=DOCTOR,
                    visit_type="PT", reg_time=reg_time, fee_type="ZGYB", reg_fee=Decimal("10.00"), status="V",
                    updated_at=self.now)

    def visit(self, n: str, reg_time: datetime, fee: str = "123.45") -> dict:
        return dict(visit_id=self.vid(n), reg_id=f"R{self.id}{n}", patient_id=self.pid(n), dept_code=DEPT,
                    doctor_code=DOCTOR, visit_time=reg_time + timedelta(minutes=5), first_visit="Y",
                    chief_complaint="头痛3天", total_fee=Decimal(fee), updated_at=self.now)

    def diagnosis(self, n: str, reg_time: datetime) -> dict:
        return dict(visit_id=self.vid(n), seq=1, diag_type="1", icd_code="I10.x00x002", icd_name="高血压",
                    diag_time=reg_time + timedelta(minutes=10), doctor_code=DOCTOR, updated_at=self.now)


def his_admin_dsn(dbname: str) -> str:
    return f"host=127.0.0.1 port={config.his_pg_port()} dbname={dbname} user=postgres"


def ensure_his_database() -> str:
    """The test's own HIS database, created when missing and prepared for CDC like `stack up` prepares `his`
    (CDC role's CREATE for its publication, capture group, heartbeat table): connectors/postgres-setup.sql.
    Returns its DSN."""
    admin = psycopg2.connect(his_admin_dsn("postgres"))
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (HIS_DB,))
            if not cur.fetchone():
                try:
                    cur.execute(f'CREATE DATABASE "{HIS_DB}"')
                except psycopg2.errors.DuplicateDatabase:
                    pass                     # another run created it in the meantime
    finally:
        admin.close()
    dsn = his_admin_dsn(HIS_DB)
    conn = sim_load.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass('hisbridge.heartbeat')")
            prepared = cur.fetchone()[0] is not None
    finally:
        conn.close()
    if not prepared:
        inst = postgres.his()
        postgres.psql(inst, HIS_DB, file=config.connectors_dir() / "postgres-setup.sql",
                      variables={"cdc_user": config.his_cdc_user()},
                      env={"HISBRIDGE_HIS_PASSWORD": postgres.ensure_cdc_password()})
    return dsn


def ensure_his(conn) -> None:
    """Schema `his` with the dictionaries (seed 1: they hold DEPT and DOCTOR); idempotent."""
    sim_load.init_schema(conn, seed=1)


def retire_stale_connector() -> None:
    """The connector of older checkouts captured the shared `his`: delete it, its slot (it would pin the
    shared database's WAL forever) and its raw topics (the shared database's snapshot)."""
    if connectors.current_config(STALE_CONNECTOR) is not None:
        connectors.delete(STALE_CONNECTOR)
    slot = connectors.slot_name(STALE_CONNECTOR)

    def slot_dropped() -> bool:      # the task releases the slot a moment after the delete
        conn = psycopg2.connect(his_admin_dsn("postgres"))
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                            "WHERE slot_name = %s AND NOT active", (slot,))
                cur.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (slot,))
                return cur.fetchone()[0] == 0
        finally:
            conn.close()

    wait_for(f"the stale replication slot {slot} to be dropped", slot_dropped, timeout=60, every=1)
    from kafka.admin import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=config.kafka_bootstrap())
    try:
        stale = [t for t in admin.list_topics()
                 if t.startswith(f"{STALE_PREFIX}.") or t == f"__debezium-heartbeat.{STALE_PREFIX}"]
        if stale:
            admin.delete_topics(stale)
    finally:
        admin.close()


def insert(conn, table: str, row: dict) -> None:
    cols = list(row)
    with conn, conn.cursor() as cur:
        cur.execute(f"INSERT INTO his.{table} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
                    [row[c] for c in cols])


def execute(conn, statement: str, params: tuple) -> None:
    with conn, conn.cursor() as cur:
        cur.execute(statement, params)


def apply_connector(tables: set[str], monkeypatch) -> None:
    """Our connector on our database, with our prefix; tables other runs added stay (an include list never
    shrinks here)."""
    monkeypatch.setenv("HISBRIDGE_TOPIC_PREFIX", PREFIX)
    monkeypatch.setenv("HISBRIDGE_HIS_DB", HIS_DB)
    current = connectors.current_config(CONNECTOR) or {}
    had = {t for t in current.get("table.include.list", "").split(",") if t and t != connectors.HEARTBEAT_TABLE}
    connectors.apply(connectors.ConnectorSpec(CONNECTOR, "postgres", tuple(sorted(had | tables))), timeout=180)


class Worker:
    def __init__(self, tmp: Path, run_id: str, lookup_wait: int = LOOKUP_WAIT) -> None:
        self.tmp, self.log, self.lookup_wait = tmp, tmp / "worker.log", lookup_wait
        self.app_id = f"hisbridge-transformtest-{run_id.lower()}"
        self.core_prefix = f"coretr{run_id.lower()}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = dict(os.environ, HISBRIDGE_WORKER_APP_ID=self.app_id, HISBRIDGE_WORKER_WEB_PORT="0",
                   HISBRIDGE_AGENTS="transform", HISBRIDGE_CORE_PREFIX=self.core_prefix,
                   HISBRIDGE_MAPPING=str(MAPPING), HISBRIDGE_SM4_KEY=KEY.key.hex(),
                   HISBRIDGE_LOOKUP_WAIT=str(self.lookup_wait), HISBRIDGE_TOPIC_PREFIX=PREFIX,
                   HISBRIDGE_TRANSFORM_WITHIN="0.3",
                   HISBRIDGE_RAW_TOPIC=f"{self.app_id}-probe", HISBRIDGE_WORKER_OUT=str(self.tmp / "probe.jsonl"),
                   HISBRIDGE_VAR=str(self.tmp / "var"), BROKER_SESSION_TIMEOUT="10", BROKER_HEARTBEAT_INTERVAL="1")
        env.pop("HISBRIDGE_SM4_KEY_FILE", None)
        (self.tmp / "var").mkdir(exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "hisbridge.cli.worker"], env=env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def committed(self) -> dict[str, int]:
        """The group's committed offset per raw topic (partition 0: raw topics have one)."""
        from kafka.admin import KafkaAdminClient
        admin = KafkaAdminClient(bootstrap_servers=config.kafka_bootstrap())
        try:
            group = transform_group(self.app_id)
            offsets = admin.list_group_offsets({group: None}).get(group, {})
        finally:
            admin.close()
        return {tp.topic: meta.offset for tp, meta in offsets.items()}

    def stop(self) -> None:
        """kill -9: no shutdown hook runs, no offset is committed on the way out."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-5000:] if self.log.exists() else ""

    def topic(self, table: str) -> str:
        return f"{self.core_prefix}.{table}"


class CoreReader:
    """Everything on this run's core topics, decoded: data records, quarantine entries and marks."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.schemas = avrocodec.schemas_by_fingerprint(avrocodec.load_all().values())
        self.consumer = KafkaConsumer(bootstrap_servers=config.kafka_bootstrap(), auto_offset_reset="earliest",
                                      enable_auto_commit=False, group_id=None, metadata_max_age_ms=2000)
        self.assigned = False
        self.records: list[dict] = []
        self.quarantine: list[dict] = []
        self.marks: list[tuple[str, int, dict]] = []

    def assign(self) -> bool:
        """Read every partition of the run's core topics once the worker has created them all (a pattern
        subscription would only notice topics created later at its next metadata refresh)."""
        wanted = [self.worker.topic(t) for t in [*CATALOG.tables, "quarantine"]]
        parts = [(t, self.consumer.partitions_for_topic(t)) for t in wanted]
        if any(not p for _, p in parts):
            return False
        self.consumer.assign([TopicPartition(t, n) for t, ps in parts for n in ps])
        self.assigned = True
        return True

    def poll(self) -> None:
        if not self.assigned and not self.assign():
            return
        for tp, messages in self.consumer.poll(timeout_ms=500).items():
            for m in messages:
                headers = {k: v for k, v in m.headers}
                if headers.get("hisbridge.kind") == b"watermark":
                    self.marks.append((m.topic, m.partition, json.loads(m.value)))
                elif m.topic == self.worker.topic("quarantine"):
                    self.quarantine.append(json.loads(m.value))
                else:
                    self.records.append({"topic": m.topic, "key": m.key.decode(), "headers": headers,
                                         "value": avrocodec.decode(m.value, self.schemas)})


def _setup(tmp_path, monkeypatch, lookup_wait: int = LOOKUP_WAIT):
    his = HisRun()
    retire_stale_connector()
    # the connector's table preparation (ownership, replica identity) uses config.his_dsn()
    monkeypatch.setenv("HISBRIDGE_HIS_DSN", ensure_his_database())
    conn = sim_load.connect(config.his_dsn())
    ensure_his(conn)
    mapping = load_mapping(CATALOG, MAPPING)
    apply_connector(set(mapping.by_source) | set(mapping.lookup_sources), monkeypatch)
    worker = Worker(tmp_path, his.id, lookup_wait)
    worker.start()
    return his, conn, worker, CoreReader(worker)


def _teardown(conn, worker: Worker, reader: CoreReader) -> None:
    worker.stop()
    reader.consumer.close()
    conn.close()
    from kafka.admin import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=config.kafka_bootstrap())
    try:   # our core topics, the app's own topics (assignor, held records) and its consumer groups
        mine = [t for t in admin.list_topics()
                if t.startswith((worker.core_prefix + ".", worker.app_id + "-", worker.app_id + "."))]
        if mine:
            admin.delete_topics(mine)
        # the killed worker stays a member until its session times out (BROKER_SESSION_TIMEOUT=10 s)
        for group in (worker.app_id, transform_group(worker.app_id)):
            wait_for(f"consumer group {group} to be deleted",
                     lambda: admin.delete_groups([group]).get(group) == "OK", timeout=30, every=1)
    finally:
        admin.close()


@pytest.fixture()
def pipeline(tmp_path, monkeypatch):
    his, conn, worker, reader = _setup(tmp_path, monkeypatch)
    yield his, conn, worker, reader
    _teardown(conn, worker, reader)


@pytest.fixture()
def long_wait_pipeline(tmp_path, monkeypatch):
    his, conn, worker, reader = _setup(tmp_path, monkeypatch, lookup_wait=600)
    yield his, conn, worker, reader
    _teardown(conn, worker, reader)


def test_his_changes_become_exactly_the_expected_core_records_and_quarantine(pipeline):
    his, conn, worker, reader = pipeline
    before, boundary = at(D, 17, 59, 59, 999999), at(D, 18)
    visits = {"A": at(D, 10), "B": before, "C": boundary, "X": at(D, 11), "I": at(D, 12), "L": at(D, 13),
              "N": at(D, 14)}
    patients = {"A": his.patient("A"), "B": his.patient("B"), "C": his.patient("C"), "X": his.patient("X", sex="X"),
                "I": his.patient("I", id_no=BAD_ID), "L": his.patient("L")}
    for n in ("A", "B", "C", "X", "I"):
        insert(conn, "pat_master", patients[n])
    for n, reg_time in visits.items():      # L's patient comes later, N's never
        insert(conn, "op_register", his.register(n, reg_time))
        insert(conn, "op_visit", his.visit(n, reg_time))
        insert(conn, "op_diagnosis", his.diagnosis(n, reg_time))
    time.sleep(3)
    insert(conn, "pat_master", patients["L"])
    mine = lambda key: key.startswith(f"V{his.id}")   # noqa: E731 — only this run's records

    def reported(n: str, fee: str) -> bool:
        assert worker.alive(), f"the worker died:\n{worker.log_tail()}"
        reader.poll()
        return any(r["key"] == his.vid(n) and str(r["value"]["zfy"]) == fee for r in reader.records)

    # The update and the delete come once A and B are out: raw topics are consumed independently, and a
    # mapping whose diagnosis join is `absent: skip` reports a visit only once its diagnosis is there —
    # an update consumed before that would supersede the first version before it was ever reported.
    wait_for("A and B as inserted", lambda: reported("A", "123.45") and reported("B", "123.45"), timeout=300)
    execute(conn, "UPDATE his.op_visit SET total_fee = %s, updated_at = %s WHERE visit_id = %s",
            (Decimal("200.00"), his.now, his.vid("A")))
    execute(conn, "DELETE FROM his.op_visit WHERE visit_id = %s", (his.vid("B"),))

    def complete() -> bool:
        assert worker.alive(), f"the worker died:\n{worker.log_tail()}"
        reader.poll()
        revoked = any(mine(r["key"]) and r["value"]["xgbz"] == "1" for r in reader.records)
        updated = any(r["key"] == his.vid("A") and r["value"]["zfy"] == Decimal("200.00") for r in reader.records)
        never = any((q.get("key") or "") == his.vid("N") for q in reader.quarantine)
        return revoked and updated and never

    try:
        wait_for("the core records, the update, the delete and the timed-out visit", complete, timeout=240)
    except AssertionError as exc:
        seen = sorted((r["key"], r["value"]["xgbz"], str(r["value"]["zfy"])) for r in reader.records if mine(r["key"]))
        held = sorted((q.get("key"), [x["rule"] for x in q["reasons"]]) for q in reader.quarantine
                      if mine(q.get("key") or ""))
        raise AssertionError(f"{exc}; assigned={reader.assigned} records={seen} quarantine={held}") from None
    time.sleep(2)
    reader.poll()

    # --- core records: distinct contents, decrypted identity fields, batches -------------------------------
    got = {}
    for r in (r for r in reader.records if mine(r["key"])):
        assert r["topic"] == worker.topic("mjzzlxx")
        v = r["value"]
        plain = crypto.decrypt_fields(v, TABLE.encrypted_fields, KEY)
        assert r["headers"]["hisbridge.key_version"] == KEY.version.encode()
        source = json.loads(r["headers"]["hisbridge.source"])
        assert source["table"] in {"op_visit", "op_diagnosis"} and source["commit_time_ms"] > 0
        got.setdefault((r["key"], v["xgbz"], str(v["zfy"])), set()).add(
            (r["headers"]["hisbridge.batch"].decode(), plain["xm"], plain["sfzh"], plain["dh"], v["scsj"],
             v["yljgdm"], v["xb"]))
    for values in got.values():
        assert len(values) == 1, values     # a record from two drivers (visit, diagnosis) must be identical
    assert v["sfzh"] != VALID_ID and v["xm"] != plain["xm"]   # ciphertext on the topic, plain only after decrypt
    org = load_mapping(CATALOG, MAPPING).org_code

    def expect(n: str, batch: str, xgbz: str = "0", fee: str = "123.45") -> tuple:
        p = patients[n]
        return ((his.vid(n), xgbz, fee), (batch, p["name"], p["id_no"], p["phone"], visits[n], org, "2"))

    expected = dict([expect("A", "2026-03-02"), expect("A", "2026-03-02", fee="200.00"),
                     expect("B", "2026-03-02"), expect("B", "2026-03-02", xgbz="1"),
                     expect("C", "2026-03-03"), expect("L", "2026-03-02")])
    assert got == {k: {v} for k, v in expected.items()}

    # --- quarantine: exactly the bad ones, with the right reasons, identity fields encrypted --------------
    entries = {}
    for q in reader.quarantine:
        key = q.get("key") or (q.get("record") or {}).get("jzlsh") or ""
        if mine(key):
            entries.setdefault(key, set()).add(tuple(sorted((r["rule"], r["field"]) for r in q["reasons"])))
            assert q["table"] == "mjzzlxx"
            record = q.get("record") or {}
            for field in TABLE.encrypted_fields:
                if record.get(field):
                    assert crypto.decrypt_text(record[field], KEY) in {p[c] for p in patients.values()
                                                                       for c in p if isinstance(p[c], str)}
                    assert record[field] not in {patients[n]["name"] for n in patients}
            if key == his.vid("N"):
                assert f"patient[{his.pid('N')}]" in q["reasons"][0]["message"] and q["batch"] == "2026-03-02"
    assert entries == {his.vid("X"): {(("unmapped_code", "xb"),)},
                       his.vid("I"): {(("resident_id", "sfzh"),)},
                       his.vid("N"): {(("missing_lookup", None),)}}

    # --- watermark marks: on every partition of every core topic, past our last change ---------------------
    last_commit = max(json.loads(r["headers"]["hisbridge.source"])["commit_time_ms"]
                      for r in reader.records if mine(r["key"]))

    def marked_past() -> bool:
        reader.poll()
        topics = {t for t, _, m in reader.marks if m["connector"] == PREFIX and m["commit_time_ms"] >= last_commit}
        return topics >= {worker.topic(t) for t in CATALOG.tables}

    wait_for("watermark marks past the last change on every core topic", marked_past, timeout=60)


def test_reference_rows_and_waiting_records_survive_a_worker_kill(long_wait_pipeline):
    """kill -9 after the offsets moved past the patient and the waiting visit: the restarted worker has the
    patient (reference rows rebuilt from the raw topics up to the committed offsets) and still holds the visit
    (held records read back from their topic)."""
    his, conn, worker, reader = long_wait_pipeline
    t = at(D, 9)
    insert(conn, "pat_master", his.patient("K"))
    for n in ("K", "W"):                      # W's patient comes only after the restart
        insert(conn, "op_register", his.register(n, t))
        insert(conn, "op_visit", his.visit(n, t))
        insert(conn, "op_diagnosis", his.diagnosis(n, t))

    def produced(n: str) -> bool:
        assert worker.alive(), f"the worker died:\n{worker.log_tail()}"
        reader.poll()
        return any(r["key"] == his.vid(n) for r in reader.records)

    # the first record waits for the worker start and the re-read of the raw topics (snapshot included)
    wait_for("K's record", lambda: produced("K"), timeout=300)
    ends = KafkaConsumer(bootstrap_servers=config.kafka_bootstrap()).end_offsets(
        [TopicPartition(f"{PREFIX}.his.{tb}", 0) for tb in ("pat_master", "op_visit", "op_diagnosis")])
    wait_for("offsets committed past the patient and the waiting visit",
             lambda: all(worker.committed().get(tp.topic, -1) >= end for tp, end in ends.items()), timeout=60)
    # what the restart restores from keeps every key's newest row: raw topics as the connector template
    # creates them, and the held-records topic
    assert not_compacted([tp.topic for tp in ends] + [f"{worker.app_id}.transform-held"]) == []
    worker.stop()
    before = len([r for r in reader.records if r["key"].startswith(f"V{his.id}")])
    worker.start()
    insert(conn, "op_register", his.register("K2", t))      # a second visit of the same (already known) patient
    insert(conn, "op_visit", {**his.visit("K2", t), "patient_id": his.pid("K")})
    insert(conn, "op_diagnosis", his.diagnosis("K2", t))
    wait_for("K2's record from the recovered patient row", lambda: produced("K2"), timeout=120)
    assert not produced("W")
    insert(conn, "pat_master", his.patient("W"))
    wait_for("W's held record once its patient arrives", lambda: produced("W"), timeout=60)
    time.sleep(2)
    reader.poll()
    mine = [r for r in reader.records if r["key"].startswith(f"V{his.id}")]
    assert len(mine) > before
    names = {r["key"]: crypto.decrypt_text(r["value"]["xm"], KEY) for r in mine}
    assert names == {his.vid("K"): "测试K", his.vid("K2"): "测试K", his.vid("W"): "测试W"}
    assert all(r["value"]["xgbz"] == "0" for r in mine)
    assert not [q for q in reader.quarantine if (q.get("key") or "").startswith(f"V{his.id}")]
