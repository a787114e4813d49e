"""The sink end to end: real Kafka, real PostgreSQL, the real Faust worker (`python -m hisbridge.cli.worker`)
as a subprocess with a steered clock (HISBRIDGE_CLOCK_FILE).

Every run gets its own core topic prefix, consumer group (app id), staging database and front-end database
(created on the stack's front-end PostgreSQL and dropped afterwards), so the test is re-runnable on the
same stack and never touches anyone else's rows.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Callable

import psycopg2
import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from hisbridge import avrocodec, config, crypto, ledger, staging
from hisbridge.batching import SHANGHAI, assign_batch
from hisbridge.catalog import load_catalog
from hisbridge.catalog.avro import avro_datum
from hisbridge.catalog.sample import sample_records
from hisbridge.flush import ensure_frontend
from hisbridge.sinkloop import write_clock_file
from hisbridge.watermark import to_ms

pytestmark = pytest.mark.stack
CATALOG = load_catalog()
TABLE = CATALOG.table("mjzzlxx")
DAY = datetime(2026, 4, 1, tzinfo=SHANGHAI)
BATCH, NEXT = "2026-04-01", "2026-04-02"
KEY = crypto.parse_key(os.urandom(16).hex(), "test")   # throwaway SM4 key
CONNECTOR = "his-test"


def at(h: int, m: int = 0, s: int = 0, us: int = 0, days: int = 0) -> datetime:
    return DAY.replace(hour=h, minute=m, second=s, microsecond=us) + timedelta(days=days)


def wait_for(what: str, check: Callable[[], object], timeout: float = 60.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _dsn(dbname: str, port: int | None = None) -> str:
    return f"host=127.0.0.1 port={port or config.frontend_pg_port()} dbname={dbname} user=postgres"


def _admin(admin_dsn: str, statement: str) -> None:
    """A statement that cannot run in a transaction (CREATE / DROP DATABASE)."""
    admin_pg = psycopg2.connect(admin_dsn, connect_timeout=5)
    admin_pg.autocommit = True
    try:
        with admin_pg.cursor() as cur:
            cur.execute(statement)
    finally:
        admin_pg.close()


class SinkRun:
    """One isolated sink deployment: topics, databases, clock file, and the worker process.

    The front-end database lives on the stack's front-end PostgreSQL unless `front_port` names another
    instance (failure tests stop and start a throwaway one); staging always stays on the stack's."""

    def __init__(self, tmp: Path, front_port: int | None = None) -> None:
        self.id = uuid.uuid4().hex[:10]
        self.tmp = tmp
        self.prefix = f"coret{self.id}"
        self.app_id = f"hisbridge-sinktest-{self.id}"
        self.org = "T" + self.id.upper() + "0000000"
        self.stage_db, self.front_db = f"sinkt_stage_{self.id}", f"sinkt_front_{self.id}"
        self.front_port = front_port or config.frontend_pg_port()
        self.clock = tmp / "clock.json"
        self.proc: subprocess.Popen | None = None
        self.log = tmp / "worker.log"
        self.producer: KafkaProducer | None = None
        self.schema = avrocodec.load_schema(TABLE.name)
        self.stage = self.front = None

    def front_dsn(self, dbname: str | None = None) -> str:
        return _dsn(dbname or self.front_db, self.front_port)

    # --- setup / teardown ---
    def setup(self) -> None:
        _admin(_dsn("postgres"), f'CREATE DATABASE "{self.stage_db}"')
        _admin(self.front_dsn("postgres"), f'CREATE DATABASE "{self.front_db}"')
        self.stage = psycopg2.connect(_dsn(self.stage_db))
        staging.ensure_schema(self.stage)
        self.connect_front()
        ensure_frontend(self.front)
        admin = KafkaAdminClient(bootstrap_servers=config.kafka_bootstrap())
        # mjzzlxx gets two partitions: the watermark must be the minimum over them
        admin.create_topics([NewTopic(self.topic(t), 2 if t == TABLE.name else 1, 1) for t in CATALOG.tables])
        admin.close()
        self.producer = KafkaProducer(bootstrap_servers=config.kafka_bootstrap(), acks="all")

    def connect_front(self) -> None:
        """(Re)open the test's own front-end connection, e.g. after its server was restarted."""
        if self.front is not None:
            self.front.close()
        self.front = psycopg2.connect(self.front_dsn(), connect_timeout=5)

    def teardown(self) -> None:
        self.kill()
        if self.producer:
            self.producer.close()
        for conn in (self.stage, self.front):
            if conn is not None:
                conn.close()
        try:
            _admin(_dsn("postgres"), f'DROP DATABASE IF EXISTS "{self.stage_db}" WITH (FORCE)')
            if self.front_port == config.frontend_pg_port():   # another instance is thrown away whole
                _admin(self.front_dsn("postgres"), f'DROP DATABASE IF EXISTS "{self.front_db}" WITH (FORCE)')
        finally:
            admin = KafkaAdminClient(bootstrap_servers=config.kafka_bootstrap())
            try:   # our core topics and the Faust app's own (leader assignor) topic
                mine = [t for t in admin.list_topics() if t.startswith((self.prefix + ".", self.app_id + "-"))]
                admin.delete_topics(mine)
            finally:
                admin.close()

    def topic(self, table: str) -> str:
        return f"{self.prefix}.{table}"

    # --- the worker ---
    def start(self, **extra_env: str) -> None:
        """The worker, with this run's topics and databases; `extra_env` e.g. a schedule mode."""
        env = dict(os.environ,
                   HISBRIDGE_WORKER_APP_ID=self.app_id, HISBRIDGE_WORKER_WEB_PORT="0",
                   HISBRIDGE_CORE_PREFIX=self.prefix, HISBRIDGE_STAGING_DSN=_dsn(self.stage_db),
                   HISBRIDGE_FRONTEND_DSN=self.front_dsn(), HISBRIDGE_CLOCK_FILE=str(self.clock),
                   HISBRIDGE_SINK_TICK="0.5", HISBRIDGE_SINK_WITHIN="0.3", HISBRIDGE_SINK_TAKE="200",
                   HISBRIDGE_RAW_TOPIC=f"sinkt{self.id}.raw", HISBRIDGE_WORKER_OUT=str(self.tmp / "raw.jsonl"),
                   HISBRIDGE_VAR=str(self.tmp / "var"), HISBRIDGE_AGENTS="sink",
                   # Faust settings from the environment: a killed member leaves the group after 10 s, not 60
                   BROKER_SESSION_TIMEOUT="10", BROKER_HEARTBEAT_INTERVAL="1")
        env.pop("HISBRIDGE_SCHEDULE_MODE", None)
        env.pop("HISBRIDGE_SCHEDULE", None)
        env.update(extra_env)
        (self.tmp / "var").mkdir(exist_ok=True)
        out = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "hisbridge.cli.worker"], env=env, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        out.close()

    def kill(self) -> None:
        """kill -9: no shutdown hook runs, no offset is committed on the way out."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def wait(self, what: str, check: Callable[[], object], timeout: float = 60.0, every: float = 0.2):
        """wait_for, failing at once (with the worker's log) if the worker died."""
        def alive_and(check=check):
            assert self.alive(), f"the worker died while waiting for {what}:\n{self.log_tail()}"
            return check()
        return wait_for(what, alive_and, timeout, every)

    def set_clock(self, now: datetime, speed: float = 0.0) -> None:
        write_clock_file(self.clock, now, speed)

    # --- producing ---
    def record(self, n: int, produced: datetime, fee: str | None = None) -> dict:
        rec = dict(sample_records(TABLE, 1, seed=n)[0])
        rec.update(yljgdm=self.org, jzlsh=f"V{n:08d}", scsj=produced.replace(tzinfo=None))
        if fee is not None:
            rec["zfy"] = Decimal(fee)
        return crypto.encrypt_fields(rec, TABLE.encrypted_fields, KEY)

    def send(self, rec: dict, lsn: int) -> None:
        datum = avro_datum(TABLE, rec)
        value, problems = avrocodec.encode_checked(self.schema, datum)
        assert problems == []
        source = {"db": "his", "schema": "public", "table": "visit", "lsn": lsn, "tx_id": lsn,
                  "commit_time_ms": to_ms(at(9)) + lsn}
        headers = [("hisbridge.key_version", KEY.version.encode()),
                   ("hisbridge.batch", assign_batch(TABLE, datum).name.encode()),
                   ("hisbridge.source", json.dumps(source).encode()),
                   ("hisbridge.schema_fp", self.schema.fingerprint.hex().encode())]
        self.producer.send(self.topic(TABLE.name), key=rec["jzlsh"].encode(), value=value, headers=headers)

    def marks(self, commit: datetime) -> None:
        """A watermark mark on every partition of every core topic (what the transform side emits)."""
        value = json.dumps({"connector": CONNECTOR, "commit_time_ms": to_ms(commit)}).encode()
        for table in CATALOG.tables:
            for part in self.producer.partitions_for(self.topic(table)):
                self.producer.send(self.topic(table), value=value, partition=part,
                                   headers=[("hisbridge.kind", b"watermark")])
        self.producer.flush()

    # --- reading ---
    def staged(self) -> dict[str, tuple]:
        return {k: v for (org, k), v in staging.row_states(self.stage, TABLE.name).items() if org == self.org}

    def frontend(self) -> dict[str, tuple]:
        with self.front, self.front.cursor() as cur:
            cur.execute("SELECT jzlsh, report_datetime, zfy, scsj FROM mjzzlxx WHERE yljgdm = %s", (self.org,))
            return {r[0]: r[1:] for r in cur.fetchall()}

    def ledger(self, batch: str) -> list[ledger.LedgerRow]:
        return ledger.rows(self.front, TABLE.name, batch)


def sink_run(tmp_path: Path, front_port: int | None = None):
    """A SinkRun set up for one test and torn down after it (its worker log printed when the test fails)."""
    sink = SinkRun(tmp_path, front_port)
    sink.setup()
    try:
        yield sink
    except BaseException:
        print(sink.log_tail())
        raise
    finally:
        sink.teardown()


@pytest.fixture
def run(tmp_path):
    yield from sink_run(tmp_path)


def test_boundary_window_watermark_and_late_resubmission(run):
    run.set_clock(at(17))                                    # frozen before the window
    run.start()
    run.send(run.record(1, at(17, 59, 59, 999999)), 10)      # last µs of batch D
    run.send(run.record(2, at(18)), 11)                      # first µs of batch D+1
    for n in range(3, 8):
        run.send(run.record(n, at(9, n)), 10 + n)
    run.marks(at(18, 30))                                    # watermark past D 18:00 + 10m grace
    staged = run.wait("7 staged rows", lambda: len(run.staged()) == 7 and run.staged(), timeout=90)
    assert {k for k, v in staged.items() if v[0] == "pending"} == set(staged)
    with run.stage, run.stage.cursor() as cur:
        cur.execute("SELECT bkey, batch FROM hisbridge.staged WHERE org = %s", (run.org,))
        batches = dict(cur.fetchall())
    assert batches["V00000001"] == BATCH and batches["V00000002"] == NEXT
    time.sleep(3)                                            # several timer ticks with the clock at 17:00
    assert run.frontend() == {} and run.ledger(BATCH) == [], "nothing may reach the front-end before 18:00"

    run.set_clock(at(17, 59, 58), speed=1.0)                 # the clock walks into the window
    [first] = run.wait("the first flush of D", lambda: run.ledger(BATCH), timeout=60)
    rows = run.frontend()
    assert set(rows) == {"V00000001"} | {f"V{n:08d}" for n in range(3, 8)}   # not V00000002 (batch D+1)
    assert {r[0] for r in rows.values()} == {first.report_datetime}
    assert at(18).replace(tzinfo=None) <= first.report_datetime < at(18, 1).replace(tzinfo=None)
    assert (first.row_count, first.kind) == (6, "first")

    run.set_clock(at(23))                                    # window over; a late row and a change arrive
    run.send(run.record(20, at(11)), 100)                    # late record of D
    run.send(run.record(3, at(9, 3), fee="4321.00"), 101)    # update of a flushed row
    run.marks(at(23))
    run.wait("late rows staged", lambda: run.staged().get("V00000020") and run.staged()["V00000003"][0] == "pending")
    time.sleep(2)
    assert "V00000020" not in run.frontend() and len(run.ledger(BATCH)) == 1

    run.marks(at(18, 30, days=1))                           # D+1 closes too
    run.set_clock(at(18, 0, 5, days=1))                      # next window
    run.wait("the resubmission of D", lambda: len(run.ledger(BATCH)) == 2, timeout=60)
    run.wait("the first flush of D+1", lambda: run.ledger(NEXT), timeout=30)
    first_again, resub = run.ledger(BATCH)
    assert first_again == first and (resub.kind, resub.row_count) == ("resubmission", 2)
    rows = run.frontend()
    assert rows["V00000020"][0] == resub.report_datetime and rows["V00000003"][0] == resub.report_datetime
    assert rows["V00000003"][1] == Decimal("4321.00")
    assert rows["V00000004"][0] == first.report_datetime
    [nxt] = run.ledger(NEXT)
    assert (nxt.kind, nxt.row_count) == ("first", 1) and rows["V00000002"][0] == nxt.report_datetime
    assert run.alive(), run.log_tail()


def test_kill_9_while_staging_and_after_flush_then_restart_gives_exact_rows_once(run):
    n_rows, updates = 4000, range(0, 4000, 10)
    run.set_clock(at(17))
    for n in range(n_rows):
        run.send(run.record(n, at(8) + timedelta(seconds=n)), 1000 + n)
    for n in updates:                                        # newer versions of every 10th row
        run.send(run.record(n, at(8) + timedelta(seconds=n), fee="7.77"), 100_000 + n)
    run.marks(at(18, 30))
    run.start()
    seen = run.wait("staging under way", lambda: len(run.staged()), timeout=90, every=0.05)
    run.kill()                                               # mid-run (unless it was already done)
    print(f"killed with {seen}/{n_rows} rows staged")
    run.start()
    run.wait("all rows staged", lambda: len(run.staged()) == n_rows, timeout=120)
    run.wait("the newest versions", lambda: sum(run.staged()[f"V{n:08d}"][2] >= 100_000 for n in updates)
             == len(updates), timeout=60)

    run.set_clock(at(18, 0, 1))
    run.wait("the flush", lambda: run.ledger(BATCH), timeout=60, every=0.05)
    run.kill()                                               # right after the front-end commit
    run.set_clock(at(18, 0, 2))
    run.start()
    run.wait("staging marked flushed", lambda: {v[0] for v in run.staged().values()} == {"flushed"}, timeout=90)
    time.sleep(2)
    [entry] = run.ledger(BATCH)
    rows = run.frontend()
    assert len(rows) == n_rows == entry.row_count and entry.kind == "first"
    assert {r[0] for r in rows.values()} == {entry.report_datetime}
    assert {k for k, r in rows.items() if r[1] == Decimal("7.77")} == {f"V{n:08d}" for n in updates}
    assert run.alive(), run.log_tail()
