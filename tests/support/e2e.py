"""The demo scenario end to end (deploy/demo.py) as the end-to-end tests of every HIS engine run and check it:
one isolated deployment (`DemoRun`) and the exact checks — expected by the simulator's manifest, through the
source mapping — on the front-end, the quarantine, the identity ciphertexts and the national codes."""
from __future__ import annotations

import importlib.util
import os
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Callable

import psycopg2
from devstack.worker import Worker
from hisbridge import hisdb
from hisbridge.catalog import load_catalog
from hisbridge.chain import crypto
from hisbridge.chain.mapping import load_mapping
from hisbridge.ops import reconcile
from hisbridge.settings import Settings, load_settings
from hisbridge.sim import expectations, generate
from support import ROOT, Resources

SEED, VISITS, BAD_SHARE = 7, 200, 0.05   # seed 7: all three defect kinds at this scale
DAY = date(2026, 2, 10)         # not the 5th: no evaluation indicators, only daily batches
CATALOG = load_catalog()
MAPPING = load_mapping(CATALOG)


def load_demo():
    spec = importlib.util.spec_from_file_location("hisbridge_demo", ROOT / "deploy" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module        # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@dataclass
class DemoRun:
    out: Any                   # demo.Outcome
    key: crypto.Sm4Key
    lines: list[str]
    settings: Settings
    seconds: float
    worker: Worker | None = None        # the run's worker, still running after the demo
    connector: str = ""

    @property
    def worker_log(self) -> Path | None:
        return None if self.worker is None else self.worker.log


def run_demo(res: Resources, tmp: Path, tag: str, env: dict[str, str], evening: bool = False,
             evening_break: Callable[[Settings], None] | None = None,
             on_start: Callable[[Settings, Worker, str], None] | None = None,
             speed: float = 4000.0, say: Callable[[str], None] | None = None) -> DemoRun:
    """demo.run with this run's own databases, connector, topics, group, clock file and throwaway SM4 key
    (`env` adds the engine's settings); everything registered in `res` for removal. `evening_break` gets the
    run's settings at D 20:00 of the evening; `on_start` the settings, worker and connector name before the
    demo starts (the fault suite); `say` sees every progress line as it is said."""
    key_text = os.urandom(16).hex()                     # throwaway test key, never a deployment key
    (tmp / "sm4.key").write_text(key_text + "\n")
    env = {
        # the demo creates its databases itself
        "HISBRIDGE_STAGING_DSN": res.database("frontend", f"staging_{tag}_{res.id}", create=False),
        "HISBRIDGE_FRONTEND_DSN": res.database("frontend", f"frontend_{tag}_{res.id}", create=False),
        "HISBRIDGE_TOPIC_PREFIX": res.topics(f"{tag}{res.id}"), "HISBRIDGE_CORE_PREFIX": res.topics(f"core{tag}{res.id}"),
        "HISBRIDGE_WORKER_APP_ID": res.groups_starting(f"hisbridge-{tag}-{res.id}"), "HISBRIDGE_AGENTS": "transform,sink",
        "HISBRIDGE_SINK_TICK": "1", "HISBRIDGE_WORKER_WEB_PORT": "0", "HISBRIDGE_LOOKUP_WAIT": "60",
        "HISBRIDGE_CLOCK_FILE": str(tmp / "clock.json"), "HISBRIDGE_SM4_KEY_FILE": str(tmp / "sm4.key"), **env}
    res.topics(env["HISBRIDGE_WORKER_APP_ID"])             # the app's own topics (held records, assignor)
    res.topics(f"__debezium-heartbeat.{env['HISBRIDGE_TOPIC_PREFIX']}")
    connector = res.connector(f"his-{tag}-{res.id}")
    res.topics(f"hisbridge.schema-history.{connector}")     # MariaDB/MySQL connectors keep one
    run_settings = load_settings({**os.environ, **env})
    demo = load_demo()
    worker = Worker(run_settings, f"worker-{tag}-{res.id}")
    res.finally_(worker.stop)
    lines: list[str] = []

    def said(line: str) -> None:
        lines.append(line)
        if say is not None:
            say(line)
    if on_start is not None:
        on_start(run_settings, worker, connector)
    cfg = demo.DemoConfig(settings=run_settings, day=DAY, window_start=generate.batch_window(DAY)[0], visits=VISITS,
                          seed=SEED, bad_share=BAD_SHARE, speed=speed, connector=connector,
                          worker_name=worker.name, evening=evening, first_run=True, say=said,
                          evening_break=(lambda: evening_break(run_settings)) if evening_break else None)
    began = time.monotonic()
    try:
        out = demo.run(cfg)
    finally:
        print("\n".join(lines))          # the demo's progress, shown with -s or on failure
    return DemoRun(out, crypto.parse_key(key_text, "test"), lines, run_settings, time.monotonic() - began, worker,
                   connector)


# INFO lines a worker may write per 1,000 raw changes of a demo-sized day. At INFO it writes its start and
# stop (faust.worker, ~6 lines; Faust's per-service narration is WARNING-only, hisbridge.logs.QUIET), its
# restore (~3), one activity line per stage and 15 s, and one line per flushed (table, batch). Measured on
# the e2e day (1,286 changes, ~35 s of work): 21 lines = 16 per 1,000; a full demo day (2,000 visits, ~20,000
# changes, ~2 min) is ~40 lines = 2 per 1,000. A line per record, mark or partition would be >= 1,000 per
# 1,000 (the log: 449 mark lines of 788). 25 leaves room for a rebalance (~3 lines) and a slower
# machine (each further 15 s adds 2 activity lines) without letting per-record logging back in.
MAX_INFO_PER_1000_CHANGES = 25


def log_levels(path: Path) -> dict[str, int]:
    """Lines per level of a worker log in hisbridge.logs' text format (time, level, logger: message)."""
    counts: dict[str, int] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split(maxsplit=3)
        ours = len(parts) >= 3 and parts[1].endswith("+08:00") and parts[2] in (
            "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        level = parts[2] if ours else "other"
        counts[level] = counts.get(level, 0) + 1
    return counts


def changes_of_day() -> int:
    """Raw changes the scenario's day writes into the HIS (each one a CDC event)."""
    return len(generate.day_activity(SEED, DAY, VISITS, BAD_SHARE).events)


def check_worker_log_is_quiet(run: DemoRun) -> None:
    levels = log_levels(run.worker_log)
    per_1000 = 1000 * levels.get("INFO", 0) / changes_of_day()
    print(f"worker log: {levels}, {changes_of_day()} changes, {per_1000:.1f} INFO lines per 1,000 changes")
    assert per_1000 < MAX_INFO_PER_1000_CHANGES, levels
    assert levels.get("ERROR", 0) == 0 and levels.get("CRITICAL", 0) == 0, levels
    text = run.worker_log.read_text(encoding="utf-8", errors="replace")
    assert "watermark mark" not in text and "stackprobe" not in text


def expected(end: datetime | None = None) -> dict:
    """(table, batch) → reconcile.Expected of the scenario's activity from D-1 18:00 to `end` (default D 18:00)."""
    activity = (generate.day_activity(SEED, DAY, VISITS, BAD_SHARE) if end is None else
                generate.activity(SEED, generate.batch_window(DAY)[0], end, VISITS, BAD_SHARE))
    return expectations.sim_expectations(activity, MAPPING, CATALOG, generate.PRIMARY_KEYS)


def check_every_batch_reconciles_exactly(run: DemoRun, want: dict) -> None:
    out = run.out
    assert {(r.table, r.batch) for r in out.reports} == {k for k in want if k[1] <= DAY.isoformat()}
    problems = [line for line in reconcile.format_report(out.reports) if line.startswith("  ")]
    assert out.ok, "\n".join(problems + run.lines[-20:])
    for r in out.reports:
        batch = want[(r.table, r.batch)]
        assert r.delivered == len(batch.delivered) and r.quarantined_keys == len(batch.quarantined)
        assert r.pending == 0 and r.staged == len(batch.delivered)
    # the day exercises the interesting parts: deliveries in several tables and every kind of defect
    assert sum(len(e.delivered) for e in want.values()) > 150
    assert {rule for e in want.values() for _, rule in e.quarantined} == {"unmapped_code", "required", "resident_id"}


def frontend(run: DemoRun):
    return psycopg2.connect(run.settings.connections.frontend_dsn)


def frontend_keys(run: DemoRun, name: str) -> list[str]:
    conn = frontend(run)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f'SELECT {reconcile.key_sql(CATALOG.tables[name])} FROM "{name}"')
            return [k for (k,) in cur.fetchall()]
    finally:
        conn.close()


def check_frontend_holds_exactly_the_expected_rows_once(run: DemoRun, want: dict, up_to: str) -> None:
    for name in CATALOG.tables:
        wanted = set().union(*[e.delivered for (t, b), e in want.items() if t == name and b <= up_to])
        got = frontend_keys(run, name)
        assert len(got) == len(set(got)), name
        assert set(got) == wanted, name


def quarantine_pairs(run: DemoRun) -> set[tuple[str, str, str]]:
    return {(e.table, e.key, rule) for e in run.out.quarantine for rule in e.rules}


def check_quarantine_holds_exactly_the_planted_defects(run: DemoRun, want: dict) -> None:
    assert quarantine_pairs(run) == {(t, k, rule) for (t, _), e in want.items() for k, rule in e.quarantined}


def his_rows(run: DemoRun, sql: str) -> list[tuple]:
    conn = hisdb.connect(hisdb.admin_dsn(run.settings), run.settings.source.kind)
    try:
        with hisdb.transaction(conn) as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


def check_identity_fields_decrypt_to_the_his_values_and_codes_are_national(run: DemoRun) -> None:
    patients = {p: (n, i) for p, n, i in his_rows(run, "SELECT patient_id, name, id_no FROM his.pat_master")}
    stays = dict(his_rows(run, "SELECT inpatient_no, patient_id FROM his.ip_admission"))
    conn = frontend(run)
    checked = 0
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT mzh, xm, sfzh FROM mjzzlxx")
            for patient_id, xm, sfzh in cur.fetchall():
                assert (crypto.decrypt_text(xm, run.key), crypto.decrypt_text(sfzh, run.key)) == patients[patient_id]
                assert xm != patients[patient_id][0]
                checked += 1
            cur.execute("SELECT zylsh, xm, sfzh FROM zyhzryxx")
            for stay, xm, sfzh in cur.fetchall():
                assert (crypto.decrypt_text(xm, run.key), crypto.decrypt_text(sfzh, run.key)) == patients[stays[stay]]
                checked += 1
        assert checked > 100
        for name, table in CATALOG.tables.items():
            coded = [f for f in table.fields if f.valueset and not f.encrypt]
            if not coded:
                continue
            with conn, conn.cursor() as cur:
                cur.execute("SELECT " + ", ".join(f'"{f.name}"' for f in coded) + f' FROM "{name}"')
                for row in cur.fetchall():
                    for f, value in zip(coded, row):
                        if value is not None:
                            assert value in CATALOG.valuesets[f.valueset], (name, f.name, value)
    finally:
        conn.close()
