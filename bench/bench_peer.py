"""hisbridge side by side with the tool a hospital would pick instead: Debezium's JDBC sink connector (issue 15).

Needs the local stack up with Kafka Connect (`make up`); the JDBC sink plugin comes from deploy/pom.xml
(deploy/jars/debezium-connector-jdbc: 3.6.0.Final's plugin archive, beside the 3.6.1 source connectors).

Run: .venv/bin/python bench/bench_peer.py [--visits 200000] [--rounds 3] [--day 2026-02-27] [--timeout S]
     [--sides peer1,peerN,hb1,hb2]

Input: bench_worker's backlog — the simulated HIS (seed 7, no planted defects), one day of --visits outpatient
visits with their patients, registers, diagnoses and every other source table the demo mapping reads, as
Debezium 3.x PostgreSQL JSON-converter messages (schemas on, keys = primary-key structs), produced once onto
one-partition raw topics before any round. The Debezium source connector's own work is the same for both
sides and is not timed: both start from the same backlog on the broker.

Each round runs every side once, the order alternating from round to round:
  peer1   Debezium JDBC sink, tasks.max=1, insert.mode=upsert, primary.key.mode=record_key,
          schema.evolution=basic, batch.size=2000 with consumer.override.max.poll.records=2000 (the docs
          recommend matching them), into a fresh PostgreSQL database: one table per source topic.
  peerN   the same with tasks.max = the partition count (one per raw topic).
  hb1     hisbridge, one worker process (transform + sink), fresh app id, fresh staging and front-end
          databases; as in the demo the sink's clock is held at D 17:59:59 until both stages reached lag 0,
          then moves to D 18:00:01 (the synthetic commit times lie past D 18:00 + grace, a heartbeat after
          the backlog: batch D is closed by the watermark) and every batch ≤ D is flushed.
  hb2     the same with transform and sink in two processes (HISBRIDGE_AGENTS=transform / sink, one app id).
Times: from the start (connector POST / worker process start, start-up included) to
  peer    every target table holding every distinct key of its topic (count(*) polled);
  hb      transform group committed every raw offset, sink group committed every core offset produced by
          then, and no staged row of a batch ≤ D still pending (flushed into the front-end, ledger written).
  Each hb round also prints its stages in seconds from the start: ready (Faust), assigned (raw partitions, after
  the reference store's rebuild), transform / sink (lag 0 seen), flush-1st / flush-end (the flush timer's log),
  flush (nothing pending seen).
Figures: raw messages/s, rows/s (target rows: peer = rows written, hb = front-end rows), CPU seconds
(Connect JVM from /proc, or the worker process(es)), peak RSS sampled every 0.5 s. Medians over the rounds
and hisbridge ÷ peer ratios are printed at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import date, datetime, time as dtime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_worker  # noqa: E402 — the backlog builder, producer, /proc CPU and the transform's env
from devstack.procs import Procs  # noqa: E402
from hisbridge.catalog import load_catalog  # noqa: E402
from hisbridge.clock import SHANGHAI, write_clock_file  # noqa: E402
from hisbridge.chain.mapping import load_mapping  # noqa: E402
from hisbridge.contract import faust_app_id, heartbeat_topic, raw_topics, transform_group  # noqa: E402
from hisbridge.ops.connectors import ConnectClient  # noqa: E402

SETTINGS = bench_worker.SETTINGS
JDBC_SINK = "io.debezium.connector.jdbc.JdbcSinkConnector"
BATCH = 2000


# --- PostgreSQL (the stack's front-end instance holds every database of a run) ----------------------------

class PG:
    """One autocommit connection to a database of the stack's front-end PostgreSQL instance."""

    def __init__(self, dbname: str = "postgres") -> None:
        import psycopg2
        self.conn = psycopg2.connect(dsn_of(dbname))
        self.conn.autocommit = True

    def one(self, sql: str, params: tuple = ()) -> tuple:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchone() if cur.description else ()

    def close(self) -> None:
        self.conn.close()


def dsn_of(dbname: str) -> str:
    from psycopg2.extensions import make_dsn, parse_dsn
    return make_dsn(**dict(parse_dsn(SETTINGS.connections.frontend_dsn), dbname=dbname))


def create_db(name: str) -> None:
    conn = PG()
    try:
        conn.one(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()


def drop_dbs(names: list[str]) -> None:
    conn = PG()
    try:
        for n in names:
            conn.one(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)')
    finally:
        conn.close()


# --- processes --------------------------------------------------------------------------------------------

def connect_pid() -> int:
    return Procs(SETTINGS.paths.var).pid("connect")


class Meter:
    """CPU seconds and peak RSS of a set of processes between start() and the last sample()."""

    def __init__(self, pids: list[int]) -> None:
        self.pids, self.cpu0 = pids, {p: bench_worker.cpu_seconds(p) for p in pids}
        self.cpu, self.peak = 0.0, 0

    def sample(self) -> None:
        self.cpu = sum(bench_worker.cpu_seconds(p) - self.cpu0[p] for p in self.pids)
        self.peak = max(self.peak, sum(bench_worker.status_kb(p, "VmRSS") or 0 for p in self.pids))


# --- Connect REST -----------------------------------------------------------------------------------------

def rest(method: str, path: str, body: dict | None = None):
    """Connect's answer; an HTTP error status stops the bench (a 404 while a new connector starts is asked
    for by status(), which allows it)."""
    status, answer = ConnectClient(SETTINGS.connections.connect_url).request(method, path, body)
    if status >= 400:
        raise SystemExit(f"Kafka Connect {method} {path}: HTTP {status} {answer}")
    return answer


def connector_status(name: str) -> dict:
    """{} until the worker has read the new connector's config (404)."""
    status, answer = ConnectClient(SETTINGS.connections.connect_url).request("GET", f"/connectors/{name}/status")
    return answer if status == 200 and isinstance(answer, dict) else {}


def peer_config(topics: list[str], db: str, tasks: int) -> dict[str, str]:
    from psycopg2.extensions import parse_dsn
    info = parse_dsn(SETTINGS.connections.frontend_dsn)
    return {
        "connector.class": JDBC_SINK, "tasks.max": str(tasks), "topics": ",".join(topics),
        "connection.url": f"jdbc:postgresql://{info.get('host', '127.0.0.1')}:{info['port']}/{db}",
        "connection.username": info.get("user", "postgres"), "connection.password": info.get("password", ""),
        "insert.mode": "upsert", "primary.key.mode": "record_key", "delete.enabled": "false",
        "schema.evolution": "basic", "batch.size": str(BATCH),
        "consumer.override.max.poll.records": str(BATCH), "consumer.override.auto.offset.reset": "earliest",
    }


def table_of(topic: str) -> str:
    """The JDBC sink's default collection.name.format ${topic}, dots → underscores."""
    return topic.replace(".", "_")


def run_peer(tasks: int, topics: list[str], keys: dict[str, int], run: str, timeout: float) -> dict:
    db = f"peer_{run}"
    create_db(db)
    name = f"bench-peer-{run}"
    meter = Meter([connect_pid()])
    t0 = time.perf_counter()
    rest("POST", "/connectors", {"name": name, "config": peer_config(topics, db, tasks)})
    try:
        conn = PG(db)
        try:
            want = sum(keys.values())
            have, next_poll = 0, 0.0
            while time.perf_counter() - t0 < timeout:
                meter.sample()
                if time.perf_counter() >= next_poll:
                    next_poll = time.perf_counter() + 1.0
                    have = _peer_rows(conn, topics)
                    if have >= want:
                        done = time.perf_counter() - t0
                        meter.sample()
                        return {"seconds": done, "rows": have, "cpu": meter.cpu, "rss": meter.peak}
                    status = connector_status(name)
                    failed = [t for t in status.get("tasks", []) if t.get("state") == "FAILED"]
                    if failed:
                        raise SystemExit(f"peer task failed: {failed[0].get('trace', '')[:2000]}")
                time.sleep(0.5)
            raise SystemExit(f"peer timeout after {timeout:.0f}s: {have:,} of {want:,} rows")
        finally:
            conn.close()
    finally:
        rest("DELETE", f"/connectors/{name}")
        drop_dbs([db])
        bench_worker.delete_run(("\0",), (f"connect-{name}",))


def _peer_rows(conn, topics: list[str]) -> int:
    total = 0
    for t in topics:
        if conn.one("SELECT to_regclass(%s)", (f'public."{table_of(t)}"',))[0] is not None:
            total += conn.one(f'SELECT count(*) FROM public."{table_of(t)}"')[0]
    return total


# --- hisbridge --------------------------------------------------------------------------------------------

def run_hisbridge(processes: int, raw_prefix: str, raw_ends: dict[str, int], catalog, day: date, run: str,
                  timeout: float) -> dict:
    from kafka.admin import KafkaAdminClient
    app_id, core_prefix = f"hisbridge-benchpeer-{run}", f"corebp{run}"
    stage_db, front_db = f"hbstage_{run}", f"hbfront_{run}"
    create_db(stage_db)
    create_db(front_db)
    core_names = [f"{core_prefix}.{t}" for t in sorted(catalog.tables)] + [f"{core_prefix}.quarantine"]
    bench_worker.create_topics(core_names)
    tmp = Path(tempfile.mkdtemp(prefix="bench-peer-"))
    (tmp / "var").mkdir()
    clock_file = tmp / "clock.json"   # held at D 17:59:59 until staged, as the demo does: then the window opens
    eve = datetime.combine(day, dtime(17, 59, 59), SHANGHAI)
    write_clock_file(clock_file, eve, 0.0)
    env = dict(os.environ, HISBRIDGE_WORKER_APP_ID=app_id, HISBRIDGE_WORKER_WEB_PORT="0",
               HISBRIDGE_CORE_PREFIX=core_prefix, HISBRIDGE_MAPPING=str(bench_worker.MAPPING),
               HISBRIDGE_SM4_KEY=os.urandom(16).hex(), HISBRIDGE_LOOKUP_WAIT="3600",
               HISBRIDGE_TOPIC_PREFIX=raw_prefix, HISBRIDGE_RAW_TOPIC=f"{app_id}-probe",
               HISBRIDGE_WORKER_OUT=str(tmp / "probe.jsonl"), HISBRIDGE_VAR=str(tmp / "var"),
               HISBRIDGE_STAGING_DSN=dsn_of(stage_db), HISBRIDGE_FRONTEND_DSN=dsn_of(front_db),
               HISBRIDGE_CLOCK_FILE=str(clock_file),
               HISBRIDGE_SUPERVISE_CONNECTORS="false",
               BROKER_SESSION_TIMEOUT="10", BROKER_HEARTBEAT_INTERVAL="1")
    for k in ("HISBRIDGE_SM4_KEY_FILE", "HISBRIDGE_CLOCK_START"):
        env.pop(k, None)
    agents = ["transform,sink"] if processes == 1 else ["transform", "sink"]
    procs = []
    t0, wall0 = time.perf_counter(), time.time()
    for i, a in enumerate(agents):
        with open(tmp / f"worker-{i}.log", "ab") as out:
            procs.append(subprocess.Popen([sys.executable, "-m", "hisbridge.cli.worker"],
                                          env=dict(env, HISBRIDGE_AGENTS=a), stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True))
    meter = Meter([p.pid for p in procs])
    admin = KafkaAdminClient(bootstrap_servers=SETTINGS.connections.kafka_bootstrap, client_id="bench-peer")
    ends = bench_worker.EndOffsets(core_names)
    stage = None
    try:
        stages: dict[str, float] = {}
        core_ends: dict[str, int] = {}
        next_poll = 0.0
        while time.perf_counter() - t0 < timeout:
            for i, p in enumerate(procs):
                if p.poll() is not None:
                    raise SystemExit(f"worker exited with {p.returncode}:\n"
                                     f"{(tmp / f'worker-{i}.log').read_text()[-4000:]}")
            meter.sample()
            now = time.perf_counter()
            if now >= next_poll:
                next_poll = now + 0.5
                if "transform" not in stages:
                    done = bench_worker.committed(admin, transform_group(app_id))
                    if all(done.get(t, -1) >= n for t, n in raw_ends.items()):
                        stages["transform"] = now - t0
                        core_ends = {t: n for t, n in ends.read().items() if n}
                elif "sink" not in stages:
                    done = bench_worker.committed(admin, app_id)
                    if all(done.get(t, -1) >= n for t, n in core_ends.items()):
                        stages["sink"] = now - t0
                        write_clock_file(clock_file, eve + timedelta(seconds=2), 1.0)
                        stage = PG(stage_db)
                else:
                    # a flush carries the staged versions up to its cut (hisbridge.flushed); done = every batch
                    # ≤ D flushed past its newest staged version
                    left, rows = stage.one(
                        "SELECT count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM hisbridge.flushed f WHERE f.tbl = s.tbl "
                        "AND f.batch = s.batch AND f.cut >= s.top)), coalesce(sum(n), 0) FROM (SELECT tbl, batch, "
                        "max(seq) AS top, count(*) AS n FROM hisbridge.staged WHERE batch <= %s GROUP BY 1, 2) s",
                        (day.isoformat(),))
                    if left == 0 and rows > 0:
                        stages["flush"] = now - t0
                        meter.sample()
                        stages.update(log_stages([tmp / f"worker-{i}.log" for i in range(len(procs))], wall0))
                        return {"seconds": stages["flush"], "rows": int(rows), "cpu": meter.cpu,
                                "rss": meter.peak, "stages": stages}
            time.sleep(0.1)
        left = stage.one("SELECT json_agg(x) FROM (SELECT tbl, batch, status, count(*) FROM hisbridge.staged "
                         "GROUP BY 1, 2, 3 HAVING status = 'pending') x") if stage else None
        raise SystemExit(f"hisbridge timeout after {timeout:.0f}s: stages {stages}; pending {left}; log tail:\n"
                         f"{(tmp / 'worker-0.log').read_text()[-3000:]}")
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, 9)
                p.wait(timeout=10)
        if stage is not None:
            stage.close()
        ends.close()
        admin.close()
        drop_dbs([stage_db, front_db])
        bench_worker.delete_run((core_prefix + ".", app_id),
                                (app_id, faust_app_id(app_id, ["transform"]), transform_group(app_id)))


# --- main -------------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--day", default="2026-02-27", help="day D (its window: D 18:00–22:00; must lie before "
                    "the synthetic commit times, 2026-03-01)")
    ap.add_argument("--visits", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sides", default="peer1,peerN,hb1,hb2")
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args()
    sides = args.sides.split(",")
    day = date.fromisoformat(args.day)

    catalog = load_catalog()
    mapping = load_mapping(catalog, bench_worker.MAPPING)
    run = uuid.uuid4().hex[:8]
    raw_prefix = f"benchp{run}"
    t0 = time.perf_counter()
    messages = bench_worker.build_messages(day, 1, args.visits, set(mapping.by_source) | set(mapping.lookup_sources))
    by_table = Counter(t for t, _, _ in messages)
    keys = {f"{raw_prefix}.his.{t}": len({k for tt, k, _ in messages if tt == t}) for t in by_table}
    size = sum(len(k) + len(v) for _, k, v in messages)
    print(f"input: {len(messages):,} raw messages ({size / 2**20:,.0f} MiB) on {len(by_table)} topics, "
          f"{args.visits:,} visits on {day} [built in {time.perf_counter() - t0:.0f} s]", flush=True)
    topics = raw_topics(raw_prefix, [f"his.{t}" for t in by_table])
    bench_worker.create_topics(topics + [heartbeat_topic(raw_prefix)])
    print(f"produce: {len(messages) / bench_worker.produce(messages, raw_prefix):,.0f} messages/s", flush=True)
    produce_heartbeat(raw_prefix, len(messages))
    raw_ends = dict(Counter(f"{raw_prefix}.his.{t}" for t, _, _ in messages))
    n = len(messages)
    del messages
    results: dict[str, list[dict]] = {s: [] for s in sides}
    try:
        for r in range(args.rounds):
            order = sides if r % 2 == 0 else sides[::-1]
            for side in order:
                tag = f"{run}r{r}{side.lower()}"
                if side.startswith("peer"):
                    out = run_peer(1 if side == "peer1" else len(topics), topics, keys, tag, args.timeout)
                else:
                    out = run_hisbridge(1 if side == "hb1" else 2, raw_prefix, raw_ends, catalog, day, tag,
                                        args.timeout)
                results[side].append(out)
                print(f"round {r + 1} {side:<6} {out['seconds']:7.1f} s  {n / out['seconds']:8,.0f} raw msg/s  "
                      f"{out['rows'] / out['seconds']:8,.0f} rows/s ({out['rows']:,} rows)  CPU {out['cpu']:6.1f} s  "
                      f"peak RSS {out['rss'] / 1024:6,.0f} MiB" + (f"  stages {_stages(out)}" if 'stages' in out else "")
                      + f"  load {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        bench_worker.delete_run((raw_prefix + ".", heartbeat_topic(raw_prefix)), ())
    print(f"\nmedians over {args.rounds} round(s), {n:,} raw messages; load {os.getloadavg()}")
    med = {s: {k: statistics.median(o[k] for o in v) for k in ("seconds", "rows", "cpu", "rss")}
           for s, v in results.items() if v}
    for s, m in med.items():
        print(f"  {s:<6} {m['seconds']:7.1f} s  {n / m['seconds']:8,.0f} raw msg/s  {m['rows'] / m['seconds']:8,.0f} "
              f"rows/s  CPU {m['cpu']:6.1f} s  peak RSS {m['rss'] / 1024:6,.0f} MiB")
    for hb in (s for s in med if s.startswith("hb")):
        for peer in (s for s in med if s.startswith("peer")):
            ratios = [p["seconds"] / h["seconds"] for h, p in zip(results[hb], results[peer])]
            print(f"  {hb} ÷ {peer}: raw messages/s ratio median {statistics.median(ratios):.2f}× "
                  f"(rounds {', '.join(f'{x:.2f}' for x in ratios)})")


def produce_heartbeat(prefix: str, n: int) -> None:
    """One Debezium heartbeat past the backlog's last commit time (bench_chain.envelope: 1772330400000 + seq), as
    the connector sends one every heartbeat.interval.ms: the watermark's word that nothing older can still come
    on an empty topic (the worker subscribes to every source of the mapping, eval_indicator has no rows)."""
    from kafka import KafkaProducer
    key = {"schema": {"type": "struct", "optional": False, "name": "io.debezium.connector.common.ServerNameKey",
                      "version": 1, "fields": [{"type": "string", "optional": False, "field": "serverName"}]},
           "payload": {"serverName": prefix}}
    value = {"schema": {"type": "struct", "optional": False, "name": "io.debezium.connector.common.Heartbeat",
                        "version": 1, "fields": [{"type": "int64", "optional": False, "field": "ts_ms"}]},
             "payload": {"ts_ms": 1772330400000 + n + 1000}}
    producer = KafkaProducer(bootstrap_servers=SETTINGS.connections.kafka_bootstrap, acks="all")
    producer.send(heartbeat_topic(prefix), key=json.dumps(key).encode(), value=json.dumps(value).encode())
    producer.flush()
    producer.close()


# where a worker's wall time went, from its log: (stage, first or last line matching)
LOG_STAGES = (("ready", "[^Worker]: Ready", min), ("assigned", "raw partitions, holding", min),
              ("flush-1st", "hisbridge.delivery.timer: flushed ", min), ("flush-end", "hisbridge.delivery.timer: flushed ", max))


def log_stages(logs: list[Path], wall0: float) -> dict[str, float]:
    """Seconds from the workers' start to their log's milestones (Faust ready, raw partitions assigned after
    the reference store's rebuild, first and last flushed batch); the bench's own stages say when lag 0 was
    seen (0.5 s polls)."""
    found: dict[str, float] = {}
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            for name, needle, pick in LOG_STAGES:
                if needle in line:
                    try:
                        at = datetime.fromisoformat(line[:29]).timestamp() - wall0
                    except ValueError:
                        continue
                    found[name] = pick(found.get(name, at), at)
    return found


def _stages(out: dict) -> str:
    return " ".join(f"{k} {v:.1f}" for k, v in sorted(out["stages"].items(), key=lambda kv: kv[1]))


if __name__ == "__main__":
    main()
