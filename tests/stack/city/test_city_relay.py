"""A city relay night on the real stack: three simulated hospitals write catalog-shaped uploads (identity
fields SM4 ciphertext, throwaway key) into the city database, Debezium captures them, the worker runs in the
city role (HISBRIDGE_ROLE=city: the identity mapping, the second check, the city relay window) on a steered
clock. One hospital completes its batch at 23:30 (late), one re-uploads another hospital's key. Nothing
goes out before 22:00; at 22:00 exactly the on-time, first-uploaded rows reach the front-end, the others
are quarantined with their reasons; `hisbridge city report` says per hospital what was rejected and why."""
from __future__ import annotations

import datetime as dt
import json
import os

import psycopg2
import pytest
from click.testing import CliRunner
from devstack import postgres
from devstack.worker import Worker
from hisbridge.catalog.loader import load_catalog
from hisbridge.chain.crypto import parse_key
from hisbridge.chain.identity_mapping import mapping_for_role
from hisbridge.chain.quality.cross_hospital import load_hospital_list
from hisbridge.cli import main
from hisbridge.clock import SHANGHAI, write_clock_file
from hisbridge.contract import core_topic, quarantine_topic
from hisbridge.delivery import quarantine, staging
from hisbridge.ops import connectors
from hisbridge.runtime.topics import ensure_topics
from hisbridge.settings import environment_for, load_settings
from hisbridge.sim.city import load_city, plan_uploads
from support import wait_for

D = dt.date(2026, 11, 30)
PER_HOSPITAL = 5


def at(day: dt.date, hh: int, mm: int = 0, ss: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hh, mm, ss), SHANGHAI)


@pytest.fixture(scope="module")
def night(tmp_path_factory, module_resources):
    res, tmp = module_resources, tmp_path_factory.mktemp("city")
    key_text = os.urandom(16).hex()                       # throwaway test key
    city_db = f"city_{res.id}"
    env = {"HISBRIDGE_ROLE": "city", "HISBRIDGE_HIS_DSN": res.database("his", city_db), "HISBRIDGE_HIS_DB": city_db,
           "HISBRIDGE_STAGING_DSN": res.database("frontend", f"citystage_{res.id}"),
           "HISBRIDGE_FRONTEND_DSN": res.database("frontend", f"cityfront_{res.id}"),
           "HISBRIDGE_TOPIC_PREFIX": res.topics(f"city{res.id}"), "HISBRIDGE_CORE_PREFIX": res.topics(f"corecity{res.id}"),
           "HISBRIDGE_WORKER_APP_ID": res.groups_starting(f"hisbridge-city-{res.id}"),
           "HISBRIDGE_CONNECTOR_NAME": res.connector(f"city-{res.id}"), "HISBRIDGE_AGENTS": "transform,sink",
           "HISBRIDGE_SINK_TICK": "1", "HISBRIDGE_WORKER_WEB_PORT": "0", "HISBRIDGE_LOOKUP_WAIT": "60",
           "HISBRIDGE_CLOCK_FILE": str(tmp / "clock.json"), "HISBRIDGE_SM4_KEY": key_text,
           "HISBRIDGE_STATE_DIR": str(tmp / "state")}
    res.topics(env["HISBRIDGE_WORKER_APP_ID"])
    res.topics(f"__debezium-heartbeat.{env['HISBRIDGE_TOPIC_PREFIX']}")
    settings = load_settings({**os.environ, **env})
    catalog = load_catalog(settings.paths.catalog, settings.paths.valuesets)
    hospitals = load_hospital_list(settings.deployment.city_hospitals)
    first, second, late = sorted(hospitals.hospitals)
    postgres.his(settings).prepare_cdc(city_db)
    plan = plan_uploads(catalog, [first, second, late], D, PER_HOSPITAL, parse_key(key_text, "test"), seed=5,
                        late=late, duplicate=(first, second))
    conn = psycopg2.connect(settings.connections.his_dsn)
    try:
        load_city(conn, catalog, plan, D)
    finally:
        conn.close()
    mapping = mapping_for_role(catalog, settings)
    write_clock_file(settings.clock.file, at(D, 21, 59, 0), 0.0)
    connectors.apply(settings, connectors.ConnectorSpec(settings.source.connector, "postgres", mapping.sources,
                                                        heartbeat_ms=2000))
    prefix = settings.worker.core_prefix
    ensure_topics(settings.connections.kafka_bootstrap, [core_topic(prefix, t) for t in catalog.tables]
                  + [quarantine_topic(prefix)], "hisbridge-city-test", replication=1)
    worker = Worker(settings, f"worker-city-{res.id}")
    res.finally_(worker.stop)
    worker.start_background(env=environment_for(settings), restart=True)
    return {"settings": settings, "env": env, "plan": plan, "worker": worker,
            "first": first, "second": second, "late": late}


def _staged(settings) -> tuple[int, dict[str, int]]:
    """Batch D's staged mjzzlxx rows, and its open quarantine entries by rule."""
    conn = psycopg2.connect(settings.connections.staging_dsn)
    try:
        staging.ensure_schema(conn)
        counts = staging.batch_counts(conn, table="mjzzlxx", batch=D.isoformat())
        rules = {rule: n for rule, _tbl, _state, n in quarantine.counts(conn, table="mjzzlxx", batch=D.isoformat())}
    finally:
        conn.close()
    return sum(c.staged for c in counts), rules


def _staged_keys(settings) -> list:
    conn = psycopg2.connect(settings.connections.staging_dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT org, bkey FROM hisbridge.staged ORDER BY 1, 2")
            return cur.fetchall()
    finally:
        conn.close()


def _reasons(settings) -> list:
    conn = psycopg2.connect(settings.connections.staging_dsn)
    try:
        return [(e.key, e.batch, e.state, e.note, e.rules) for e in quarantine.entries(conn, limit=12)]
    finally:
        conn.close()


def _frontend_rows(settings) -> list[tuple[str, str, dt.datetime]]:
    conn = psycopg2.connect(settings.connections.frontend_dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass('mjzzlxx')")
            if cur.fetchone()[0] is None:
                return []
            cur.execute("SELECT yljgdm, jzlsh, report_datetime FROM mjzzlxx ORDER BY 1, 2")
            return cur.fetchall()
    finally:
        conn.close()


def test_a_city_relay_night(night):
    settings, plan = night["settings"], night["plan"]
    first, second, late = night["first"], night["second"], night["late"]
    want = sorted((org, r["jzlsh"]) for org, _, r in plan.rows
                  if org != late and not (org == second and r["jzlsh"] == "H0V00000"))
    assert len(want) == 2 * PER_HOSPITAL

    def everything_staged():
        staged, rules = _staged(settings)
        return staged == len(want) and sum(rules.values()) == PER_HOSPITAL + 1 and rules
    try:
        rules = wait_for("the night's uploads staged or quarantined", everything_staged, timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: staged/quarantined {_staged(settings)}; {_reasons(settings)}; "
                             f"staged keys {_staged_keys(settings)}") from None
    assert rules == {"duplicate_key_across_hospitals": 1, "hospital_batch_late": PER_HOSPITAL}
    assert _frontend_rows(settings) == []                 # 21:59: the relay window is not open yet
    write_clock_file(settings.clock.file, at(D, 22, 0, 1), 0.0)
    rows = wait_for("batch D at the front-end", lambda: (r := _frontend_rows(settings)) and len(r) >= len(want) and r,
                    timeout=60)
    assert sorted((o, k) for o, k, _ in rows) == want
    assert all(at(D, 22).replace(tzinfo=None) <= t < at(D + dt.timedelta(days=1), 3).replace(tzinfo=None)
               for _, _, t in rows)
    result = CliRunner().invoke(main, ["city", "report", "--batch", D.isoformat(), "--json"], env=night["env"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)["hospitals"]
    assert report[first]["rejected"] == 0
    assert report[second]["by_rule"] == {"duplicate_key_across_hospitals": 1}
    assert report[late]["by_rule"] == {"hospital_batch_late": PER_HOSPITAL}
    assert "23:30:00+08:00" in report[late]["late"]


def _pending_and_ticks(settings) -> tuple[int, int, dt.datetime | None]:
    conn = psycopg2.connect(settings.connections.staging_dsn)
    try:
        counts = staging.batch_counts(conn, table="mjzzlxx", batch=D.isoformat())
        with conn, conn.cursor() as cur:
            cur.execute("SELECT ticks, clock FROM hisbridge.sink_ticks WHERE app = %s", (settings.worker.app_id,))
            ticks, clock = cur.fetchone() or (0, None)
    finally:
        conn.close()
    return sum(c.pending for c in counts), ticks, clock


def test_after_03_00_a_correction_waits_for_the_next_window(night):
    settings, first = night["settings"], night["first"]
    before = {(o, k): t for o, k, t in _frontend_rows(settings)}
    write_clock_file(settings.clock.file, at(D + dt.timedelta(days=1), 3, 0, 1), 0.0)
    conn = psycopg2.connect(settings.connections.his_dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE city.mjzzlxx SET zfy = zfy + 1 WHERE yljgdm = %s AND jzlsh = 'H0V00001'", (first,))
            assert cur.rowcount == 1
    finally:
        conn.close()
    _, ticks, _ = wait_for("the correction staged, pending", lambda: (p := _pending_and_ticks(settings))[0] == 1 and p)
    # two more sink ticks on the 03:00:01 clock: the window is closed, nothing goes out
    wait_for("two sink ticks after 03:00", lambda: (p := _pending_and_ticks(settings))[1] >= ticks + 2
             and p[2] is not None and p[2] >= at(D + dt.timedelta(days=1), 3))
    assert _pending_and_ticks(settings)[0] == 1
    assert {(o, k): t for o, k, t in _frontend_rows(settings)} == before
