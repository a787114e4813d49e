"""Reference rows at hospital scale (issue 15, deliverable 4): N patients in the HIS, through the real Debezium
connector (snapshot) into the worker's disk-backed reference store, then a day of visits through the worker.

Run: .venv/bin/python bench/bench_scale.py [--patients 2000000] [--visits 10000] [--day 2026-03-02]
     [--lookups 200000] [--keep]          (a quick try: --patients 20000 --visits 2000)
Needs the local stack (`make up`: pg-his, kafka, connect); everything it makes has its own names — database
`his_scale`, connector `his-scale-<pid>` (topic prefix `hisscale`), app id `hisbridge-scale` (core prefix
`corescale`), worker `worker-scale` (log var/log/worker-scale.log) — and is removed at the end (--keep not).
A 2,000,000-patient run writes ≈ 10 GB of Debezium JSON (schemas on) into Kafka: check `df -h` first.

Phases (wall clock, each printed when done):
  load      N master rows (sim.generate.patient_row of the legacy patient ids, seed 7) COPYed into his.pat_master
  snapshot  connector created → its pat_master topic holds every row (snapshot.mode=initial)
  build     first worker start (fresh store) → ready: the store rebuilt from every reference topic
  visits    a day of visits (sim.generate.day_activity, no planted defects) committed into the HIS → the
            transform group's lag 0 on every raw topic; raw messages/s of the transform over that time
  restart   worker stopped, started again with its store kept → ready
  rebuild   worker stopped, its store folder deleted, started → ready (the rebuild's progress lines shown)
  lookups   the store opened by this process: random patient lookups through TableLookups (what the chain
            reads), lookups/s vs the transform's raw messages/s of the visits phase
"Ready" = the worker's /health shows its held-records state (`held` not null): the transform sets it once
restore() has caught the reference store up to the reference topics' end offsets and subscribed its group.
RSS: the worker's VmRSS sampled every 0.25 s throughout, and its VmHWM (kernel's peak) before each stop.
The worker runs the transform only (HISBRIDGE_AGENTS=transform: the sink keeps no reference rows).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import date
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy"))
sys.path.insert(0, str(ROOT / "bench"))
import bench_worker  # noqa: E402 — /proc readings shared by the benches
import demo  # noqa: E402 — ensure_database (HIS database with the CDC preparation)
from devstack import procs  # noqa: E402
from devstack.worker import Worker  # noqa: E402
from hisbridge.catalog import catalog_for  # noqa: E402
from hisbridge.chain.mapping import load_mapping  # noqa: E402
from hisbridge.contract import heartbeat_topic, held_topic, raw_topics, transform_group  # noqa: E402
from hisbridge.ops import connectors  # noqa: E402
from hisbridge.settings import environment_for, load_settings  # noqa: E402
from hisbridge.sim import generate  # noqa: E402
from hisbridge.sim import load as sim_load  # noqa: E402
from hisbridge.state.lookups import TableLookups, lookup_topics, open_store, store_folder  # noqa: E402

SEED, PREFIX, APP, CORE, DB = 7, "hisscale", "hisbridge-scale", "corescale", "his_scale"
NAME = f"his-scale-{os.getpid()}"       # Connect keeps a connector's source offsets by its name: one per run
WORKER = "worker-scale"
PAT_COLUMNS = list(generate.patient_row(SEED, generate.legacy_patient_id(0)))


def bench_settings():
    base = load_settings()
    own = {"HISBRIDGE_CONNECTOR_NAME": NAME, "HISBRIDGE_TOPIC_PREFIX": PREFIX, "HISBRIDGE_WORKER_APP_ID": APP,
           "HISBRIDGE_CORE_PREFIX": CORE, "HISBRIDGE_HIS_DSN": demo._db_suffixed(base.connections.his_dsn, "scale"),
           "HISBRIDGE_AGENTS": "transform", "HISBRIDGE_SUPERVISE_CONNECTORS": "0",
           "HISBRIDGE_SM4_KEY": os.urandom(16).hex()}           # throwaway key
    return load_settings({**os.environ, **own})


def say(text: str) -> None:
    print(text, flush=True)


class RssSampler(threading.Thread):
    """The worker's VmRSS every 0.25 s (whichever pid it has now), peak per phase."""

    def __init__(self, worker: Worker) -> None:
        super().__init__(daemon=True)
        self.worker, self.phase, self.peaks, self.stopped = worker, "start", {}, False

    def run(self) -> None:
        while not self.stopped:
            rss = bench_worker.status_kb(self.worker.pid(), "VmRSS")
            if rss:
                self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), rss)
            time.sleep(0.25)


def mib(kb: int | None) -> str:
    return "-" if kb is None else f"{kb / 1024:,.0f} MiB"


# --- HIS -------------------------------------------------------------------------------------------------

def load_patients(settings, n: int) -> float:
    """N legacy patients COPYed into his.pat_master in chunks; seconds."""
    started = time.monotonic()
    conn = psycopg2.connect(settings.connections.his_dsn)
    try:
        sim_load.init_schema(conn, SEED)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM his.pat_master")
            have = cur.fetchone()[0]
        chunk = 50_000
        for first in range(have, n, chunk):
            buf = io.StringIO()
            out = csv.writer(buf)
            for k in range(first, min(n, first + chunk)):
                row = generate.patient_row(SEED, generate.legacy_patient_id(k))
                out.writerow(["" if row[c] is None else row[c] for c in PAT_COLUMNS])
            buf.seek(0)
            with conn, conn.cursor() as cur:
                cur.copy_expert(f"COPY his.pat_master ({', '.join(PAT_COLUMNS)}) FROM STDIN WITH (FORMAT csv)", buf)
            if (first // chunk) % 10 == 9:
                say(f"  load: {first + chunk:,} patients, {time.monotonic() - started:.0f} s")
    finally:
        conn.close()
    return time.monotonic() - started


def his_count(settings, table: str) -> int:
    conn = psycopg2.connect(settings.connections.his_dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM his.{table}")
            return cur.fetchone()[0]
    finally:
        conn.close()


# --- Kafka -----------------------------------------------------------------------------------------------

def end_offsets(bootstrap: str, topics: list[str]) -> dict[str, int]:
    from kafka import KafkaConsumer, TopicPartition
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="bench-scale")
    try:
        known = consumer.topics()
        parts = [TopicPartition(t, p) for t in topics if t in known for p in consumer.partitions_for_topic(t) or ()]
        out: dict[str, int] = {}
        for tp, end in consumer.end_offsets(parts).items():
            out[tp.topic] = out.get(tp.topic, 0) + end
        return out
    finally:
        consumer.close()


def wait_for(what: str, done, timeout: float, every: float = 1.0, show=None) -> float:
    started, last = time.monotonic(), 0.0
    while not done():
        elapsed = time.monotonic() - started
        if elapsed > timeout:
            raise RuntimeError(f"{what}: not done after {timeout:.0f} s")
        if show and elapsed - last >= 15:
            say(f"  {what}: {show()} ({elapsed:.0f} s)")
            last = elapsed
        time.sleep(every)
    return time.monotonic() - started


def transform_lag(settings, topics: list[str]) -> int:
    """End offsets − the transform group's committed offsets (a partition with no commit counts whole)."""
    return sum(demo.consumer_lag(settings.connections.kafka_bootstrap, transform_group(APP), topics).values())


# --- the worker ------------------------------------------------------------------------------------------

def ready(worker: Worker) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/health", timeout=2) as resp:
            doc = json.loads(resp.read())
        return doc.get("app") == APP and doc.get("held") is not None
    except (OSError, ValueError):
        return False


def start_until_ready(worker: Worker, settings, rss: RssSampler, phase: str, timeout: float) -> float:
    rss.phase = phase
    started = time.monotonic()
    worker.start_background(env=environment_for(settings))
    wait_for(f"{phase}: worker ready", lambda: ready(worker) or not procs.is_running_pid(worker.pid()) and _died(worker),
             timeout, every=0.2, show=lambda: f"RSS {mib(bench_worker.status_kb(worker.pid(), 'VmRSS'))}")
    return time.monotonic() - started


def _died(worker: Worker) -> bool:
    raise RuntimeError(f"the worker exited; see {worker.log}")


def stop(worker: Worker, hwm: dict[str, int], phase: str) -> None:
    hwm[phase] = bench_worker.status_kb(worker.pid(), "VmHWM") or 0
    worker.stop()


def log_lines(worker: Worker, since: int, needle: str) -> list[str]:
    with open(worker.log, "rb") as fh:
        fh.seek(since)
        return [line for line in fh.read().decode(errors="replace").splitlines() if needle in line]


# --- lookups ---------------------------------------------------------------------------------------------

def lookup_rate(folder: Path, mapping, patients: int, n: int) -> tuple[float, int]:
    """Random patient lookups through TableLookups (what the chain reads); (lookups/s, hits)."""
    store, _ = open_store(folder)
    try:
        patient = TableLookups(store, mapping.lookups)["patient"]
        rng = random.Random(1)
        keys = [generate.legacy_patient_id(rng.randrange(patients)) for _ in range(n)]
        started = time.perf_counter()
        hits = sum(1 for k in keys if patient.get(k) is not None)
        return n / (time.perf_counter() - started), hits
    finally:
        store.close()


# --- clean-up --------------------------------------------------------------------------------------------

def clean(settings, mapping, folder: Path) -> None:
    from kafka.admin import KafkaAdminClient
    connectors.delete(settings, NAME)
    admin_dsn = settings.connections.his_dsn.replace(f"dbname={DB}", "dbname=postgres")
    conn = psycopg2.connect(admin_dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            slot = connectors.slot_name(NAME)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                cur.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,))
                row = cur.fetchone()
                if row is None:
                    break
                if not row[0]:
                    cur.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                    break
                time.sleep(1)
            cur.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
    finally:
        conn.close()
    admin = KafkaAdminClient(bootstrap_servers=settings.connections.kafka_bootstrap, client_id="bench-scale")
    try:
        mine = [t for t in admin.list_topics() if t.startswith((PREFIX + ".", CORE + ".", APP)) or t == held_topic(APP)
                or t == heartbeat_topic(PREFIX)]
        if mine:
            admin.delete_topics(mine, raise_errors=False)
        groups = [g["group_id"] for g in admin.list_groups() if g["group_id"].startswith(APP)]
        if groups:
            admin.delete_groups(groups)
    finally:
        admin.close()
    shutil.rmtree(folder.parent, ignore_errors=True)


# --- the run ---------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=2_000_000)
    parser.add_argument("--visits", type=int, default=10_000, help="visits in the day after the load")
    parser.add_argument("--day", type=date.fromisoformat, default=date(2026, 3, 2))
    parser.add_argument("--lookups", type=int, default=200_000)
    parser.add_argument("--timeout", type=float, default=3600.0, help="per phase, seconds")
    parser.add_argument("--keep", action="store_true", help="leave database, connector, topics, store")
    args = parser.parse_args()
    settings = bench_settings()
    mapping = load_mapping(catalog_for(settings.paths), settings.paths.mapping, settings.org)
    folder = store_folder(settings.worker.state_dir, APP)
    worker = Worker(settings, WORKER)
    raw = raw_topics(PREFIX, mapping.sources)
    refs = lookup_topics(mapping, PREFIX)
    pat_topic = next(t for t in refs if t.endswith(".pat_master"))
    say(f"bench_scale: {args.patients:,} patients, then {args.visits:,} visits on {args.day}; "
        f"store {folder}; uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    figures: dict[str, float] = {}
    hwm: dict[str, int] = {}
    rss = RssSampler(worker)
    rss.start()
    t0 = time.monotonic()
    try:
        demo.ensure_database(settings, settings.connections.his_dsn, his=True)
        figures["load"] = load_patients(settings, args.patients)
        rows = his_count(settings, "pat_master")
        say(f"load: {rows:,} patients in his.pat_master, {figures['load']:.0f} s "
            f"({rows / figures['load']:,.0f} rows/s)")

        started = time.monotonic()
        spec = connectors.ConnectorSpec(NAME, "postgres", mapping.sources, heartbeat_ms=2000)
        say(f"connector {NAME}: {connectors.apply(settings, spec)}")
        wait_for("snapshot", lambda: end_offsets(settings.connections.kafka_bootstrap, [pat_topic]).get(pat_topic, 0)
                 >= rows, args.timeout, show=lambda: f"{end_offsets(settings.connections.kafka_bootstrap, [pat_topic]).get(pat_topic, 0):,} rows")
        figures["snapshot"] = time.monotonic() - started
        ref_messages = sum(end_offsets(settings.connections.kafka_bootstrap, refs).values())
        say(f"snapshot: {rows:,} patient rows on {pat_topic} in {figures['snapshot']:.0f} s "
            f"({rows / figures['snapshot']:,.0f} rows/s); {ref_messages:,} messages on the reference topics")

        since = worker.log_size()
        figures["build"] = start_until_ready(worker, settings, rss, "build", args.timeout)
        say(f"build: fresh store → ready in {figures['build']:.0f} s ({ref_messages / figures['build']:,.0f} "
            f"changes/s), RSS peak {mib(rss.peaks.get('build'))}")
        figures["whole_load"] = time.monotonic() - t0
        for line in log_lines(worker, since, "reference store")[-3:]:
            say(f"    {line.strip()[:220]}")

        rss.phase = "catch-up"
        figures["catch_up"] = wait_for("catch-up", lambda: transform_lag(settings, raw) == 0, args.timeout,
                                       show=lambda: f"lag {transform_lag(settings, raw):,}")
        say(f"catch-up: the transform group read the snapshot (reference rows kept already: skip:same_version) "
            f"in {figures['catch_up']:.0f} s after ready, RSS peak {mib(rss.peaks.get('catch-up'))}")
        rss.phase = "visits"
        activity = generate.day_activity(SEED, args.day, args.visits)
        before = sum(end_offsets(settings.connections.kafka_bootstrap, raw).values())
        conn = psycopg2.connect(settings.connections.his_dsn)
        try:
            started = time.monotonic()
            sim_load.load_backdated(conn, activity.events)
        finally:
            conn.close()
        committed = time.monotonic() - started
        wait_for("visits", lambda: transform_lag(settings, raw) == 0 and
                 sum(end_offsets(settings.connections.kafka_bootstrap, raw).values()) > before,
                 args.timeout, show=lambda: f"lag {transform_lag(settings, raw):,}")
        # the connector may still be writing when the lag first reads 0: settle on a stable end
        while True:
            end = sum(end_offsets(settings.connections.kafka_bootstrap, raw).values())
            time.sleep(3)
            if sum(end_offsets(settings.connections.kafka_bootstrap, raw).values()) == end and \
                    transform_lag(settings, raw) == 0:
                break
        figures["visits"] = time.monotonic() - started - 3
        messages = end - before
        figures["chain_rate"] = messages / figures["visits"]
        say(f"visits: {len(activity.events):,} HIS changes committed in {committed:.0f} s; {messages:,} raw messages "
            f"through the transform in {figures['visits']:.0f} s = {figures['chain_rate']:,.0f} raw msg/s; "
            f"RSS peak {mib(rss.peaks.get('visits'))}")
        stop(worker, hwm, "build+visits")

        since = worker.log_size()
        figures["restart"] = start_until_ready(worker, settings, rss, "restart", args.timeout)
        say(f"restart (store kept): ready in {figures['restart']:.1f} s, RSS peak {mib(rss.peaks.get('restart'))}")
        stop(worker, hwm, "restart")

        shutil.rmtree(folder)
        since = worker.log_size()
        figures["rebuild"] = start_until_ready(worker, settings, rss, "rebuild", args.timeout)
        say(f"rebuild (store folder deleted): ready in {figures['rebuild']:.0f} s, RSS peak "
            f"{mib(rss.peaks.get('rebuild'))}; the worker's log said:")
        for line in log_lines(worker, since, "参照数据存储"):
            say(f"    {line.strip()[:260]}")
        stop(worker, hwm, "rebuild")

        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        rate, hits = lookup_rate(folder, mapping, min(args.patients, rows), args.lookups)
        figures["lookups"] = rate
        say(f"lookups: {rate:,.0f} patient lookups/s ({hits:,} of {args.lookups:,} found), store {size / 2**20:,.0f} "
            f"MiB on disk; vs the transform's {figures['chain_rate']:,.0f} raw msg/s: "
            f"{rate / figures['chain_rate']:.1f}×")
        peak = max(list(rss.peaks.values()) + list(hwm.values()))
        say(f"RSS: sampled peaks {', '.join(f'{k} {mib(v)}' for k, v in rss.peaks.items())}; VmHWM "
            f"{', '.join(f'{k} {mib(v)}' for k, v in hwm.items())}")
        say(f"SUMMARY patients {rows:,} | whole load (COPY + snapshot + store build) {figures['whole_load']:.0f} s | "
            f"worker RSS peak {mib(peak)} (goal ≤ 600 MB: {'OK' if peak * 1024 <= 600e6 else 'MISSED'}) | "
            f"restart-to-ready {figures['restart']:.1f} s (goal ≤ 30 s: {'OK' if figures['restart'] <= 30 else 'MISSED'})"
            f" | lookups/s ÷ chain raw msg/s {rate / figures['chain_rate']:.1f}× (goal ≥ 1: "
            f"{'OK' if rate >= figures['chain_rate'] else 'MISSED'}) | rebuild {figures['rebuild']:.0f} s")
    finally:
        rss.stopped = True
        worker.stop()      # (a no-op when it is not running)
        if not args.keep:
            clean(settings, mapping, folder)


if __name__ == "__main__":
    main()
