"""One isolated sink deployment for the sink stack tests (test_sink_pipeline, test_sink_failures): its own
core topics, consumer group, staging and front-end databases (through `Resources`), a clock file, and the
real worker (`python -m hisbridge.cli.worker`, stage `sink`) as a subprocess it can kill -9."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Callable

import psycopg2
from hisbridge.catalog import load_catalog
from hisbridge.catalog.avro import avro_datum
from hisbridge.catalog.sample import sample_records
from hisbridge.chain import avro, crypto
from hisbridge.chain.batch import assign_batch
from hisbridge.clock import SHANGHAI, write_clock_file
from hisbridge.delivery import ledger, staging
from hisbridge.delivery.flush import ensure_frontend
from hisbridge.runtime.watermark import from_ms, to_ms
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from support import Resources, admin_statement, dsn, end_process, wait_for

CATALOG = load_catalog()
TABLE = CATALOG.table("mjzzlxx")
DAY = datetime(2026, 4, 1, tzinfo=SHANGHAI)
BATCH, NEXT = "2026-04-01", "2026-04-02"
KEY = crypto.parse_key(os.urandom(16).hex(), "test")   # throwaway SM4 key
CONNECTOR = "his-test"


def at(h: int, m: int = 0, s: int = 0, us: int = 0, days: int = 0) -> datetime:
    return DAY.replace(hour=h, minute=m, second=s, microsecond=us) + timedelta(days=days)


class SinkRun:
    """One isolated sink deployment: topics, databases, clock file, and the worker process.

    The front-end database lives on the stack's front-end PostgreSQL unless `front_port` names another
    instance (failure tests stop and start a throwaway one); staging always stays on the stack's."""

    def __init__(self, tmp: Path, res: Resources, front_port: int | None = None) -> None:
        self.res, self.settings, self.id = res, res.settings, res.id
        self.tmp = tmp
        self.prefix = res.topics(f"coret{self.id}")
        self.app_id = res.groups_starting(f"hisbridge-sinktest-{self.id}")
        res.topics(self.app_id + "-")                      # the Faust app's own (leader assignor) topic
        self.org = "T" + self.id.upper() + "000000000"
        self.front_port = front_port or self.settings.stack.frontend_pg_port
        self.stage_db, self.front_db = f"sinkt_stage_{self.id}", f"sinkt_front_{self.id}"
        self.clock = tmp / "clock.json"
        self.proc: subprocess.Popen | None = None
        self.log = tmp / "worker.log"
        self.producer: KafkaProducer | None = None
        self.schema = avro.load_schema(TABLE.name)
        self.stage = self.front = None
        self.ticks_seen = 0

    def front_dsn(self, dbname: str | None = None) -> str:
        return dsn(self.front_port, dbname or self.front_db)

    # --- setup / teardown ---
    def setup(self) -> None:
        self.stage_dsn = self.res.database("frontend", self.stage_db)
        if self.front_port == self.settings.stack.frontend_pg_port:
            self.res.database("frontend", self.front_db)
        else:                                              # another instance is thrown away whole
            admin_statement(self.front_port, f'CREATE DATABASE "{self.front_db}"')
        self.stage = psycopg2.connect(self.stage_dsn)
        staging.ensure_schema(self.stage)
        self.connect_front()
        ensure_frontend(self.front)
        admin = KafkaAdminClient(bootstrap_servers=self.settings.connections.kafka_bootstrap)
        # mjzzlxx gets two partitions: the watermark must be the minimum over them
        admin.create_topics([NewTopic(self.topic(t), 2 if t == TABLE.name else 1, 1) for t in CATALOG.tables])
        admin.close()
        self.producer = KafkaProducer(bootstrap_servers=self.settings.connections.kafka_bootstrap, acks="all")

    def connect_front(self) -> None:
        """(Re)open the test's own front-end connection, e.g. after its server was restarted."""
        if self.front is not None:
            self.front.close()
        self.front = psycopg2.connect(self.front_dsn(), connect_timeout=5)

    def teardown(self) -> None:
        """The worker and the connections; databases and topics go with `resources`."""
        self.stop()
        if self.producer:
            self.producer.close()
        for conn in (self.stage, self.front):
            if conn is not None:
                conn.close()

    def topic(self, table: str) -> str:
        return f"{self.prefix}.{table}"

    # --- the worker ---
    def start(self, **extra_env: str) -> None:
        """The worker, with this run's topics and databases; `extra_env` e.g. a schedule mode."""
        env = dict(os.environ,
                   HISBRIDGE_WORKER_APP_ID=self.app_id, HISBRIDGE_WORKER_WEB_PORT="0",
                   HISBRIDGE_CORE_PREFIX=self.prefix, HISBRIDGE_STAGING_DSN=self.stage_dsn,
                   HISBRIDGE_FRONTEND_DSN=self.front_dsn(), HISBRIDGE_CLOCK_FILE=str(self.clock),
                   HISBRIDGE_SINK_TICK="0.5", HISBRIDGE_SINK_WITHIN="0.3", HISBRIDGE_SINK_TAKE="200",
                   HISBRIDGE_VAR=str(self.tmp / "var"), HISBRIDGE_AGENTS="sink")
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
        end_process(self.proc, graceful=False)
        self.proc = None

    def stop(self) -> None:
        end_process(self.proc)
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

    def ticks(self) -> tuple[int, datetime | None]:
        """(steps taken, the clock of the last) of this run's flush timer, from staging."""
        with self.stage, self.stage.cursor() as cur:
            cur.execute("SELECT ticks, clock FROM hisbridge.sink_ticks WHERE app = %s", (self.app_id,))
            row = cur.fetchone()
        return row if row else (0, None)

    def wait_ticks(self, steps: int = 2, clock: datetime | None = None, timeout: float = 30.0) -> None:
        """Until the flush timer has taken `steps` more steps (with its clock at `clock` or later): what it
        would have done with what it could see by then, it has done."""
        start = self.ticks()[0]

        def stepped():
            count, seen = self.ticks()
            return count >= start + steps and (clock is None or (seen is not None and seen >= clock))
        self.wait(f"{steps} flush-timer steps", stepped, timeout)

    # --- producing ---
    def record(self, n: int, produced: datetime, fee: str | None = None) -> dict:
        rec = dict(sample_records(TABLE, 1, seed=n)[0])
        rec.update(yljgdm=self.org, jzlsh=f"V{n:08d}", scsj=produced.replace(tzinfo=None))
        if fee is not None:
            rec["zfy"] = Decimal(fee)
        return crypto.encrypt_fields(rec, TABLE.encrypted_fields, KEY)

    def send(self, rec: dict, lsn: int) -> None:
        datum = avro_datum(TABLE, rec)
        value, problems = avro.encode_checked(self.schema, datum)
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
    def watermark(self) -> datetime | None:
        """The sink's durable watermark: min over this run's core partitions of the latest mark staged."""
        with self.stage, self.stage.cursor() as cur:
            cur.execute("SELECT min(commit_ms) FROM hisbridge.progress WHERE topic LIKE %s", (self.prefix + ".%",))
            ms = cur.fetchone()[0]
        return from_ms(ms) if ms is not None else None

    def staged(self) -> dict[str, tuple]:
        return {k: v for (org, k), v in staging.row_states(self.stage, TABLE.name).items() if org == self.org}

    def frontend(self) -> dict[str, tuple]:
        with self.front, self.front.cursor() as cur:
            cur.execute("SELECT jzlsh, report_datetime, zfy, scsj FROM mjzzlxx WHERE yljgdm = %s", (self.org,))
            return {r[0]: r[1:] for r in cur.fetchall()}

    def ledger(self, batch: str) -> list[ledger.LedgerRow]:
        return ledger.rows(self.front, TABLE.name, batch)


def sink_run(tmp_path: Path, res: Resources, front_port: int | None = None):
    """A SinkRun set up for one test and torn down after it (its worker log printed when the test fails)."""
    sink = SinkRun(tmp_path, res, front_port)
    sink.setup()
    try:
        yield sink
    except BaseException:
        print(sink.log_tail())
        raise
    finally:
        sink.teardown()
