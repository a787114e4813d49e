"""The fault suite's harness: a scenario is the demo scenario's data (tests/support/e2e: seed 7, 200 visits a
day, 5 % planted defects, day D and its evening, an isolated deployment) plus a fault — what breaks, at which
moment, and how it recovers — and every scenario ends with the same verdict:

  * `hisbridge reconcile --batch B` WITHOUT --sim-* (the HIS itself, through the CDC role) for every daily batch
    the run touched: 0 missing, 0 duplicated, exit 0;
  * the quarantine holds exactly the planted defects (the simulator's manifest), nothing more, nothing less;
  * the demo's own exact reconciliation against the manifest is OK.

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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

import psycopg2
from click.testing import CliRunner
from devstack import postgres
from devstack.connect import Connect
from devstack.kafka import Kafka
from devstack.worker import Worker
from hisbridge.cli import main as cli_main
from hisbridge.contract import raw_topic
from hisbridge.ops import connectors
from hisbridge.settings import Settings, environment_for
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

    def note(self, text: str) -> None:
        self.notes.append(text)


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
    wait_for("the worker running again", run.worker.is_running, timeout=30)


def kill_worker(run: FaultRun) -> Recover:
    _kill9(run.worker.pid(), "the worker")
    wait_for("the killed worker gone", lambda: not run.worker.is_running(), timeout=30)
    return _restart_worker


def stop_worker(run: FaultRun) -> Recover:
    run.worker.stop()
    return _restart_worker


def _component_fault(make: Callable[[Settings], object], kill: bool) -> Callable[[FaultRun], Recover]:
    def inject(run: FaultRun) -> Recover:
        component = make(run.settings)
        if kill:
            _kill9(component.pid(), component.name)
            wait_for(f"{component.name} gone", lambda: not component.is_running(), timeout=30)
        else:
            component.stop()

        def recover(r: FaultRun) -> None:
            component.start()
        return recover
    return inject


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
    return lambda r: r.frontend.start()


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
    # another machine or container: its own state folder (the reference store refuses a second process)
    state = run.settings.paths.var / f"{run.worker.name}-twin-state"
    twin.start_background(env={**environment_for(run.settings), "HISBRIDGE_STATE_DIR": str(state)})
    return lambda r: None      # both keep running to the end; the twin is stopped at cleanup


FAULTS = {f.name: f for f in [
    Fault("worker_kill9", kill_worker, hold=0),
    Fault("worker_stop", stop_worker, hold=5),
    Fault("connect_kill9", _component_fault(Connect, kill=True), hold=10),
    Fault("connect_stop", _component_fault(Connect, kill=False), hold=10),
    Fault("broker_kill9", _component_fault(Kafka, kill=True), hold=10),
    Fault("broker_stop", _component_fault(Kafka, kill=False), hold=10),
    Fault("his_crash", crash_his, hold=0),
    Fault("his_stop", stop_his, hold=0),
    Fault("frontend_down", frontend_down, hold=20),
    Fault("connector_paused", pause_connector, hold=30),
    Fault("duplicate_raw", duplicate_raw, hold=0),
    Fault("second_worker", second_worker, hold=0),
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
                except BaseException as exc:  # noqa: BLE001
                    self.error = exc
                finally:
                    self.done.set()
            self.thread = threading.Thread(target=later, daemon=True)
            self.thread.start()
        else:
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


def _own_his(res: Resources) -> dict[str, str]:
    """On PostgreSQL the run's HIS is a database of its own (the demo creates and prepares it)."""
    return {"HISBRIDGE_HIS_DSN": res.database("his", f"his_fault_{res.id}", create=False)}


def run_scenario(res: Resources, tmp: Path, scenario: Scenario, speed: float = 4000.0) -> Verdict:
    env = _own_his(res)
    frontend = None
    if scenario.own_frontend:
        frontend = ThrowawayPostgres(res.settings)
        res.finally_(frontend.remove)
        frontend.start()
        env["HISBRIDGE_FRONTEND_DSN"] = f"host=127.0.0.1 port={frontend.inst.port} dbname=frontend_{res.id} user=postgres"
    injector = Injector(scenario)

    def on_start(settings: Settings, worker: Worker, connector: str) -> None:
        res.finally_(Worker(settings, worker.name + "-twin").stop)
        injector.start(FaultRun(settings, worker, connector, frontend))
    began = time.monotonic()
    run = e2e.run_demo(res, tmp, "f" + scenario.name.replace("_", "")[:10], env, evening=True,
                       evening_break=injector.evening_break, on_start=on_start, speed=speed)
    injector.finish()
    want = e2e.expected(datetime.combine(e2e.DAY, datetime.min.time()) + timedelta(hours=22))
    outputs = check_his_side(run.settings, want)
    e2e.check_quarantine_holds_exactly_the_planted_defects(run, want)
    e2e.check_every_batch_reconciles_exactly(run, want)
    return Verdict(outputs, time.monotonic() - began, injector.run.notes)


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
        injector.start(FaultRun(settings, worker, connector))
    began = time.monotonic()
    run = e2e.run_demo(res, tmp, "chaos", _own_his(res), evening=True, on_start=on_start, speed=chaos_speed(plan),
                       say=injector.say)
    injector.finish()
    want = e2e.expected(datetime.combine(e2e.DAY, datetime.min.time()) + timedelta(hours=22))
    outputs = check_his_side(run.settings, want)
    e2e.check_quarantine_holds_exactly_the_planted_defects(run, want)
    return Verdict(outputs, time.monotonic() - began, [f"{n} after {p:.1f}s for {h:.1f}s" for n, p, h in plan.faults])
