"""The demo scenario end to end at small scale, reconciled EXACTLY (issue 6).

Real everything: the simulated HIS in PostgreSQL, real Debezium on Kafka Connect, the real Faust worker
(transform + sink agents, a background process), the real staging and front-end databases. deploy/demo.py
runs one simulated day D (200 visits, bad share 0.05, fixed seed) live on an accelerated clock, holds the sink's
clock before 18:00 until the pipeline has drained, opens the window and waits for the flush.

Isolated from everything else on the shared stack, so it can run beside other tests and be re-run: its own
HIS database, connector (slot, publication), topic prefixes, consumer group, staging and front-end databases,
clock file and throwaway SM4 key — all created for the run and removed afterwards.

Asserted: every valid HIS record the manifest predicts is in the front-end exactly once, its identity fields
decrypting (with the test key) to the HIS values and its coded fields inside the national value sets; every
record a planted defect reaches is in quarantine with the defect's rule; nothing else is in the front-end or
in quarantine; ledger and front-end agree.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import time
import uuid
from datetime import date
from pathlib import Path

import psycopg2
import pytest

from hisbridge import config, connectors, crypto, reconcile
from hisbridge.catalog import load_catalog
from hisbridge.mapping import load_mapping
from hisbridge.sim import generate

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[2]
SEED, VISITS, BAD_SHARE = 7, 200, 0.05   # seed 7: all three defect kinds at this scale
DAY = date(2026, 2, 10)         # not the 5th: no evaluation indicators, only daily batches


def _load_demo():
    spec = importlib.util.spec_from_file_location("hisbridge_demo", ROOT / "deploy" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module        # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def _drop_everything(run_id: str, env: dict[str, str], connector: str) -> None:
    """Best effort: connector, replication slot, databases, topics of this run."""
    try:
        connectors.delete(connector)
    except Exception:  # noqa: BLE001 — teardown must go on
        pass
    slot = connectors.slot_name(connector)
    for _ in range(20):
        try:
            conn = psycopg2.connect(f"host=127.0.0.1 port={config.his_pg_port()} dbname=postgres user=postgres")
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                            "WHERE slot_name = %s AND NOT active", (slot,))
                cur.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (slot,))
                left = cur.fetchone()[0]
                if not left:
                    cur.execute(f'DROP DATABASE IF EXISTS "{env["his_db"]}" WITH (FORCE)')
            conn.close()
            if not left:
                break
        except psycopg2.Error:
            pass
        time.sleep(1)
    conn = psycopg2.connect(f"host=127.0.0.1 port={config.frontend_pg_port()} dbname=postgres user=postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        for db in (env["staging_db"], env["frontend_db"]):
            cur.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    conn.close()
    from kafka.admin import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=config.kafka_bootstrap(), client_id="e2e-cleanup")
    try:
        mine = [t for t in admin.list_topics()
                if t.startswith((f"e2e{run_id}.", f"coree2e{run_id}.", f"hisbridge-e2e-{run_id}", f"__debezium-heartbeat.e2e{run_id}"))]
        if mine:
            admin.delete_topics(mine)
    except Exception:  # noqa: BLE001
        pass
    finally:
        admin.close()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    run_id = uuid.uuid4().hex[:6]
    tmp = tmp_path_factory.mktemp("e2e")
    key_text = os.urandom(16).hex()                     # throwaway test key, never a deployment key
    (tmp / "sm4.key").write_text(key_text + "\n")
    names = {"his_db": f"his_e2e_{run_id}", "staging_db": f"staging_e2e_{run_id}",
             "frontend_db": f"frontend_e2e_{run_id}"}
    env = {
        "HISBRIDGE_HIS_DSN": f"host=127.0.0.1 port={config.his_pg_port()} dbname={names['his_db']} user=postgres",
        "HISBRIDGE_HIS_DB": names["his_db"],
        "HISBRIDGE_STAGING_DSN": f"host=127.0.0.1 port={config.frontend_pg_port()} dbname={names['staging_db']} user=postgres",
        "HISBRIDGE_FRONTEND_DSN": f"host=127.0.0.1 port={config.frontend_pg_port()} dbname={names['frontend_db']} user=postgres",
        "HISBRIDGE_TOPIC_PREFIX": f"e2e{run_id}", "HISBRIDGE_CORE_PREFIX": f"coree2e{run_id}",
        "HISBRIDGE_WORKER_APP_ID": f"hisbridge-e2e-{run_id}", "HISBRIDGE_AGENTS": "transform,sink",
        "HISBRIDGE_SINK_TICK": "1", "HISBRIDGE_WORKER_WEB_PORT": "0", "HISBRIDGE_LOOKUP_WAIT": "60",
        "HISBRIDGE_CLOCK_FILE": str(tmp / "clock.json"), "HISBRIDGE_SM4_KEY_FILE": str(tmp / "sm4.key"),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    demo = _load_demo()
    connector = f"his-e2e-{run_id}"
    worker = f"worker-e2e-{run_id}"
    lines: list[str] = []
    cfg = demo.DemoConfig(day=DAY, window_start=generate.batch_window(DAY)[0], visits=VISITS, seed=SEED,
                          bad_share=BAD_SHARE, speed=4000.0, connector=connector, worker_name=worker,
                          evening=False, first_run=True, say=lines.append)
    began = time.monotonic()
    try:
        out = demo.run(cfg)
        yield {"out": out, "key": crypto.parse_key(key_text, "test"), "lines": lines,
               "seconds": time.monotonic() - began}
    finally:
        print("\n".join(lines))          # the demo's progress, shown with -s or on failure
        demo.stop_worker(worker)
        _drop_everything(run_id, names, connector)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _frontend():
    return psycopg2.connect(os.environ["HISBRIDGE_FRONTEND_DSN"])


def test_every_batch_reconciles_exactly(demo_run):
    out = demo_run["out"]
    catalog = load_catalog()
    mapping = load_mapping(catalog)
    expected = reconcile.sim_expectations(generate.day_activity(SEED, DAY, VISITS, BAD_SHARE), mapping, catalog,
                                          generate.PRIMARY_KEYS)
    assert {(r.table, r.batch) for r in out.reports} == set(expected)
    problems = [line for line in reconcile.format_report(out.reports) if line.startswith("  ")]
    assert out.ok, "\n".join(problems + demo_run["lines"][-20:])
    for r in out.reports:
        want = expected[(r.table, r.batch)]
        assert r.delivered == len(want.delivered) and r.quarantined_keys == len(want.quarantined)
        assert r.pending == 0 and r.staged == len(want.delivered)
    # the day exercises the interesting parts: deliveries in several tables and every kind of defect
    assert sum(len(e.delivered) for e in expected.values()) > 150
    assert {rule for e in expected.values() for _, rule in e.quarantined} == {"unmapped_code", "required", "resident_id"}


def test_frontend_holds_exactly_the_expected_rows_once(demo_run):
    catalog = load_catalog()
    mapping = load_mapping(catalog)
    expected = reconcile.sim_expectations(generate.day_activity(SEED, DAY, VISITS, BAD_SHARE), mapping, catalog,
                                          generate.PRIMARY_KEYS)
    conn = _frontend()
    try:
        for name, table in catalog.tables.items():
            want = set().union(*[e.delivered for (t, _), e in expected.items() if t == name])
            key = " || '|' || ".join(reconcile._key_exprs(table))     # noqa: SLF001 — same key text as reconcile
            with conn, conn.cursor() as cur:
                cur.execute(f'SELECT {key} FROM "{name}"')
                got = [k for (k,) in cur.fetchall()]
            assert len(got) == len(set(got)), name
            assert set(got) == want, name
    finally:
        conn.close()


def test_quarantine_holds_exactly_the_planted_defects(demo_run):
    catalog = load_catalog()
    mapping = load_mapping(catalog)
    expected = reconcile.sim_expectations(generate.day_activity(SEED, DAY, VISITS, BAD_SHARE), mapping, catalog,
                                          generate.PRIMARY_KEYS)
    got = {(e.table, e.key, rule) for e in demo_run["out"].quarantine for rule in e.rules}
    want = {(t, k, rule) for (t, _), e in expected.items() for k, rule in e.quarantined}
    assert got == want


def test_identity_fields_decrypt_to_the_his_values_and_codes_are_national(demo_run):
    catalog = load_catalog()
    key = demo_run["key"]
    his = psycopg2.connect(os.environ["HISBRIDGE_HIS_DSN"])
    with his, his.cursor() as cur:
        cur.execute("SELECT patient_id, name, id_no FROM his.pat_master")
        patients = {p: (n, i) for p, n, i in cur.fetchall()}
        cur.execute("SELECT inpatient_no, patient_id FROM his.ip_admission")
        stays = dict(cur.fetchall())
    his.close()
    conn = _frontend()
    checked = 0
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT mzh, xm, sfzh FROM mjzzlxx")
            for patient_id, xm, sfzh in cur.fetchall():
                assert (crypto.decrypt_text(xm, key), crypto.decrypt_text(sfzh, key)) == patients[patient_id]
                assert xm != patients[patient_id][0]
                checked += 1
            cur.execute("SELECT zylsh, xm, sfzh FROM zyhzryxx")
            for stay, xm, sfzh in cur.fetchall():
                assert (crypto.decrypt_text(xm, key), crypto.decrypt_text(sfzh, key)) == patients[stays[stay]]
                checked += 1
        assert checked > 100
        for name, table in catalog.tables.items():
            coded = [f for f in table.fields if f.valueset and not f.encrypt]
            if not coded:
                continue
            with conn, conn.cursor() as cur:
                cur.execute("SELECT " + ", ".join(f'"{f.name}"' for f in coded) + f' FROM "{name}"')
                for row in cur.fetchall():
                    for f, value in zip(coded, row):
                        if value is not None:
                            assert value in catalog.valuesets[f.valueset], (name, f.name, value)
    finally:
        conn.close()
