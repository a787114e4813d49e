"""`make demo`: one simulated hospital day D flows HIS → Debezium → Kafka → Faust → front-end, across 18:00.

What it does (the stack must be up — `make demo` runs `make up` first):
  1. the simulated HIS (schema `his`), the Debezium connector for the tables the source mapping reads,
     a demo SM4 key generated once into var/secrets/ (0600; never printed, never in the repository);
  2. the Faust worker in the background (transform + sink agents) on a steered clock (HISBRIDGE_CLOCK_FILE);
  3. day D (a past date: the activity of [D-1 18:00, D 18:00)) inserted live on an accelerated clock;
  4. HOLD: the sink's clock stays at D 17:59:59 until the pipeline has drained — consumer lag 0 on the raw and
     core topics and the sink's watermark past the commit time of the last insert;
  5. the clock moves to D 18:00: the delivery window opens and batch D is flushed with its report_datetime;
  6. the evening [D 18:00, D 22:00) is inserted live with the clock following it (new visits belong to batch
     D+1 and wait for their own window; late entries for D's visits go out as resubmissions while D's window
     is open); at 22:00 the window closes;
  7. a summary: HIS rows, per table expected / delivered / quarantined by reason, report_datetime,
     reconciliation, and where to look next. The stack and the worker keep running (`make down` stops them).

Why the hold: batches are assigned by the records' simulated event times, but a batch is closed by the
WATERMARK, which comes from the REAL commit times of the source transactions (Debezium's source.ts_ms). With D
in the past, every batch up to today counts as closed the moment its rows are seen, so a sink clock inside
D's delivery window would flush whatever had arrived so far and send the rest as resubmissions. Holding the
simulated clock before 18:00 until the pipeline has drained gives the one complete first delivery a hospital
sees on a normal day (when 18:00 + grace is real time and the watermark passes it after the day's changes).

Re-running continues the simulated history: the next run simulates the next day D+1 (state in
var/demo/state.json), as long as it is in the past. Settings (environment): DEMO_VISITS (2000), DEMO_SEED (1),
DEMO_BAD_SHARE (0.02), DEMO_SPEED (simulated seconds per real second, 1200), DEMO_DAY (YYYY-MM-DD, first run),
DEMO_WORKER (background process name, default `worker`, which `make down` stops), HISBRIDGE_CONNECTOR_NAME
(his-demo), plus every HISBRIDGE_* setting of hisbridge.settings (the demo defaults its own app id and topic
prefix so it never shares them with tests); the worker gets the demo's settings as its environment.
HISBRIDGE_HIS_KIND=mariadb runs the same day through the local MariaDB HIS (`mariadb-his`, database `his`)
and the Debezium MariaDB connector, with the same source mapping.
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from datetime import time as dtime
from datetime import timedelta
from pathlib import Path
from typing import Callable

import psycopg2
from devstack import postgres
from devstack.worker import Worker
from hisbridge import hisdb
from hisbridge.catalog import catalog_for
from hisbridge.chain.mapping import load_mapping
from hisbridge.clock import SHANGHAI, wall_text, write_clock_file
from hisbridge.contract import (core_topic, quarantine_topic, raw_topics,
                                transform_group)
from hisbridge.delivery import ledger, staging
from hisbridge.ops import connectors, reconcile
from hisbridge.messages import OperatorError
from hisbridge.ops.lag import lag_by_topic, partition_lags
from hisbridge.runtime.topics import ensure_topics
from hisbridge.settings import Settings, environment_for, load_settings
from hisbridge.sim import expectations, generate
from hisbridge.sim import load as sim_load

DEMO_DEFAULTS = {
    "HISBRIDGE_WORKER_APP_ID": "hisbridge-demo",
    "HISBRIDGE_TOPIC_PREFIX": "hisdemo",       # the stack probe's connector uses `his`
    "HISBRIDGE_CORE_PREFIX": "core",
    "HISBRIDGE_AGENTS": "transform,sink",
    "HISBRIDGE_SINK_TICK": "1",
    "HISBRIDGE_WORKER_WEB_PORT": "0",
    "HISBRIDGE_LOOKUP_WAIT": "120",
}


@dataclass
class DemoConfig:
    settings: Settings
    day: date
    window_start: datetime                  # local, naive: where this run's simulated activity starts
    visits: int = 2000
    seed: int = 1
    bad_share: float = 0.02
    speed: float = 1200.0
    connector: str = "his-demo"
    worker_name: str = "worker"             # `stack down` stops the worker of this name
    evening: bool = True
    first_run: bool = True
    say: Callable[[str], None] = print
    evening_break: Callable[[], None] | None = None   # run at D 20:00 of the evening (tests change the HIS there)


@dataclass
class Outcome:
    reports: list = field(default_factory=list)       # reconcile.TableReport per (table, batch)
    report_datetimes: list = field(default_factory=list)
    his_rows: dict = field(default_factory=dict)
    quarantine: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.reports) and all(r.ok for r in self.reports)


# --- setup ----------------------------------------------------------------------------------------------------

def demo_settings() -> Settings:
    """The process's settings with the demo's defaults under them (the environment still wins). A demo on
    another HIS engine gets names of its own (connector, topics, group, staging and front-end databases), so
    the PostgreSQL and the MariaDB hospital can both be simulated on one stack without meeting."""
    base = load_settings()
    own = {**DEMO_DEFAULTS, "HISBRIDGE_CONNECTOR_NAME": "his-demo",
           "HISBRIDGE_CLOCK_FILE": str(base.paths.var / "demo" / "clock.json"),
           "HISBRIDGE_SM4_KEY_FILE": str(base.paths.secrets / "demo_sm4.key")}
    kind = base.source.kind
    if kind != "postgres":
        c = base.connections
        own.update({"HISBRIDGE_CONNECTOR_NAME": f"his-demo-{kind}", "HISBRIDGE_TOPIC_PREFIX": f"hisdemo{kind}",
                    "HISBRIDGE_CORE_PREFIX": f"core{kind}", "HISBRIDGE_WORKER_APP_ID": f"hisbridge-demo-{kind}",
                    "HISBRIDGE_CLOCK_FILE": str(base.paths.var / "demo" / f"clock-{kind}.json"),
                    "HISBRIDGE_STAGING_DSN": _db_suffixed(c.staging_dsn, kind),
                    "HISBRIDGE_FRONTEND_DSN": _db_suffixed(c.frontend_dsn, kind)})
    return load_settings({**own, **os.environ})


def ensure_key_file(path: Path) -> None:
    """A random demo SM4 key, created once with mode 0600 (a real hospital uses the province's key)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(os.urandom(16).hex() + "\n")


def _dsn_db(dsn: str) -> str:
    return dict(part.split("=", 1) for part in dsn.split())["dbname"]


def _db_suffixed(dsn: str, suffix: str) -> str:
    name = _dsn_db(dsn)
    return dsn.replace(f"dbname={name}", f"dbname={name}_{suffix}")


def ensure_database(settings: Settings, dsn: str, his: bool = False) -> None:
    """Create the DSN's database on its server if missing; a new HIS database gets the CDC preparation."""
    name = _dsn_db(dsn)
    admin = psycopg2.connect(dsn.replace(f"dbname={name}", "dbname=postgres"))
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone():
                return
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        admin.close()
    if his:
        postgres.his(settings).prepare_cdc(name)


def start_worker(cfg: DemoConfig) -> Worker:
    """(Re)start the background worker so it runs with the demo's settings."""
    worker = Worker(cfg.settings, cfg.worker_name)
    worker.start_background(env=environment_for(cfg.settings), restart=True)
    return worker


# --- clock, lag, watermark ------------------------------------------------------------------------------------

def local(moment: datetime) -> datetime:
    return moment.replace(tzinfo=SHANGHAI)


def set_clock(settings: Settings, moment: datetime) -> None:
    write_clock_file(settings.clock.file, local(moment), 0.0)


def pipeline_topics(settings: Settings, mapping) -> tuple[list[str], list[str]]:
    prefix = settings.source.topic_prefix
    raw = raw_topics(prefix, mapping.sources)
    core = [core_topic(settings.worker.core_prefix, t) for t in mapping.tables]
    return raw, core


def consumer_lag(bootstrap: str, group: str, topics: list[str]) -> dict[str, int]:
    """Per topic: end offset − the group's committed offset (summed over partitions; no commit = 0)."""
    from kafka.admin import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="hisbridge-demo-lag")
    try:
        return lag_by_topic(partition_lags(admin, [group], topics)).get(group, {})
    finally:
        admin.close()


def sink_watermark_ms(staging_dsn: str, connector: str, core: list[str]) -> int | None:
    """The sink's durable watermark for the connector: min over the core partitions of the latest mark."""
    conn = psycopg2.connect(staging_dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass('hisbridge.progress')")
            if cur.fetchone()[0] is None:
                return None
            cur.execute("SELECT topic, min(commit_ms) FROM hisbridge.progress WHERE connector = %s "
                        "AND topic = ANY(%s) GROUP BY topic", (connector, core))
            marks = dict(cur.fetchall())
    finally:
        conn.close()
    return min(marks.values()) if set(marks) == set(core) else None


def wait_drained(cfg: DemoConfig, mapping, after_ms: int, timeout: float = 300.0) -> float:
    """Until lag is 0 on raw and core topics and the watermark has passed `after_ms`; returns seconds."""
    settings, say = cfg.settings, cfg.say
    raw, core = pipeline_topics(settings, mapping)
    group, bootstrap = settings.worker.app_id, settings.connections.kafka_bootstrap
    began, last_said = time.monotonic(), 0.0
    staged = core + [quarantine_topic(settings.worker.core_prefix)]   # entries reach staging through the sink too
    while True:
        lag = {**consumer_lag(bootstrap, transform_group(group), raw), **consumer_lag(bootstrap, group, staged)}
        mark = sink_watermark_ms(settings.connections.staging_dsn, settings.source.topic_prefix, core)
        raw_lag, core_lag = sum(lag.get(t, 0) for t in raw), sum(lag.get(t, 0) for t in staged)
        passed = mark is not None and mark >= after_ms
        if raw_lag == 0 and core_lag == 0 and passed:
            return time.monotonic() - began
        elapsed = time.monotonic() - began
        if elapsed - last_said >= 5:
            shown = "none yet" if mark is None else f"{(after_ms - mark) / 1000:+.0f}s to go" if not passed else "passed"
            say(f"  draining: lag raw {raw_lag}, core {core_lag}; watermark {shown}")
            last_said = elapsed
        if elapsed > timeout:
            raise RuntimeError(f"pipeline not drained after {timeout:.0f}s (lag raw {raw_lag}, core {core_lag}, "
                               f"watermark {mark}); see {Worker(settings, cfg.worker_name).log}")
        time.sleep(1.0)


def pending_batches(staging_dsn: str, up_to: str, org: str) -> list[tuple[str, str, int]]:
    """(table, batch, rows) of this hospital's daily batches up to D with rows no flush has carried yet."""
    conn = psycopg2.connect(staging_dsn)
    try:
        staging.ensure_schema(conn)
        return [(c.table, c.batch, c.pending) for c in staging.batch_counts(conn, org=org, cadence="daily", up_to=up_to)
                if c.pending]
    finally:
        conn.close()


def wait_flushed(settings: Settings, day: date, org: str, timeout: float = 120.0) -> float:
    """Until no daily batch up to D has rows waiting (the window is open, the watermark has passed)."""
    began = time.monotonic()
    while True:
        waiting = pending_batches(settings.connections.staging_dsn, day.isoformat(), org)
        if not waiting:
            return time.monotonic() - began
        if time.monotonic() - began > timeout:
            raise RuntimeError(f"batches still pending after {timeout:.0f}s: {waiting[:5]}")
        time.sleep(1.0)


# --- the run --------------------------------------------------------------------------------------------------

def load_window(start: datetime, end: datetime, cfg: DemoConfig, follow_clock: bool) -> tuple[int, int]:
    """Insert the activity of [start, end) live; returns (changes applied, real commit ms of the last)."""
    activity = generate.activity(cfg.seed, start, end, cfg.visits, cfg.bad_share)

    def progress(at: datetime, n: int) -> None:
        if follow_clock:
            set_clock(cfg.settings, at)
        cfg.say(f"  sim clock {wall_text(at)}  {n} HIS changes")

    conn = his_connection(cfg.settings)
    try:
        applied = sim_load.load_live(conn, activity.events, start, cfg.speed, progress,
                                     progress_every=timedelta(hours=2 if not follow_clock else 0.5))
    finally:
        conn.close()
    return applied, int(time.time() * 1000)


def his_connection(settings: Settings):
    """The simulated HIS of the configured engine (source.kind) as its administrator."""
    return sim_load.connect(hisdb.admin_dsn(settings), settings.source.kind)


def prepare(cfg: DemoConfig, catalog, mapping) -> None:
    say, settings = cfg.say, cfg.settings
    c = settings.connections
    if settings.source.kind == "postgres":
        ensure_database(settings, c.his_dsn, his=True)   # MariaDB: `his` is a database sim_load creates
    ensure_database(settings, c.staging_dsn)
    ensure_database(settings, c.frontend_dsn)
    conn = his_connection(settings)
    try:
        sim_load.init_schema(conn, cfg.seed)
    finally:
        conn.close()
    say(f"HIS: schema his ready ({settings.source.kind}, {hisdb.admin_dsn(settings)})")
    spec = connectors.ConnectorSpec(cfg.connector, settings.source.kind, mapping.sources, heartbeat_ms=2000)
    say(f"connector {cfg.connector}: {connectors.apply(settings, spec)}, RUNNING (topic prefix "
        f"{settings.source.topic_prefix}, {len(spec.tables)} tables)")
    ensure_key_file(settings.sm4.key_file)
    set_clock(settings, datetime.combine(cfg.day, dtime(17, 59, 59)))
    prefix = settings.worker.core_prefix
    ensure_topics(c.kafka_bootstrap, [core_topic(prefix, t) for t in catalog.tables] + [quarantine_topic(prefix)],
                  "hisbridge-demo-setup", replication=c.topic_replication)
    worker = start_worker(cfg)
    say(f"worker: pid {worker.pid()} ({' + '.join(settings.worker.agents)}, app id {settings.worker.app_id}), log {worker.log}")


def run(cfg: DemoConfig) -> Outcome:
    say, settings = cfg.say, cfg.settings
    catalog = catalog_for(settings.paths)
    mapping = load_mapping(catalog, settings.paths.mapping, settings.org)
    out = Outcome()
    t0 = time.monotonic()
    prepare(cfg, catalog, mapping)
    out.timings["setup"] = time.monotonic() - t0
    six_pm = datetime.combine(cfg.day, dtime(18))
    say(f"day D = {cfg.day}: simulating [{wall_text(cfg.window_start)}, {wall_text(six_pm)}) live at "
        f"{cfg.speed:.0f}x ({cfg.visits} visits/day, bad share {cfg.bad_share}); sink clock held at D 17:59:59")
    t = time.monotonic()
    applied, last_ms = load_window(cfg.window_start, six_pm, cfg, follow_clock=False)
    out.timings["day"] = time.monotonic() - t
    say(f"  {applied} HIS changes committed in {out.timings['day']:.0f}s; waiting for the pipeline to drain")
    out.timings["drain"] = wait_drained(cfg, mapping, last_ms)
    say(f"drained in {out.timings['drain']:.0f}s: lag 0, watermark past the last commit → clock to D 18:00:01")
    set_clock(settings, six_pm + timedelta(seconds=1))
    out.timings["flush"] = wait_flushed(settings, cfg.day, mapping.org_code)
    say(f"batch {cfg.day} flushed {out.timings['flush']:.0f}s after the window opened")
    if cfg.evening:
        ten_pm = six_pm + timedelta(hours=4)
        say("evening: [D 18:00, D 22:00) live, clock following (late entries → resubmissions, new visits → D+1)")
        resume = six_pm
        if cfg.evening_break is not None:
            resume = six_pm + timedelta(hours=2)
            load_window(six_pm, resume, cfg, follow_clock=True)
            cfg.evening_break()
        _, last_ms = load_window(resume, ten_pm, cfg, follow_clock=True)
        set_clock(settings, ten_pm - timedelta(seconds=30))
        wait_drained(cfg, mapping, last_ms)
        wait_flushed(settings, cfg.day, mapping.org_code)
        set_clock(settings, ten_pm + timedelta(seconds=1))
        say("clock at D 22:00:01: the delivery window is closed")
    out.timings["total"] = time.monotonic() - t0
    summarize(cfg, catalog, mapping, out)
    return out


def summarize(cfg: DemoConfig, catalog, mapping, out: Outcome) -> None:
    """Reconcile the batches this run delivered: on a first run every batch up to D (stays that began before the
    window are back-filled), afterwards batch D. Expected = the simulator's activity from D-1 18:00 to where
    this run stopped (late entries after 18:00 still belong to batch D), through the source mapping."""
    end = datetime.combine(cfg.day, dtime(22 if cfg.evening else 18))
    activity = generate.activity(cfg.seed, generate.batch_window(cfg.day)[0], end, cfg.visits, cfg.bad_share)
    expected = expectations.sim_expectations(activity, mapping, catalog, generate.PRIMARY_KEYS)
    last = cfg.day.isoformat()
    wanted = sorted(k for k in expected if (k[1] <= last if cfg.first_run else k[1] == last)
                    and catalog.table(k[0]).cadence == "daily")
    c = cfg.settings.connections
    front = psycopg2.connect(c.frontend_dsn)
    stage = psycopg2.connect(c.staging_dsn)
    # only open entries count: a late reference row's entry is resolved when its record is staged
    out.quarantine = reconcile.open_entries(stage)
    try:
        for table_name, batch in wanted:
            table = catalog.table(table_name)
            rows = ledger.rows(front, table_name, batch)
            out.report_datetimes += [r.report_datetime for r in rows]
            out.reports.append(reconcile.reconcile_table(
                table, batch, expected[(table_name, batch)], front, stage, rows,
                reconcile.open_quarantine(stage, table_name, batch)))
    finally:
        front.close()
        stage.close()
    his = his_connection(cfg.settings)
    try:
        with hisdb.transaction(his) as cur:
            for t in sorted(generate.PRIMARY_KEYS):
                cur.execute(f"SELECT count(*) FROM his.{t}")
                out.his_rows[t] = cur.fetchone()[0]
    finally:
        his.close()


def print_summary(cfg: DemoConfig, out: Outcome) -> None:
    print("\n== HIS rows (simulated hospital, schema his) ==")
    print("  " + ", ".join(f"{t} {n}" for t, n in out.his_rows.items()))
    print("\n== batch reconciliation (expected = the simulator's manifest through the source mapping) ==")
    for line in reconcile.format_report(out.reports):
        print("  " + line)
    reasons = Counter()
    for r in out.reports:
        reasons.update(r.quarantined)
    print("\nquarantined by reason: " + (", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) or "none"))
    rdts = sorted(set(out.report_datetimes))
    print("report_datetime: " + (", ".join(wall_text(r, "microseconds") for r in rdts) or "none"))
    print(f"reconciliation: {'OK' if out.ok else 'NOT OK'}")
    t = out.timings
    print(f"timings: setup {t.get('setup', 0):.0f}s, day {t.get('day', 0):.0f}s, drain {t.get('drain', 0):.0f}s, "
          f"flush {t.get('flush', 0):.0f}s, total {t.get('total', 0):.0f}s")
    fe = cfg.settings.connections.frontend_dsn
    print(f"""
where to look next:
  psql "{fe}" -c "SELECT tbl, batch, report_datetime, row_count, kind FROM hisbridge.ledger ORDER BY written_at"
  psql "{fe}" -c "SELECT jzlsh, xm, xb, jzksdm, scsj, report_datetime FROM mjzzlxx ORDER BY scsj DESC LIMIT 5"
  .venv/bin/hisbridge status            # stack, connector, consumer lag, staging, ledger, quarantine
  .venv/bin/hisbridge reconcile --batch {cfg.day} --sim-seed {cfg.seed} --sim-visits {cfg.visits} --sim-bad-share {cfg.bad_share}
  tail -f {Worker(cfg.settings, cfg.worker_name).log}
identity fields (xm, sfzh, dh, …) are SM4 ciphertext: the demo key is in {cfg.settings.sm4.key_file}
the stack and the worker keep running; `make down` stops everything.""")


# --- state: which day comes next -----------------------------------------------------------------------------

def state_file(settings: Settings) -> Path:
    """Per connector (= per simulated HIS): the last simulated day and where its activity ended."""
    return settings.paths.var / "demo" / f"state-{settings.source.connector}.json"


def next_config(settings: Settings) -> DemoConfig:
    """First run: D = DEMO_DAY or yesterday (Asia/Shanghai); later runs continue with the next day."""
    today = datetime.now(SHANGHAI).date()
    path = state_file(settings)
    state = json.loads(path.read_text()) if path.exists() else None
    if state is None:
        day = date.fromisoformat(os.environ["DEMO_DAY"]) if os.environ.get("DEMO_DAY") else today - timedelta(days=1)
        start, first = generate.batch_window(day)[0], True
    else:
        day, start, first = date.fromisoformat(state["day"]) + timedelta(days=1), datetime.fromisoformat(state["end"]), False
    if day >= today:
        raise OperatorError("demo.no_past_day", last=(day - timedelta(days=1)).isoformat())
    return DemoConfig(settings=settings, day=day, window_start=start, visits=int(os.environ.get("DEMO_VISITS", 2000)),
                      seed=int(os.environ.get("DEMO_SEED", 1)),
                      bad_share=float(os.environ.get("DEMO_BAD_SHARE", 0.02)),
                      speed=float(os.environ.get("DEMO_SPEED", 1200)), first_run=first,
                      connector=settings.source.connector, worker_name=os.environ.get("DEMO_WORKER") or "worker")


def save_state(cfg: DemoConfig) -> None:
    end = datetime.combine(cfg.day, dtime(22 if cfg.evening else 18))
    path = state_file(cfg.settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"day": cfg.day.isoformat(), "end": end.isoformat()}))


def main() -> None:
    cfg = next_config(demo_settings())
    save_state(cfg)       # before inserting: a failed run must not make the next one insert the same day
    out = run(cfg)
    print_summary(cfg, out)
    if not out.ok:
        raise SystemExit(1)


if __name__ == "__main__":
    from hisbridge.cli.errors import run_entry_point
    run_entry_point(main)
