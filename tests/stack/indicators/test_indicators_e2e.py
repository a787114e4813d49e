"""The tertiary-evaluation family on the real pipeline: simulated HIS (PostgreSQL) → real Debezium → Kafka →
the real worker (transform + sink, its own app id, topics, databases, connector, steered clock) → staging →
front-end.

A simulated month of detail (2024-03, from the last day of February 18:00 to the statistics office's entry on
2024-04-11 10:00) is committed into the HIS; once the pipeline has drained, its staged detail is exactly what
the source mapping makes of the HIS rows. Then the office's evaluation rows — the figures DERIVED from that
detail (hisbridge.sim.evaluation), two of them planted as mismatches — are committed, with the sink's clock
inside the monthly window (by the 15th): exactly the planted rows are held as `indicator_mismatch` with both
values in the reason, the others are in the front-end with the window's report_datetime, and reconcile for
the batch agrees.

Back-fill: a scaled-down detail history since 2022-01 and the office's evaluation rows of every month and
year, derived from it, staged with the clock outside every window; on 11 January 10:00 every period goes out
once (ledger = front-end, nothing held); a second run (the back-fill loaded again, and a fresh worker that
reads every raw change again into the same databases) delivers nothing."""
from __future__ import annotations

import os
import time
from contextlib import closing
from datetime import datetime, timedelta

import psycopg2
import pytest
from devstack.worker import Worker
from hisbridge.catalog import load_catalog
from hisbridge.chain.chain import business_key
from hisbridge.chain.mapping import load_mapping
from hisbridge.clock import SHANGHAI, write_clock_file
from hisbridge.contract import core_topic, join_key, quarantine_topic, raw_topics, transform_group
from hisbridge.delivery import ledger, quarantine, staging
from hisbridge.delivery.flush import ensure_frontend
from hisbridge.indicators import definitions, source
from hisbridge.ops import connectors, reconcile
from hisbridge.ops.lag import lag_by_topic, partition_lags
from hisbridge.runtime.topics import ensure_topics
from hisbridge.settings import environment_for, load_settings
from hisbridge.sim import evaluation, generate
from hisbridge.sim import load as sim_load
from kafka.admin import KafkaAdminClient
from support import wait_for

pytestmark = pytest.mark.stack
CATALOG = load_catalog()
MAPPING = load_mapping(CATALOG)
DEFS = definitions.load(load_settings().paths.indicators, CATALOG)
SEED, VISITS, MONTH = 5, 10, "2024-03"          # 10 visits and 4 admissions a day: ~130 discharges in March
PLANT = {"2.2.1.9": "value", "2.2.2.2": "numerator"}
ENTRY = evaluation.entry_moment(MONTH)           # 2024-04-11 10:00, inside the monthly window (1st–15th)


class Pipeline:
    """One isolated deployment named `tag`: HIS database with its connector, staging and front-end
    databases, and a worker run (its app id, core topics) on a steered clock; all of it registered in `res`
    for removal. `new_run` starts another worker run from scratch on the same HIS and databases."""

    def __init__(self, res, tmp, tag: str) -> None:
        self.res, self.tag = res, tag
        _, self.his_dsn, prefix = res.cdc_his(f"his_{tag}")
        self.stage_dsn = res.database("frontend", f"{tag}_stage_{res.id}")
        self.front_dsn = res.database("frontend", f"{tag}_front_{res.id}")
        self.connector = res.connector(f"his-{tag}-{res.id}")
        (tmp / "sm4.key").write_text(os.urandom(16).hex() + "\n")      # throwaway test key
        self.env = {"HISBRIDGE_HIS_DSN": self.his_dsn, "HISBRIDGE_TOPIC_PREFIX": prefix,
                    "HISBRIDGE_CONNECTOR_NAME": self.connector,
                    "HISBRIDGE_STAGING_DSN": self.stage_dsn, "HISBRIDGE_FRONTEND_DSN": self.front_dsn,
                    "HISBRIDGE_AGENTS": "transform,sink", "HISBRIDGE_SINK_TICK": "0.5",
                    "HISBRIDGE_WORKER_WEB_PORT": "0", "HISBRIDGE_LOOKUP_WAIT": "30",
                    "HISBRIDGE_CLOCK_FILE": str(tmp / "clock.json"), "HISBRIDGE_SM4_KEY_FILE": str(tmp / "sm4.key")}
        self.runs = 0
        self._configure()

    def _configure(self) -> None:
        """The settings and worker of run number `runs`: an app id (consumer groups) and core topics of its own."""
        res, run = self.res, f"{self.tag}{self.runs}"
        app_id = res.groups_starting(f"hisbridge-{run}-{res.id}")
        res.topics(app_id)                                   # the app's own topics (held records, assignor)
        self.settings = load_settings({**os.environ, **self.env, "HISBRIDGE_WORKER_APP_ID": app_id,
                                       "HISBRIDGE_CORE_PREFIX": res.topics(f"core{run}{res.id}")})
        self.worker = Worker(self.settings, f"worker-{run}-{res.id}")
        res.finally_(self.worker.stop)
        print(f"worker {self.worker.name}: log {self.worker.log}")     # shown when a test fails

    def start(self, clock: datetime) -> None:
        conn = sim_load.connect(self.his_dsn)
        try:
            sim_load.init_schema(conn, SEED)
        finally:
            conn.close()
        for dsn, ensure in ((self.stage_dsn, staging.ensure_schema), (self.front_dsn, ensure_frontend)):
            conn = psycopg2.connect(dsn)
            try:
                ensure(conn)
            finally:
                conn.close()
        connectors.apply(self.settings, connectors.ConnectorSpec(self.connector, "postgres", MAPPING.sources,
                                                                 heartbeat_ms=1000), timeout=180)
        self.set_clock(clock)
        self._start_worker()

    def _start_worker(self) -> None:
        c, core = self.settings.connections, self.settings.worker.core_prefix
        ensure_topics(c.kafka_bootstrap, [core_topic(core, t) for t in CATALOG.tables] + [quarantine_topic(core)],
                      f"hisbridge-{self.tag}-setup", replication=c.topic_replication)
        self.worker.start_background(env=environment_for(self.settings))

    def new_run(self) -> None:
        """Stop the worker; start a fresh one (new groups, new core topics) that reads every raw change again."""
        self.worker.stop()
        self.runs += 1
        self._configure()
        self._start_worker()

    def sink_ticks(self) -> int:
        """Steps the current run's flush timer has taken (its counter in staging)."""
        with self.stage() as conn, conn, conn.cursor() as cur:
            cur.execute("SELECT ticks FROM hisbridge.sink_ticks WHERE app = %s", (self.settings.worker.app_id,))
            row = cur.fetchone()
        return row[0] if row else 0

    def set_clock(self, moment: datetime) -> None:
        write_clock_file(self.settings.clock.file, moment.replace(tzinfo=SHANGHAI), 0.0)

    def commit(self, events: list[generate.Event]) -> int:
        """Commit the events into the HIS in one transaction; the real time (ms) just after the commit."""
        conn = sim_load.connect(self.his_dsn)
        try:
            sim_load.load_backdated(conn, events)
        finally:
            conn.close()
        return int(time.time() * 1000)

    def drained(self, after_ms: int) -> bool:
        """Lag 0 on the raw, core and quarantine topics and the sink's watermark past `after_ms`."""
        assert self.worker.is_running(), (f"{self.worker.name} not running ({self.worker.exit_status()}): "
                                          + self.worker.log.read_text(errors="replace")[-4000:])
        s = self.settings
        raw = raw_topics(s.source.topic_prefix, MAPPING.sources)
        core = [core_topic(s.worker.core_prefix, t) for t in MAPPING.tables]
        admin = KafkaAdminClient(bootstrap_servers=s.connections.kafka_bootstrap, client_id="ind-e2e-lag")
        try:
            lag = lag_by_topic(partition_lags(admin, [transform_group(s.worker.app_id), s.worker.app_id],
                                              raw + core + [quarantine_topic(s.worker.core_prefix)]))
        finally:
            admin.close()
        if any(lag.get(transform_group(s.worker.app_id), {}).get(t, 0) for t in raw) or \
                any(lag.get(s.worker.app_id, {}).get(t, 0) for t in core):
            return False
        with self.stage() as conn, conn, conn.cursor() as cur:
            cur.execute("SELECT count(DISTINCT topic), min(commit_ms) FROM hisbridge.progress "
                        "WHERE connector = %s AND topic = ANY(%s)", (s.source.topic_prefix, core))
            topics, mark = cur.fetchone()
        return topics == len(core) and mark >= after_ms

    def wait_drained(self, after_ms: int, what: str) -> None:
        wait_for(what, lambda: self.drained(after_ms), timeout=180, every=1.0)

    def stage(self):
        return closing(psycopg2.connect(self.stage_dsn))

    def front(self):
        return closing(psycopg2.connect(self.front_dsn))


def _pipeline(res, tmp_path_factory, tag: str):
    p = Pipeline(res, tmp_path_factory.mktemp(f"indicators-{tag}"), tag)
    yield p


@pytest.fixture(scope="module")
def pipeline(module_resources, tmp_path_factory):
    yield from _pipeline(module_resources, tmp_path_factory, "ind")


@pytest.fixture(scope="module")
def backfill(module_resources, tmp_path_factory):
    yield from _pipeline(module_resources, tmp_path_factory, "bf")


def staged_keys(conn, table: str) -> set[str]:
    with conn, conn.cursor() as cur:
        cur.execute("SELECT bkey FROM hisbridge.staged WHERE tbl = %s AND NOT revoked AND status <> 'superseded'",
                    (table,))
        return {k for (k,) in cur.fetchall()}


def wait_detail_staged(p: Pipeline, records: dict[str, list[dict]], what: str) -> None:
    """Until the staged detail is exactly what the mapping makes of the HIS rows (the records the office's
    figures come from). Lag 0 and the watermark are not enough: a record waiting in the transform for a
    reference row is released after the mark that passed it — and an evaluation row checked before its
    month's detail is all staged would be held against partial detail (the cross-check runs once, at staging)."""
    want = {t: {business_key(CATALOG.table(t), r) for r in rs} for t, rs in records.items()}

    def staged() -> bool:
        with p.stage() as stage:
            return all(staged_keys(stage, t) == keys for t, keys in want.items())
    began = time.monotonic()
    wait_for(what, staged, timeout=60, every=0.5)
    print(f"{what}: {time.monotonic() - began:.1f}s after the pipeline drained")


def test_a_month_through_the_pipeline_holds_exactly_the_planted_mismatches(pipeline):
    began = time.monotonic()
    pipeline.start(ENTRY - timedelta(hours=1))        # frozen: the daily windows (18:00–22:00) stay shut
    activity = evaluation.month_activity(SEED, MONTH, VISITS)
    rows = {**generate.dictionary_rows(SEED), **activity.rows()}
    pipeline.wait_drained(pipeline.commit(activity.events), "the month's detail staged")
    detail_at = time.monotonic()

    # the staged detail is exactly what the mapping makes of the HIS rows: the office's figures are derived
    # from the same records the cross-check reads
    want = evaluation.catalog_records(MAPPING, rows, evaluation.detail_tables(DEFS))
    wait_detail_staged(pipeline, want, "the staged detail = the mapped HIS rows")
    assert len([r for r in want["basy"] if str(r["cysj"])[:7] == MONTH]) > 100

    eval_rows, figures = evaluation.month_evaluation(SEED, MONTH, want, DEFS, PLANT)
    monthly = {r["indicator_code"] for r in eval_rows if r["specialty_code"] is None}
    assert set(PLANT) < monthly <= set(figures)          # every hospital-wide indicator is cross-checked
    mark = pipeline.commit([generate.Event(ENTRY, "eval_indicator", "insert", r) for r in eval_rows])
    pipeline.wait_drained(mark, "the evaluation rows staged")

    first = evaluation.first_day(MONTH)
    with pipeline.stage() as stage:
        held = quarantine.entries(stage, table="ylfwnl", rule="indicator_mismatch")
        assert sorted(e.key for e in held) == sorted(join_key(first, c) for c in PLANT)
        for e in held:
            (reason,) = e.entry["reasons"]
            code = e.entry["record"]["zbdm"]
            reported = next(r for r in eval_rows if r["indicator_code"] == code)
            value, num, _ = figures[code]
            shown = (reported["value"], value) if PLANT[code] == "value" else (reported["numerator"], num)
            assert reason["field"] == {"value": "zbz", "numerator": "fz"}[PLANT[code]]
            assert all(format(x.normalize(), "f") in reason["message"] for x in shown), reason["message"]
        assert quarantine.entries(stage, rule="indicator_mismatch") == held     # nothing else held

    keys = {"ylfwnl": {join_key(first, c) for c in monthly - set(PLANT)},
            "zdzkzb": {join_key(first, r["specialty_code"], r["indicator_code"]) for r in eval_rows
                       if r["specialty_code"]}}
    window_end = datetime.fromisoformat(source.month_range(MONTH)[1]).replace(day=15)     # the 15th 00:00
    with pipeline.front() as front, pipeline.stage() as stage:
        for name, delivered in keys.items():
            table = CATALOG.table(name)
            flushes = wait_for(f"{name} {MONTH} flushed", lambda: ledger.rows(front, name, MONTH), timeout=60)
            assert set(reconcile.frontend_keys(front, table, MONTH)) == delivered
            for f in flushes:
                assert ENTRY - timedelta(hours=1) <= f.report_datetime < window_end, f
            expected = reconcile.Expected(frozenset(delivered), frozenset(
                (join_key(first, c), "indicator_mismatch") for c in PLANT if name == "ylfwnl"))
            report = reconcile.reconcile_table(table, MONTH, expected, front, stage, flushes,
                                               reconcile.open_quarantine(stage, name, MONTH))
            assert report.ok, report
    print(f"setup + detail {detail_at - began:.1f}s, evaluation {time.monotonic() - detail_at:.1f}s")


# --- back-fill since 2022 ------------------------------------------------------------------------------------

TODAY = datetime(2025, 1, 11, 10)       # inside the monthly (1st–15th) and the yearly (1–15 January) windows
HELD = datetime(2024, 12, 31, 23)       # outside every window (daily 18–22, monthly and yearly 1st–15th)
EVAL_TABLES = DEFS.periods        # evaluation table → its period field (the catalog's batch time)


def delivered(front) -> dict[tuple[str, str], tuple[int, int]]:
    """(table, batch) → (ledger rows, front-end rows of that period) of the evaluation tables."""
    out: dict[tuple[str, str], list[int]] = {}
    for row in ledger.rows(front):
        if row.table in EVAL_TABLES:
            out.setdefault((row.table, row.batch), [0, 0])[0] += 1
    with front, front.cursor() as cur:
        for table, field in EVAL_TABLES.items():
            cur.execute(f"SELECT {field}, count(*) FROM {table} GROUP BY 1")
            for start, count in cur.fetchall():
                yearly = CATALOG.tables[table].cadence == "yearly"
                out.setdefault((table, f"{start:%Y}" if yearly else f"{start:%Y-%m}"), [0, 0])[1] = count
    return {k: tuple(v) for k, v in out.items()}


def test_backfill_since_2022_delivers_every_month_and_year_once_and_a_second_run_none(backfill):
    began = time.monotonic()
    backfill.start(HELD)         # until the whole history is staged: then each period goes out in one flush
    months = [p for p in generate.evaluation_periods(TODAY.date()) if len(p) == 7]
    windows = evaluation.sample_windows(SEED, months, 1)        # 3 batch days a month: a few discharges each
    events = [e for w in windows for e in w]
    rows = {**generate.dictionary_rows(SEED), **generate.final_rows(events)}
    backfill.wait_drained(max(backfill.commit(w) for w in windows), "the detail history staged")
    records = evaluation.catalog_records(MAPPING, rows, evaluation.detail_tables(DEFS))
    wait_detail_staged(backfill, records, "the staged history = the mapped HIS rows")
    history = evaluation.history(SEED, TODAY.date(), records, DEFS)
    at = {r["period"]: r["updated_at"] for r in history}
    assert {r["period"] for r in history if r["numerator"] is not None} == set(months)   # every month checked
    backfill.wait_drained(backfill.commit([generate.Event(at[r["period"]], "eval_indicator", "insert", r)
                                           for r in history]), "the evaluation history staged")

    expected: dict[tuple[str, str], int] = {}
    for r in history:
        table = "zypzyx" if len(r["period"]) == 4 else "zdzkzb" if r["specialty_code"] else "ylfwnl"
        expected[(table, r["period"])] = expected.get((table, r["period"]), 0) + 1
    assert len(expected) == 2 * 36 + 3 and months[0] == "2022-01"
    with backfill.stage() as stage:
        assert {(c.table, c.batch) for c in staging.batch_counts(stage) if c.table in EVAL_TABLES} == set(expected)
    ticks = backfill.sink_ticks()
    wait_for("two flush-timer steps outside the windows", lambda: backfill.sink_ticks() >= ticks + 2, timeout=30)
    with backfill.front() as front:
        assert delivered(front) == {}
    backfill.set_clock(TODAY)
    with backfill.front() as front:
        wait_for("every period delivered", lambda: len(delivered(front)) == len(expected) and
                 all(n for _, n in delivered(front).values()), timeout=90, every=0.5)
        assert delivered(front) == {k: (1, n) for k, n in expected.items()}     # once each, ledger = front-end
        for f in ledger.rows(front):
            assert TODAY <= f.report_datetime < TODAY + timedelta(minutes=5), f
    with backfill.stage() as stage:
        assert quarantine.entries(stage, rule="indicator_mismatch") == []      # the derived figures agree
    first_run = time.monotonic() - began

    # a second run: the same back-fill loaded again (nothing changes in the HIS) and a fresh worker that reads
    # every raw change again, into the same staging and front-end, on the clock an hour later
    backfill.commit([generate.Event(at[r["period"]], "eval_indicator", "ensure", r) for r in history])
    backfill.set_clock(TODAY + timedelta(hours=1))
    backfill.new_run()
    backfill.wait_drained(int(time.time() * 1000), "the second run drained")
    ticks = backfill.sink_ticks()
    wait_for("two more flush-timer steps", lambda: backfill.sink_ticks() >= ticks + 2, timeout=30)
    with backfill.front() as front:
        assert delivered(front) == {k: (1, n) for k, n in expected.items()}     # nothing delivered again
    print(f"back-fill: first run {first_run:.1f}s, second {time.monotonic() - began - first_run:.1f}s, "
          f"{len(events)} detail changes, {len(history)} evaluation rows")
