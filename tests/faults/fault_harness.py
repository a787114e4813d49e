"""The fault suite's harness: a scenario is the demo scenario's data (tests/support/e2e: seed 7, 200 visits a
day, 5 % planted defects, day D and its evening, an isolated deployment) plus a fault — what breaks, at which
moment, and how it recovers — and every scenario ends with the same verdict:

  * `hisbridge reconcile --batch B` WITHOUT --sim-* (the HIS itself, through the CDC role) for every daily batch
    the run touched: 0 missing, 0 duplicated, exit 0;
  * the quarantine holds exactly the planted defects (the simulator's manifest) plus the entries the fault
    itself expects (`FaultRun.expect_quarantine`), nothing more, nothing less;
  * the demo's own exact reconciliation against the manifest is OK (unless the fault added HIS rows).

Moments (`Scenario.at`):
  stream        the worker has staged its first rows of day D (the day is being inserted live)
  flush         the sink has planned batch D's flush (hisbridge.flush_plan has a row)
  committed     the front-end holds batch D's first ledger row
  window_open   the sink's clock has reached D 18:00 (the window opened)
  evening       D 20:00 of the evening, between two live inserts (the demo's evening_break: the HIS writer
                is paused while the fault is injected; recovery runs beside the rest of the evening)

A fault is `inject(run) -> recover`, `recover(run)` runs `hold` seconds later; `note` says what an operator
sees. `pending` names the work a scenario waits for: such a scenario is listed (README) but not collected;
enabling it is deleting that one argument.
"""
from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

import psycopg2
from click.testing import CliRunner
from devstack import postgres, procs
from devstack.connect import Connect
from devstack.kafka import Kafka
from devstack.worker import Worker
from hisbridge import hisdb
from hisbridge.cli import main as cli_main
from hisbridge.contract import raw_topic
from hisbridge.ops import connectors
from hisbridge.settings import Settings, environment_for
from hisbridge.sim import generate
from kafka import KafkaConsumer, KafkaProducer
from support import Resources, e2e, wait_for
from support.throwaway import ThrowawayPostgres

Recover = Callable[["FaultRun"], None]


@dataclass
class FaultRun:
    """What a fault acts on: the run's settings, its worker and connector, and what was observed."""
    settings: Settings
    worker: Worker
    connector: str
    frontend: ThrowawayPostgres | None = None
    notes: list[str] = field(default_factory=list)
    fired: list[tuple[str, float]] = field(default_factory=list)   # (fault, monotonic time)
    recovered: list[float] = field(default_factory=list)           # monotonic time each recovery ended
    worker_held: threading.Event = field(default_factory=threading.Event)   # a fault keeps the worker down
    restarts: int = 0                                              # restarts the supervisor made
    stopping: threading.Event = field(default_factory=threading.Event)
    # a fault that changes the HIS's data: the quarantine entries it causes (beside the planted ones) and
    # checks of what was delivered; the manifest knows nothing of its rows, so only the HIS-side verdict holds
    expect_quarantine: set[tuple[str, str, str]] = field(default_factory=set)
    checks: list[Callable[[object], None]] = field(default_factory=list)
    his_changed: bool = False

    def note(self, text: str) -> None:
        self.notes.append(text)

    def supervise(self) -> None:
        """Restart the worker whenever it is gone and no fault holds it down — what compose's `restart:
        unless-stopped` does in production (a worker started while Kafka is down exits after one line)."""
        def loop() -> None:
            while not self.worker.is_running():           # armed once the demo has started it
                if self.stopping.wait(1.0):
                    return
            while not self.stopping.wait(2.0):
                if not self.worker_held.is_set() and not self.worker.is_running():
                    self.restarts += 1
                    self.worker.start_background(env=environment_for(self.settings))
        threading.Thread(target=loop, name="worker-supervisor", daemon=True).start()


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Callable[[FaultRun], Recover | None]
    hold: float = 10.0              # seconds between inject and recover


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: Fault
    at: str                          # stream | flush | committed | window_open | evening
    fast: bool = False               # also in `make test`
    own_frontend: bool = False       # the front-end database on a throwaway server (it is stopped)
    pending: str | None = None       # the work it waits for; None: enabled


# --- the faults ---------------------------------------------------------------------------------------------

def _kill9(pid: int | None, what: str) -> None:
    if pid is None:
        raise AssertionError(f"{what} is not running: nothing to kill")
    os.kill(pid, signal.SIGKILL)


def _restart_worker(run: FaultRun) -> None:
    run.worker.start_background(env=environment_for(run.settings))
    run.worker_held.clear()


def kill_worker(run: FaultRun) -> Recover:
    run.worker_held.set()
    pid = run.worker.pid()
    _kill9(pid, "the worker")
    wait_for("the killed worker gone", lambda: procs.gone(pid), timeout=30)
    return _restart_worker


def stop_worker(run: FaultRun) -> Recover:
    run.worker_held.set()
    run.worker.stop()
    return _restart_worker


def _component_fault(make: Callable[[Settings], object], kill: bool, hold_inside: float = 0.0
                     ) -> Callable[[FaultRun], Recover]:
    """kill -9 or stop a stack component; restarted by the returned recovery — or, with `hold_inside`, held down
    that long and restarted before returning (the broker: the demo's own drain check needs it)."""
    def inject(run: FaultRun) -> Recover | None:
        component = make(run.settings)
        if kill:
            pid = component.pid()
            _kill9(pid, component.name)
            wait_for(f"{component.name} gone", lambda: procs.gone(pid), timeout=30)
        else:
            component.stop()
        if hold_inside:
            time.sleep(hold_inside)
            component.start()
            wait_for("the group coordinator answering", lambda: _coordinator_ready(run.settings), timeout=60, every=1)
            return None

        def recover(r: FaultRun) -> None:
            component.start()
        return recover
    return inject


def _coordinator_ready(settings: Settings) -> bool:
    """After a broker restart its group coordinator loads the offsets topic first (CoordinatorLoadInProgress)."""
    from kafka.admin import KafkaAdminClient
    try:
        admin = KafkaAdminClient(bootstrap_servers=settings.connections.kafka_bootstrap, client_id="fault-probe")
    except Exception:  # noqa: BLE001 — not up yet
        return False
    try:
        admin.list_groups()
        return True
    except Exception:  # noqa: BLE001
        return False
    finally:
        admin.close()


def crash_his(run: FaultRun) -> Recover:
    """pg_ctl stop -m immediate on the HIS PostgreSQL (every backend dies at once), restarted at once: the
    HIS writer of the evening is paused meanwhile, as a hospital's HIS itself would be."""
    his = postgres.his(run.settings)
    postgres.ctl(his.inst, "-m", "immediate", "-w", "-t", "60", "stop")
    his.start()
    return lambda r: None


def stop_his(run: FaultRun) -> Recover:
    his = postgres.his(run.settings)
    his.stop()
    his.start()
    return lambda r: None


def frontend_down(run: FaultRun) -> Recover:
    assert run.frontend is not None, "the scenario needs own_frontend=True"
    run.frontend.crash()

    def recover(r: FaultRun) -> None:
        r.frontend.start()
        # the demo holds the sink's clock at D 18:00:01 while it waits for the flush; the sink's back-off is on
        # that clock, so time must pass on it for the retry to come (as it would in a real window)
        from hisbridge.clock import SHANGHAI, write_clock_file
        write_clock_file(Path(r.settings.clock.file),
                         datetime.combine(e2e.DAY, datetime.min.time(), SHANGHAI) + timedelta(hours=18, minutes=30))
    return recover


def pause_connector(run: FaultRun) -> Recover:
    client = connectors.ConnectClient(run.settings.connections.connect_url)
    status, body = client.request("PUT", f"/connectors/{run.connector}/pause")
    assert status == 202, (status, body)
    wait_for("the connector PAUSED", lambda: (client.status(run.connector) or {}).get("connector", {})
             .get("state") == "PAUSED", timeout=30)

    def resume(r: FaultRun) -> None:
        status, body = client.request("PUT", f"/connectors/{r.connector}/resume")
        assert status == 202, (status, body)
    return resume


def duplicate_raw(run: FaultRun, count: int = 60) -> Recover | None:
    """The last `count` messages of the op_visit and mr_homepage raw topics produced again, byte for byte
    (what a producer retry or a connector replaying from an older offset does)."""
    topics = [raw_topic(run.settings.source.topic_prefix, t) for t in ("his.op_visit", "his.mr_homepage")]
    bootstrap = run.settings.connections.kafka_bootstrap
    consumer = KafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=3000)
    messages = [m for m in consumer if m.value is not None]
    consumer.close()
    again = messages[-count:]
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for m in again:
        producer.send(m.topic, key=m.key, value=m.value, headers=m.headers or None)
    producer.flush()
    producer.close()
    run.note(f"{len(again)} raw messages produced twice")
    return None


def second_worker(run: FaultRun) -> Recover:
    """A second worker with the same app id (a double start, a container scaled to 2)."""
    twin = Worker(run.settings, run.worker.name + "-twin")
    state = Path(run.settings.worker.state_dir)
    twin.start_background(env={**environment_for(run.settings),       # a container of its own: own disk state
                               "HISBRIDGE_STATE_DIR": str(state.with_name(state.name + "-twin"))})
    run.note("a second worker with the same app id started")
    return lambda r: None      # both keep running to the end; the twin is stopped at cleanup


def _his(settings: Settings, *statements: tuple[str, tuple]) -> list[tuple]:
    """Run statements on the run's HIS as its admin (a HIS change a DBA or the HIS vendor makes); the last
    statement's rows."""
    conn = hisdb.connect(hisdb.admin_dsn(settings), settings.source.kind)
    try:
        with hisdb.transaction(conn) as cur:
            rows: list[tuple] = []
            for sql, params in statements:
                cur.execute(sql, params)
                rows = list(cur.fetchall()) if cur.description else []
            return rows
    finally:
        conn.close()


def _raw_messages(settings: Settings, table: str) -> list:
    consumer = KafkaConsumer(raw_topic(settings.source.topic_prefix, table),
                             bootstrap_servers=settings.connections.kafka_bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=3000)
    try:
        return [m for m in consumer if m.value is not None]
    finally:
        consumer.close()


def _after(message) -> dict:
    value = json.loads(message.value)
    return (value.get("payload", value) or {}).get("after") or {}


def _clean_visits() -> set[str]:
    """The mjzzlxx keys the manifest delivers (no planted defect) over the run."""
    want = e2e.expected(datetime.combine(e2e.DAY, datetime.min.time()) + timedelta(hours=22))
    return set().union(*[e.delivered for (t, _), e in want.items() if t == "mjzzlxx"])


def _evening_visits_after_break() -> list[dict]:
    """The clean op_visit rows the simulator inserts after the evening break (D 20:00 – 22:00)."""
    start = datetime.combine(e2e.DAY, datetime.min.time()) + timedelta(hours=20)
    act = generate.activity(e2e.SEED, start, start + timedelta(hours=2), e2e.VISITS, e2e.BAD_SHARE)
    clean = _clean_visits()
    return [e.row for e in act.events if e.table == "op_visit" and e.op == "insert" and e.at >= start
            and e.row["visit_id"] in clean]


def replay_older_version(run: FaultRun) -> Recover | None:
    """A reference row (the staff_dict row of the doctor with most visits after the break) is renamed in the
    HIS; once the new version is on its raw topic the OLDER raw message of that row, read back by offset, is
    produced again with its key — after the newer one on the same partition, as a connector replaying from
    an older offset does. The visits after the break must be staged with the HIS's current name."""
    doctors = Counter(r.get("doctor_code") for r in _evening_visits_after_break() if r.get("doctor_code"))
    code = doctors.most_common(1)[0][0]
    topic_table = "his.staff_dict"
    older = [m for m in _raw_messages(run.settings, topic_table) if _after(m).get("staff_code") == code][-1]
    (name,), = _his(run.settings, ("SELECT staff_name FROM his.staff_dict WHERE staff_code = %s", (code,)))
    renamed = (name + "新")[:40]
    _his(run.settings, ("UPDATE his.staff_dict SET staff_name = %s WHERE staff_code = %s", (renamed, code)))
    wait_for("the newer staff_dict version on its raw topic",
             lambda: any(m.offset > older.offset and _after(m).get("staff_name") == renamed
                         for m in _raw_messages(run.settings, topic_table)), timeout=120, every=1)
    producer = KafkaProducer(bootstrap_servers=run.settings.connections.kafka_bootstrap)
    producer.send(older.topic, key=older.key, value=older.value, headers=older.headers or None,
                  partition=older.partition)
    producer.flush()
    producer.close()
    run.note(f"staff_dict {code}: {name} → {renamed}; offset {older.offset} (the older version) produced again")
    visits = [r["visit_id"] for r in _evening_visits_after_break() if r.get("doctor_code") == code]

    def delivered_name_is_the_his_one(demo_run) -> None:
        (current,), = _his(run.settings, ("SELECT staff_name FROM his.staff_dict WHERE staff_code = %s", (code,)))
        conn = psycopg2.connect(demo_run.settings.connections.staging_dsn)    # batch D+1: staged, not flushed yet
        try:
            with conn, conn.cursor() as cur:
                cur.execute("SELECT bkey, payload->>'jzys' FROM hisbridge.staged WHERE tbl = 'mjzzlxx' "
                            "AND NOT revoked AND bkey = ANY(%s)", (visits,))
                got = cur.fetchall()
        finally:
            conn.close()
        assert got and {jzys for _, jzys in got} == {current}, (code, current, got)
        run.note(f"{len(got)} visits of {code} after the replay delivered with jzys = the HIS's {current}")
    run.checks.append(delivered_name_is_the_his_one)
    return None


def _evening_clean_visit(settings: Settings) -> tuple[str, str]:
    """(visit_id, reg_id) of a visit of the evening already in the HIS that the manifest delivers cleanly."""
    clean = _clean_visits()
    rows = _his(settings, ("SELECT v.visit_id, v.reg_id FROM his.op_visit v JOIN his.op_register r ON r.reg_id = "
                           "v.reg_id JOIN his.op_diagnosis d ON d.visit_id = v.visit_id AND d.seq = 1 "
                           "ORDER BY r.reg_time DESC", ()))
    return next((v, r) for v, r in rows if v in clean)


def _copy_visit(visit_id: str, reg_id: str, new: str, visit_extra: dict, diag_extra: dict | None = None
                ) -> list[tuple[str, tuple]]:
    """INSERTs of a copy of one visit (register, visit, principal diagnosis) under new keys, in that order."""
    def copy(table: str, where: str, key: tuple, extra: dict) -> tuple[str, tuple]:
        return (f"INSERT INTO his.{table} SELECT (jsonb_populate_record(NULL::his.{table}, to_jsonb(t) || %s::jsonb)).* "
                f"FROM his.{table} t WHERE {where}", (json.dumps(extra), *key))
    return [copy("op_register", "reg_id = %s", (reg_id,), {"reg_id": "R" + new}),
            copy("op_visit", "visit_id = %s", (visit_id,), {"visit_id": new, "reg_id": "R" + new, **visit_extra}),
            copy("op_diagnosis", "visit_id = %s AND seq = 1", (visit_id,), {"visit_id": new, **(diag_extra or {})})]


OVERSIZE_BYTES = 1_500_000


def oversize_value(run: FaultRun) -> Recover | None:
    """A visit whose chief complaint (zs, which the mapping reads) is 1.5 MB: the HIS widens the column to
    text and writes it. Debezium's 16 MiB limits let it through; the worker's produce_limit makes it an
    `oversize` quarantine entry naming the field (and the catalog's max_length of zs); nothing else is lost."""
    visit_id, reg_id = _evening_clean_visit(run.settings)
    new = "VBIG" + visit_id[-8:]
    _his(run.settings, ("ALTER TABLE his.op_visit ALTER COLUMN chief_complaint TYPE text", ()),
         *_copy_visit(visit_id, reg_id, new, {"chief_complaint": "咳" * (OVERSIZE_BYTES // 3)}))
    run.his_changed = True
    run.expect_quarantine |= {("mjzzlxx", new, "oversize"), ("mjzzlxx", new, "max_length")}
    run.note(f"visit {new} (a copy of {visit_id}) with a {OVERSIZE_BYTES} byte chief_complaint")

    def names_the_field(demo_run) -> None:
        entry = next(e for e in demo_run.out.quarantine if e.key == new and "oversize" in e.rules)
        fields = {r["field"] for r in entry.reasons if r["rule"] == "oversize"}
        assert fields == {"zs"}, entry.reasons
        run.note(f"oversize entry of {new}: rules {sorted(entry.rules)}, field zs")
    run.checks.append(names_the_field)
    return None


DRIFT_VISITS = 3


def schema_drift_dropped_column(run: FaultRun) -> Recover | None:
    """Mid-stream the HIS drops op_diagnosis.icd_name (the mapping reads it for zdmc), writes three visits,
    then adds the column back (the simulator's evening writes it). The three visits' diagnoses are
    quarantined as schema_drift naming the column; the worker logs one ERROR line for the change."""
    visit_id, reg_id = _evening_clean_visit(run.settings)
    news = [f"VDRIFT{i}" + visit_id[-6:] for i in range(DRIFT_VISITS)]
    _his(run.settings, ("ALTER TABLE his.op_diagnosis DROP COLUMN icd_name", ()),
         *[s for new in news for s in _copy_visit(visit_id, reg_id, new, {})])
    wait_for("the drifted diagnoses on their raw topic",
             lambda: {_after(m).get("visit_id") for m in _raw_messages(run.settings, "his.op_diagnosis")} >= set(news),
             timeout=120, every=1)
    _his(run.settings, ("ALTER TABLE his.op_diagnosis ADD COLUMN icd_name varchar(100)", ()))
    run.his_changed = True
    run.expect_quarantine |= {("mjzzlxx", new, "schema_drift") for new in news}
    run.note(f"op_diagnosis.icd_name dropped, {DRIFT_VISITS} visits written, the column added back")

    def one_error_line(demo_run) -> None:
        lines = [l for l in demo_run.worker_log.read_text(errors="replace").splitlines()
                 if " ERROR " in l and "schema drift in his.op_diagnosis" in l]
        assert len(lines) == 1 and "icd_name" in lines[0], lines
        entries = [e for e in demo_run.out.quarantine if e.key in news]
        assert all(r["field"] == "icd_name" for e in entries for r in e.reasons if r["rule"] == "schema_drift"), entries
    run.checks.append(one_error_line)
    return None


FAULTS = {f.name: f for f in [
    Fault("worker_kill9", kill_worker, hold=0),
    Fault("worker_stop", stop_worker, hold=5),
    Fault("connect_kill9", _component_fault(Connect, kill=True), hold=10),
    Fault("connect_stop", _component_fault(Connect, kill=False), hold=10),
    Fault("broker_kill9", _component_fault(Kafka, kill=True, hold_inside=10), hold=0),
    Fault("broker_stop", _component_fault(Kafka, kill=False, hold_inside=10), hold=0),
    Fault("his_crash", crash_his, hold=0),
    Fault("his_stop", stop_his, hold=0),
    Fault("frontend_down", frontend_down, hold=20),
    Fault("connector_paused", pause_connector, hold=30),
    Fault("duplicate_raw", duplicate_raw, hold=0),
    Fault("second_worker", second_worker, hold=0),
    Fault("older_version", replay_older_version, hold=0),
    Fault("oversize_value", oversize_value, hold=0),
    Fault("schema_drift", schema_drift_dropped_column, hold=0),
]}

# Faults a chaos day draws from: those that may strike at any moment while the HIS is being written.
CHAOS_FAULTS = ("worker_kill9", "worker_stop", "connect_kill9", "connect_stop", "broker_kill9", "broker_stop",
                "connector_paused", "duplicate_raw")


# --- moments ------------------------------------------------------------------------------------------------

def _scalar(dsn: str, sql: str) -> int:
    try:
        conn = psycopg2.connect(dsn, connect_timeout=3)
    except psycopg2.OperationalError:
        return 0
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()[0]
    except psycopg2.Error:
        return 0                     # not created yet
    finally:
        conn.close()


def _clock_at_or_after(settings: Settings, moment: datetime) -> bool:
    try:
        now = datetime.fromisoformat(json.loads(Path(settings.clock.file).read_text())["now"])
    except (OSError, ValueError, KeyError):
        return False
    return now >= moment


def moment_reached(at: str, settings: Settings) -> bool:
    c = settings.connections
    day = e2e.DAY.isoformat()
    if at == "stream":
        return _scalar(c.staging_dsn, f"SELECT count(*) FROM hisbridge.staged WHERE batch = '{day}'") > 0
    if at == "flush":
        return _scalar(c.staging_dsn, "SELECT count(*) FROM hisbridge.flush_plan") > 0
    if at == "committed":
        return _scalar(c.frontend_dsn, f"SELECT count(*) FROM hisbridge.ledger WHERE batch = '{day}'") > 0
    if at == "window_open":
        from hisbridge.clock import SHANGHAI
        return _clock_at_or_after(settings, datetime.combine(e2e.DAY, datetime.min.time(), SHANGHAI)
                                  + timedelta(hours=18))
    raise ValueError(f"unknown moment {at!r}")


# --- running a scenario ---------------------------------------------------------------------------------------

def _fire(run: FaultRun, fault: Fault) -> None:
    run.fired.append((fault.name, time.monotonic()))
    recover = fault.inject(run)
    if recover is not None:
        time.sleep(fault.hold)                 # the fault lasts this long (what the scenario is about)
        recover(run)
    run.recovered.append(time.monotonic())


class Injector:
    """Fires one fault at a moment from a thread of its own (or at the evening break, in the demo's thread)."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario, self.run = scenario, None
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    def start(self, run: FaultRun) -> None:
        self.run = run
        if self.scenario.at != "evening":
            self.thread = threading.Thread(target=self._watch, name=f"fault-{self.scenario.name}", daemon=True)
            self.thread.start()

    def _watch(self) -> None:
        try:
            wait_for(f"moment {self.scenario.at}", lambda: moment_reached(self.scenario.at, self.run.settings),
                     timeout=600, every=0.05)
            _fire(self.run, self.scenario.fault)
        except BaseException as exc:  # noqa: BLE001 — reported by finish()
            self.error = exc
        finally:
            self.done.set()

    def evening_break(self, settings: Settings) -> None:
        if self.scenario.at != "evening":
            return
        fault = self.scenario.fault
        self.run.fired.append((fault.name, time.monotonic()))
        recover = fault.inject(self.run)
        if recover is not None:
            def later() -> None:
                try:
                    time.sleep(fault.hold)
                    recover(self.run)
                    self.run.recovered.append(time.monotonic())
                except BaseException as exc:  # noqa: BLE001
                    self.error = exc
                finally:
                    self.done.set()
            self.thread = threading.Thread(target=later, daemon=True)
            self.thread.start()
        else:
            self.run.recovered.append(time.monotonic())
            self.done.set()

    def finish(self) -> None:
        if self.thread is not None:
            self.thread.join(timeout=300)
        if self.error is not None:
            raise self.error
        assert self.run.fired, f"the fault of {self.scenario.name} never fired (moment {self.scenario.at})"


@dataclass
class Verdict:
    batches: dict[str, str]          # batch → reconcile output
    seconds: float
    notes: list[str]
    observed: dict = field(default_factory=dict)     # what the run measured (README's table)


def _operator_view(worker_log: Path, fired_at: float | None, recovered_at: float | None) -> dict:
    """ERROR/WARNING lines of the worker's log and its most frequent ERROR text: what an operator saw."""
    try:
        lines = worker_log.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    errors = [l for l in lines if " ERROR " in l]
    texts: dict[str, int] = {}
    for line in errors:
        key = line.split(" ERROR ", 1)[1].strip()[:90]
        texts[key] = texts.get(key, 0) + 1
    top = sorted(texts.items(), key=lambda kv: -kv[1])[:2]
    return {"worker_errors": len(errors), "worker_warnings": sum(" WARNING " in l for l in lines),
            "top_errors": top,
            "fault_seconds": None if fired_at is None or recovered_at is None else round(recovered_at - fired_at, 1)}


def planted(want: dict) -> set[tuple[str, str, str]]:
    return {(t, k, r) for (t, _), e in want.items() for k, r in e.quarantined}


def _quarantine_counts(run, want: dict, extra: set = frozenset()) -> dict:
    return {"quarantined": len(e2e.quarantine_pairs(run)), "planted": len(planted(want)), "scenario's own": len(extra)}


def _his_counts(outputs: dict[str, str]) -> dict:
    def count(word: str) -> int:
        return sum(int(l.split(": ", 1)[1].split()[0]) for o in outputs.values() for l in o.splitlines()
                   if l.startswith("  ") and f" {word} e.g. " in l)
    return {"missing": count("missing"), "duplicated": count("duplicated"),
            "his_keys": sum(int(l.split()[2]) for o in outputs.values() for l in o.splitlines()
                            if l[:1].isalpha() and len(l.split()) > 3 and l.split()[2].isdigit())}


def record(name: str, verdict: Verdict, settings: Settings) -> None:
    """One JSON line per run under var/faults/ (the figures README.md's table is filled from)."""
    out = Path(settings.paths.var) / "faults" / "results.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        f.write(json.dumps({"scenario": name, "seconds": round(verdict.seconds), "notes": verdict.notes,
                            **verdict.observed}, ensure_ascii=False) + "\n")


def his_reconcile(settings: Settings, batch: str) -> tuple[int, str]:
    """`hisbridge reconcile --batch B` against the HIS (no --sim-*), with the run's settings."""
    result = CliRunner().invoke(cli_main, ["reconcile", "--batch", batch, "--show", "10"],
                                env=environment_for(settings))
    return result.exit_code, result.output + (f"\n{result.exception!r}" if result.exception and
                                              not isinstance(result.exception, SystemExit) else "")


def batches_of(want: dict) -> list[str]:
    return sorted({b for (t, b) in want if e2e.CATALOG.table(t).cadence == "daily"})


def check_his_side(settings: Settings, want: dict) -> dict[str, str]:
    """0 missing, 0 duplicated (and everything else reconcile checks) for every daily batch of the run."""
    outputs = {}
    for batch in batches_of(want):
        code, output = his_reconcile(settings, batch)
        outputs[batch] = output
        assert code == 0 and f"reconciliation OK: batch {batch}" in output, f"batch {batch}:\n{output}"
        assert " missing " not in output and " duplicated " not in output, output
    return outputs


def _own_his(res: Resources, tmp: Path) -> dict[str, str]:
    """On PostgreSQL the run's HIS is a database of its own (the demo creates and prepares it); the worker's
    disk state (the reference store) is the run's own too."""
    return {"HISBRIDGE_HIS_DSN": res.database("his", f"his_fault_{res.id}", create=False),
            "HISBRIDGE_STATE_DIR": str(tmp / "state")}


def run_scenario(res: Resources, tmp: Path, scenario: Scenario, speed: float = 4000.0) -> Verdict:
    env = _own_his(res, tmp)
    frontend = None
    if scenario.own_frontend:
        frontend = ThrowawayPostgres(res.settings)
        res.finally_(frontend.remove)
        frontend.start()
        env["HISBRIDGE_FRONTEND_DSN"] = f"host=127.0.0.1 port={frontend.inst.port} dbname=frontend_{res.id} user=postgres"
    injector = Injector(scenario)

    def on_start(settings: Settings, worker: Worker, connector: str) -> None:
        res.finally_(Worker(settings, worker.name + "-twin").stop)
        fault_run = FaultRun(settings, worker, connector, frontend)
        res.finally_(fault_run.stopping.set)
        fault_run.supervise()
        injector.start(fault_run)
    began = time.monotonic()
    run = e2e.run_demo(res, tmp, "f" + scenario.name.replace("_", "")[:10], env, evening=True,
                       evening_break=injector.evening_break, on_start=on_start, speed=speed)
    injector.finish()
    want = e2e.expected(datetime.combine(e2e.DAY, datetime.min.time()) + timedelta(hours=22))
    fr = injector.run
    observed = {**_operator_view(run.worker_log, fr.fired[0][1], fr.recovered[0] if fr.recovered else None),
                **_quarantine_counts(run, want, fr.expect_quarantine), "supervisor_restarts": fr.restarts}
    outputs = check_his_side(run.settings, want)
    observed.update(_his_counts(outputs))
    assert e2e.quarantine_pairs(run) == planted(want) | fr.expect_quarantine, (
        sorted(e2e.quarantine_pairs(run) ^ (planted(want) | fr.expect_quarantine)))
    if not fr.his_changed:
        e2e.check_every_batch_reconciles_exactly(run, want)
    for check in fr.checks:
        check(run)
    verdict = Verdict(outputs, time.monotonic() - began, fr.notes, observed)
    record(scenario.name, verdict, res.settings)
    return verdict


# --- a chaos day --------------------------------------------------------------------------------------------

@dataclass
class ChaosPlan:
    seed: int
    faults: list[tuple[str, float, float]]     # (fault, pause before it, hold)


def chaos_plan(seed: int, count: int = 20) -> ChaosPlan:
    """`count` faults drawn with their pauses and holds from one seeded generator: the same seed, the same day."""
    rng = random.Random(seed)
    return ChaosPlan(seed, [(rng.choice(CHAOS_FAULTS), rng.uniform(1.0, 5.0), rng.uniform(2.0, 8.0))
                            for _ in range(count)])


class ChaosInjector:
    """Fires the plan's faults one after the other while day D is inserted; the demo's 'committed' line
    (the day's inserts are done) waits for the last recovery, so draining starts on a healed stack."""

    def __init__(self, plan: ChaosPlan) -> None:
        self.plan, self.run = plan, None
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.loading = threading.Event()

    def start(self, run: FaultRun) -> None:
        self.run = run
        self.thread = threading.Thread(target=self._day, name="chaos", daemon=True)
        self.thread.start()

    def say(self, line: str) -> None:
        if line.startswith("day D = "):
            self.loading.set()
        elif "HIS changes committed" in line and self.thread is not None:
            self.thread.join(timeout=900)

    def _day(self) -> None:
        try:
            self.loading.wait(timeout=600)
            for name, pause, hold in self.plan.faults:
                time.sleep(pause)
                fault = FAULTS[name]
                _fire(self.run, Fault(fault.name, fault.inject, hold=hold))
        except BaseException as exc:  # noqa: BLE001 — reported by finish()
            self.error = exc

    def finish(self) -> None:
        if self.error is not None:
            raise self.error
        assert len(self.run.fired) == len(self.plan.faults), (len(self.run.fired), len(self.plan.faults))


def chaos_speed(plan: ChaosPlan) -> float:
    """Simulated seconds per real second so that day D's inserts outlast the plan (restarts take ~15 s)."""
    seconds = sum(p + h + 15.0 for _, p, h in plan.faults)
    return max(50.0, 86400.0 / seconds)


def run_chaos(res: Resources, tmp: Path, seed: int, count: int = 20) -> Verdict:
    plan = chaos_plan(seed, count)
    injector = ChaosInjector(plan)

    def on_start(settings: Settings, worker: Worker, connector: str) -> None:
        fault_run = FaultRun(settings, worker, connector)
        res.finally_(fault_run.stopping.set)
        fault_run.supervise()
        injector.start(fault_run)
    began = time.monotonic()
    run = e2e.run_demo(res, tmp, "chaos", _own_his(res, tmp), evening=True, on_start=on_start, speed=chaos_speed(plan),
                       say=injector.say)
    injector.finish()
    want = e2e.expected(datetime.combine(e2e.DAY, datetime.min.time()) + timedelta(hours=22))
    fr = injector.run
    observed = {**_operator_view(run.worker_log, fr.fired[0][1], fr.recovered[-1]),
                **_quarantine_counts(run, want), "supervisor_restarts": fr.restarts}
    outputs = check_his_side(run.settings, want)
    observed.update(_his_counts(outputs))
    e2e.check_quarantine_holds_exactly_the_planted_defects(run, want)
    verdict = Verdict(outputs, time.monotonic() - began, [f"{n} after {p:.1f}s for {h:.1f}s" for n, p, h in plan.faults],
                      observed)
    record(f"chaos seed {seed}", verdict, res.settings)
    return verdict
