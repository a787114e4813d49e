"""The tertiary-evaluation family on the real pipeline: simulated HIS (PostgreSQL) → real Debezium → Kafka →
the real worker (transform + sink, its own app id, topics, databases, connector, steered clock) → staging →
front-end.

A simulated month of detail (2024-03, from the last day of February 18:00 to the statistics office's entry on
2024-04-11 10:00) is committed into the HIS; once the pipeline has drained, its staged detail is exactly what
the source mapping makes of the HIS rows. Then the office's evaluation rows — the figures DERIVED from that
detail (hisbridge.sim.evaluation), two of them planted as mismatches — are committed, with the sink's clock
inside the monthly window (by the 15th): exactly the planted rows are held as `indicator_mismatch` with both
values in the reason, the others are in the front-end with the window's report_datetime, and reconcile for
the batch agrees."""
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
DETAIL = ("basy", "basy_ss", "mjzzlxx")          # what the month's indicators read
ENTRY = evaluation.entry_moment(MONTH)           # 2024-04-11 10:00, inside the monthly window (1st–15th)


class Pipeline:
    """One isolated deployment: HIS database with its connector, core topics, staging and front-end
    databases, the worker on a steered clock; all of it registered in `res` for removal."""

    def __init__(self, res, tmp) -> None:
        _, self.his_dsn, prefix = res.cdc_his("his_ind")
        self.stage_dsn = res.database("frontend", f"ind_stage_{res.id}")
        self.front_dsn = res.database("frontend", f"ind_front_{res.id}")
        self.connector = res.connector(f"his-ind-{res.id}")
        (tmp / "sm4.key").write_text(os.urandom(16).hex() + "\n")      # throwaway test key
        env = {"HISBRIDGE_HIS_DSN": self.his_dsn, "HISBRIDGE_TOPIC_PREFIX": prefix,
               "HISBRIDGE_CONNECTOR_NAME": self.connector,
               "HISBRIDGE_CORE_PREFIX": res.topics(f"coreind{res.id}"),
               "HISBRIDGE_WORKER_APP_ID": res.groups_starting(f"hisbridge-ind-{res.id}"),
               "HISBRIDGE_STAGING_DSN": self.stage_dsn, "HISBRIDGE_FRONTEND_DSN": self.front_dsn,
               "HISBRIDGE_AGENTS": "transform,sink", "HISBRIDGE_SINK_TICK": "0.5", "HISBRIDGE_WORKER_WEB_PORT": "0",
               "HISBRIDGE_LOOKUP_WAIT": "30", "HISBRIDGE_CLOCK_FILE": str(tmp / "clock.json"),
               "HISBRIDGE_SM4_KEY_FILE": str(tmp / "sm4.key")}
        res.topics(env["HISBRIDGE_WORKER_APP_ID"])          # the app's own topics (held records, assignor)
        self.settings = load_settings({**os.environ, **env})
        self.worker = Worker(self.settings, f"worker-ind-{res.id}")
        res.finally_(self.worker.stop)

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
        c, core = self.settings.connections, self.settings.worker.core_prefix
        connectors.apply(self.settings, connectors.ConnectorSpec(self.connector, "postgres", MAPPING.sources,
                                                                 heartbeat_ms=1000), timeout=180)
        ensure_topics(c.kafka_bootstrap, [core_topic(core, t) for t in CATALOG.tables] + [quarantine_topic(core)],
                      "hisbridge-ind-setup", replication=c.topic_replication)
        self.set_clock(clock)
        self.worker.start_background(env=environment_for(self.settings))

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
        assert self.worker.is_running(), self.worker.log.read_text(errors="replace")[-4000:]
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


@pytest.fixture(scope="module")
def pipeline(module_resources, tmp_path_factory):
    p = Pipeline(module_resources, tmp_path_factory.mktemp("indicators-e2e"))
    try:
        yield p
    except BaseException:
        print(p.worker.log.read_text(errors="replace")[-4000:] if p.worker.log.exists() else "")
        raise


def staged_keys(conn, table: str) -> set[str]:
    with conn, conn.cursor() as cur:
        cur.execute("SELECT bkey FROM hisbridge.staged WHERE tbl = %s AND NOT revoked AND status <> 'superseded'",
                    (table,))
        return {k for (k,) in cur.fetchall()}


def test_a_month_through_the_pipeline_holds_exactly_the_planted_mismatches(pipeline):
    began = time.monotonic()
    pipeline.start(ENTRY - timedelta(hours=1))        # frozen: the daily windows (18:00–22:00) stay shut
    activity = evaluation.month_activity(SEED, MONTH, VISITS)
    rows = {**generate.dictionary_rows(SEED), **activity.rows()}
    pipeline.wait_drained(pipeline.commit(activity.events), "the month's detail staged")
    detail_at = time.monotonic()

    # the staged detail is exactly what the mapping makes of the HIS rows: the office's figures are derived
    # from the same records the cross-check reads
    want = evaluation.catalog_records(MAPPING, rows, DETAIL)
    with pipeline.stage() as stage:
        for table in DETAIL:
            assert staged_keys(stage, table) == {business_key(CATALOG.table(table), r) for r in want[table]}, table
    assert len([r for r in want["basy"] if str(r["cysj"])[:7] == MONTH]) > 100

    eval_rows, figures = evaluation.month_evaluation(SEED, MONTH, rows, MAPPING, DEFS, PLANT)
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
    window_end = datetime.fromisoformat(source.month_range(MONTH)[1]).replace(day=16)     # by the 15th
    with pipeline.front() as front, pipeline.stage() as stage:
        for name, delivered in keys.items():
            table = CATALOG.table(name)
            flushes = wait_for(f"{name} {MONTH} flushed", lambda: ledger.rows(front, name, MONTH), timeout=60)
            assert set(reconcile.frontend_keys(front, table, MONTH)) == delivered
            for f in flushes:
                assert ENTRY - timedelta(hours=1) <= f.report_datetime <= window_end, f
            expected = reconcile.Expected(frozenset(delivered), frozenset(
                (join_key(first, c), "indicator_mismatch") for c in PLANT if name == "ylfwnl"))
            report = reconcile.reconcile_table(table, MONTH, expected, front, stage, flushes,
                                               reconcile.open_quarantine(stage, name, MONTH))
            assert report.ok, report
    print(f"setup + detail {detail_at - began:.1f}s, evaluation {time.monotonic() - detail_at:.1f}s")
