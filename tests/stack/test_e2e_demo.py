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
from datetime import date

import psycopg2
import pytest
from devstack.worker import Worker
from hisbridge.catalog import load_catalog
from hisbridge.chain import crypto
from hisbridge.chain.mapping import load_mapping
from hisbridge.ops import reconcile
from hisbridge.settings import load_settings
from hisbridge.sim import expectations, generate
from support import ROOT

pytestmark = pytest.mark.stack
SEED, VISITS, BAD_SHARE = 7, 200, 0.05   # seed 7: all three defect kinds at this scale
DAY = date(2026, 2, 10)         # not the 5th: no evaluation indicators, only daily batches


def _load_demo():
    spec = importlib.util.spec_from_file_location("hisbridge_demo", ROOT / "deploy" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module        # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, settings, module_resources):
    res = module_resources
    tmp = tmp_path_factory.mktemp("e2e")
    key_text = os.urandom(16).hex()                     # throwaway test key, never a deployment key
    (tmp / "sm4.key").write_text(key_text + "\n")
    his_db = f"his_e2e_{res.id}"
    env = {
        # the demo creates its databases itself (the HIS one with the CDC preparation)
        "HISBRIDGE_HIS_DSN": res.database("his", his_db, create=False),
        "HISBRIDGE_STAGING_DSN": res.database("frontend", f"staging_e2e_{res.id}", create=False),
        "HISBRIDGE_FRONTEND_DSN": res.database("frontend", f"frontend_e2e_{res.id}", create=False),
        "HISBRIDGE_TOPIC_PREFIX": res.topics(f"e2e{res.id}"), "HISBRIDGE_CORE_PREFIX": res.topics(f"coree2e{res.id}"),
        "HISBRIDGE_WORKER_APP_ID": res.groups_starting(f"hisbridge-e2e-{res.id}"), "HISBRIDGE_AGENTS": "transform,sink",
        "HISBRIDGE_SINK_TICK": "1", "HISBRIDGE_WORKER_WEB_PORT": "0", "HISBRIDGE_LOOKUP_WAIT": "60",
        "HISBRIDGE_CLOCK_FILE": str(tmp / "clock.json"), "HISBRIDGE_SM4_KEY_FILE": str(tmp / "sm4.key"),
    }
    res.topics(env["HISBRIDGE_WORKER_APP_ID"])             # the app's own topics (held records, assignor)
    res.topics(f"__debezium-heartbeat.{env['HISBRIDGE_TOPIC_PREFIX']}")
    run_settings = load_settings({**os.environ, **env})
    demo = _load_demo()
    connector = res.connector(f"his-e2e-{res.id}")
    worker = Worker(run_settings, f"worker-e2e-{res.id}")
    res.finally_(worker.stop)
    lines: list[str] = []
    cfg = demo.DemoConfig(settings=run_settings, day=DAY, window_start=generate.batch_window(DAY)[0], visits=VISITS,
                          seed=SEED, bad_share=BAD_SHARE, speed=4000.0, connector=connector,
                          worker_name=worker.name, evening=False, first_run=True, say=lines.append)
    began = time.monotonic()
    try:
        out = demo.run(cfg)
        yield {"out": out, "key": crypto.parse_key(key_text, "test"), "lines": lines, "settings": run_settings,
               "seconds": time.monotonic() - began}
    finally:
        print("\n".join(lines))          # the demo's progress, shown with -s or on failure


def _frontend(demo_run):
    return psycopg2.connect(demo_run["settings"].connections.frontend_dsn)


def test_every_batch_reconciles_exactly(demo_run):
    out = demo_run["out"]
    catalog = load_catalog()
    mapping = load_mapping(catalog)
    expected = expectations.sim_expectations(generate.day_activity(SEED, DAY, VISITS, BAD_SHARE), mapping, catalog,
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
    expected = expectations.sim_expectations(generate.day_activity(SEED, DAY, VISITS, BAD_SHARE), mapping, catalog,
                                          generate.PRIMARY_KEYS)
    conn = _frontend(demo_run)
    try:
        for name, table in catalog.tables.items():
            want = set().union(*[e.delivered for (t, _), e in expected.items() if t == name])
            key = reconcile.key_sql(table)
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
    expected = expectations.sim_expectations(generate.day_activity(SEED, DAY, VISITS, BAD_SHARE), mapping, catalog,
                                          generate.PRIMARY_KEYS)
    got = {(e.table, e.key, rule) for e in demo_run["out"].quarantine for rule in e.rules}
    want = {(t, k, rule) for (t, _), e in expected.items() for k, rule in e.quarantined}
    assert got == want


def test_identity_fields_decrypt_to_the_his_values_and_codes_are_national(demo_run):
    catalog = load_catalog()
    key = demo_run["key"]
    his = psycopg2.connect(demo_run["settings"].connections.his_dsn)
    with his, his.cursor() as cur:
        cur.execute("SELECT patient_id, name, id_no FROM his.pat_master")
        patients = {p: (n, i) for p, n, i in cur.fetchall()}
        cur.execute("SELECT inpatient_no, patient_id FROM his.ip_admission")
        stays = dict(cur.fetchall())
    his.close()
    conn = _frontend(demo_run)
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
