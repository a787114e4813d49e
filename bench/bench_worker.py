"""The real transform worker on the real broker: raw Debezium topics → `core.<table>` + `core.quarantine`, raw
messages/s, core records/s and records per worker CPU-second (issue 4; target ≥ 5,000 records/s, 2 cores).

Needs a running Kafka: `hisbridge stack up kafka` (or `make up`); the script reaches it through
the settings' connections.kafka_bootstrap, i.e. whatever HISBRIDGE_KAFKA_PORT / HISBRIDGE_KAFKA_BOOTSTRAP point at.

Run: .venv/bin/python bench/bench_worker.py [--day 2026-03-02] [--days 1] [--visits 2000] [--take 500]
     [--within 1.0] [--profile FILE.prof | --py-spy FILE] [--timeout S] [--keep]

Input: the simulated HIS (seed 7, no planted defects) for --days days from --day, every source table the demo
mapping reads (dictionaries, patient master, registers, visits, diagnoses, admissions, 病案首页…), as Debezium
3.x PostgreSQL JSON-converter messages built with bench_chain's envelope (keys as Debezium writes them: the
primary key struct). Reference-only tables come first (dictionaries, patients, registers), then the rest in
the simulator's table order; LSNs increase in that order. One partition per raw topic, as the connector
template creates them.

What runs: every message is produced to this run's own raw topics (topic prefix `benchw<run>`) BEFORE the
worker starts; then `python -m hisbridge.cli.worker` with HISBRIDGE_AGENTS=transform, its own app id (consumer
group), its own core prefix, a throwaway SM4 key, the web server off, HISBRIDGE_VAR in a temp dir,
HISBRIDGE_LOOKUP_WAIT=3600 (nothing is quarantined for a missing row during the run) and
HISBRIDGE_MARK_EVERY=1e9 (at most one watermark mark per core partition, so end offsets stay countable).

Expected outputs: the same raw messages run in-process, in order, through runtime.batch_plan.plan_batch (the
function the worker calls) with dicts for its stores. The worker is done when its consumer group
(`<app id>.transform`) has committed every raw offset: it commits a batch only after the batch's outputs are
acknowledged. The core topics are then read back: every business key of the in-order run must be there
(printed as MISSING otherwise); the number of versions per key may differ (a record is re-derived when a
reference row arrives after its driver), so versions are reported, not required.

Times (wall clock):
  start-up  worker process start → Faust's "[^Worker]: Ready" log line (it consumes right after)
  run       "Ready" → the last output on the broker: raw messages/s = all raw messages / run,
            core records/s = all outputs (core records + quarantine entries) / run
  steady    first output seen → last output, counting only the outputs produced in between (excludes the
            first batch and the wait for Ready, a lower-noise figure for long runs)
CPU: utime + stime of the worker process from /proc, during "run" and in total (start-up included).

--profile FILE runs the worker under cProfile (`python -m cProfile -o FILE -m hisbridge.cli.worker`), stops
it with SIGINT when done so the profile is written, and prints where the time went (cProfile slows the
Python-heavy parts several-fold: compare shares, not the absolute rates of such a run).
The run's topics (raw, core, quarantine, the worker's own) and consumer groups are deleted at the end (--keep
not).
"""
from __future__ import annotations

import argparse
import os
import pstats
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Iterable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_chain  # noqa: E402 — the Debezium message builders (envelope, connect_field, his_columns)
from hisbridge.catalog import load_catalog  # noqa: E402
from hisbridge.chain import crypto  # noqa: E402
from hisbridge.chain.chain import CoreRecord, transform  # noqa: E402
from hisbridge.chain.mapping import load_mapping  # noqa: E402
from hisbridge.contract import heartbeat_topic, raw_topics, transform_group  # noqa: E402
from hisbridge.runtime.batch_plan import plan_batch  # noqa: E402
from hisbridge.runtime.ordering import RawEvent  # noqa: E402
from hisbridge.state.held import HeldRecords  # noqa: E402
from hisbridge.state.lookups import ReferenceStore, TableLookups  # noqa: E402
from hisbridge.settings import load_settings  # noqa: E402
from hisbridge.sim import generate  # noqa: E402
from hisbridge.sim.load import schema_sql  # noqa: E402

SETTINGS = load_settings()

ROOT = Path(__file__).resolve().parents[1]
MAPPING = ROOT / "schemas" / "mapping" / "demo_hospital.yaml"
REFERENCE_FIRST = ("dept_dict", "staff_dict", "pat_master", "op_register")
CLK_TCK = os.sysconf("SC_CLK_TCK")
Message = tuple[str, bytes, bytes]     # (HIS table, key, value)


# --- input ------------------------------------------------------------------------------------------------

def primary_keys() -> dict[str, list[str]]:
    """Primary-key columns per HIS table, from the simulated HIS's DDL (inline or table constraint)."""
    keys: dict[str, list[str]] = {}
    current = None
    for line in schema_sql().splitlines():
        if head := re.match(r"CREATE TABLE IF NOT EXISTS his\.(\w+)", line):
            current = head.group(1)
        elif current and (m := re.match(r"\s+PRIMARY KEY \(([^)]*)\)", line)):
            keys[current] = [c.strip() for c in m.group(1).split(",")]
        elif current and (m := re.match(r"\s+(\w+)\s.*PRIMARY KEY", line)):
            keys[current] = [m.group(1)]
    return keys


def key_message(table: str, fields: list[dict[str, Any]], pk: list[str], row: dict[str, Any]) -> bytes:
    """The Debezium key (JSON converter, schemas.enable=true): a struct of the primary-key columns."""
    import json
    key_fields = [dict(f, optional=False) for f in fields if f["field"] in pk]
    schema = {"type": "struct", "optional": False, "name": f"his.his.{table}.Key", "fields": key_fields}
    payload = {f["field"]: bench_chain.wire_value(f, row.get(f["field"])) for f in key_fields}
    return json.dumps({"schema": schema, "payload": payload}, ensure_ascii=False, separators=(",", ":")).encode()


def build_messages(first_day: date, days: int, visits: int, sources: Iterable[str]) -> list[Message]:
    """Every row of the simulated days for the mapping's source tables, reference-only tables first."""
    wanted = {s.split(".", 1)[1] for s in sources}
    by_table: dict[str, list[dict[str, Any]]] = {t: list(r) for t, r in
                                                 generate.dictionary_rows(bench_chain.SEED).items()}
    for n in range(days):
        for table, rows in generate.day_activity(bench_chain.SEED, first_day + timedelta(days=n), visits,
                                                 0.0).rows().items():
            by_table.setdefault(table, []).extend(rows)
    order = [t for t in REFERENCE_FIRST if t in by_table] + [t for t in by_table if t not in REFERENCE_FIRST]
    columns, pks = bench_chain.his_columns(), primary_keys()
    messages: list[Message] = []
    for table in order:
        if table not in wanted:
            continue
        fields = [bench_chain.connect_field(c, t) for c, t in columns[table]]
        for row in by_table[table]:
            seq = len(messages)   # one increasing LSN / commit time over the whole stream
            messages.append((table, key_message(table, fields, pks[table], row),
                             bench_chain.envelope(table, fields, row, seq)))
    return messages


def expected_outputs(messages: list[Message], prefix: str, catalog, mapping, key,
                     take: int) -> tuple[Counter, dict[str, set[str]], int]:
    """Outputs per catalog table ("quarantine" for quarantine entries) as the worker computes them
    (plan_batch over the same messages, in order, in batches of `take`), the distinct business keys per
    table, and how many records stay held."""
    store = ReferenceStore()
    pending = HeldRecords({})
    lookups = TableLookups(store, mapping.lookups)

    def run(message, give_up: bool) -> list[Any]:
        return transform(message, catalog=catalog, mapping=mapping, lookups=lookups, key=key, give_up=give_up,
                         defer=True)

    counts: Counter = Counter()
    keys: dict[str, set[str]] = {}
    offsets: Counter = Counter()
    for start in range(0, len(messages), take):
        batch = []
        for table, k, v in messages[start:start + take]:
            topic = f"{prefix}.his.{table}"
            batch.append(RawEvent(topic, 0, offsets[topic], k, v))
            offsets[topic] += 1
        plan = plan_batch(batch, mapping=mapping, lookups=store, pending=pending, run=run, now_ms=0)
        counts.update(o.table if isinstance(o, CoreRecord) else "quarantine" for o in plan.outputs)
        for o in plan.outputs:
            keys.setdefault(o.table if isinstance(o, CoreRecord) else "quarantine", set()).add(o.key)
        pending.release(plan.release)
    return counts, keys, len(pending)


# --- Kafka ------------------------------------------------------------------------------------------------

def create_topics(names: Iterable[str]) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic
    admin = KafkaAdminClient(bootstrap_servers=SETTINGS.connections.kafka_bootstrap, client_id="bench-worker")
    try:
        admin.create_topics([NewTopic(n, 1, 1) for n in names])
    finally:
        admin.close()


def produce(messages: list[Message], prefix: str) -> float:
    """Every message onto its raw topic (acks=all, as Connect's producer); returns the seconds it took."""
    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=SETTINGS.connections.kafka_bootstrap, acks="all", linger_ms=50,
                             batch_size=1 << 20, max_request_size=8 << 20)
    t0 = time.perf_counter()
    for table, k, v in messages:
        producer.send(f"{prefix}.his.{table}", key=k, value=v)
    producer.flush()
    producer.close()
    return time.perf_counter() - t0


class EndOffsets:
    """End offsets of partition 0 of the given topics (all are created with one partition)."""

    def __init__(self, topics: list[str]) -> None:
        from kafka import KafkaConsumer, TopicPartition
        self.consumer = KafkaConsumer(bootstrap_servers=SETTINGS.connections.kafka_bootstrap, group_id=None,
                                      enable_auto_commit=False)
        self.parts = {t: TopicPartition(t, 0) for t in topics}

    def read(self) -> dict[str, int]:
        ends = self.consumer.end_offsets(list(self.parts.values()))
        return {t: ends[tp] for t, tp in self.parts.items()}

    def count_records(self) -> tuple[Counter, dict[str, set[str]]]:
        """Non-mark records per topic, and their distinct keys, read back from the beginning."""
        self.consumer.assign(list(self.parts.values()))
        self.consumer.seek_to_beginning()
        ends, counts, keys = self.read(), Counter(), {}
        while any(self.consumer.position(tp) < ends[t] for t, tp in self.parts.items()):
            for tp, batch in self.consumer.poll(timeout_ms=1000).items():
                records = [m for m in batch if (b"hisbridge.kind", b"watermark") not in
                           [(k.encode() if isinstance(k, str) else k, v) for k, v in m.headers]]
                counts[tp.topic] += len(records)
                keys.setdefault(tp.topic, set()).update(m.key.decode() if m.key else None for m in records)
        return counts, keys

    def close(self) -> None:
        self.consumer.close()


def delete_run(prefixes: tuple[str, ...], groups: tuple[str, ...]) -> list[str]:
    from kafka.admin import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=SETTINGS.connections.kafka_bootstrap, client_id="bench-worker")
    try:
        mine = [t for t in admin.list_topics() if t.startswith(prefixes)]
        if mine:
            admin.delete_topics(mine)
        remaining = set(groups)
        for _ in range(30):   # a stopped member leaves the group at once; a killed one after its session
            for group in sorted(remaining):
                try:
                    if admin.delete_groups([group]).get(group) in ("OK", None):
                        remaining.discard(group)
                except Exception:   # noqa: BLE001 — coordinator moving / still in use: retry, then give up
                    pass
            if not remaining:
                break
            time.sleep(1)
        return mine
    finally:
        admin.close()


# --- the worker -------------------------------------------------------------------------------------------

def status_kb(pid: int | None, field: str) -> int | None:
    """A field of /proc/<pid>/status in kB (VmRSS, VmHWM); None when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, TypeError):
        return None
    return None


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (fields 14 and 15 of /proc/<pid>/stat, after the command name)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def start_worker(tmp: Path, run: str, key_hex: str, args) -> tuple[subprocess.Popen, Path, dict[str, str]]:
    env = dict(os.environ, HISBRIDGE_WORKER_APP_ID=f"hisbridge-benchworker-{run}", HISBRIDGE_WORKER_WEB_PORT="0",
               HISBRIDGE_AGENTS="transform", HISBRIDGE_CORE_PREFIX=f"corebw{run}", HISBRIDGE_MAPPING=str(MAPPING),
               HISBRIDGE_SM4_KEY=key_hex, HISBRIDGE_LOOKUP_WAIT="3600", HISBRIDGE_TOPIC_PREFIX=f"benchw{run}",
               HISBRIDGE_TRANSFORM_TAKE=str(args.take), HISBRIDGE_TRANSFORM_WITHIN=str(args.within),
               HISBRIDGE_MARK_EVERY="1e9", HISBRIDGE_RAW_TOPIC=f"hisbridge-benchworker-{run}-probe",
               HISBRIDGE_WORKER_OUT=str(tmp / "probe.jsonl"), HISBRIDGE_VAR=str(tmp / "var"),
               BROKER_SESSION_TIMEOUT="10", BROKER_HEARTBEAT_INTERVAL="1")
    env.pop("HISBRIDGE_SM4_KEY_FILE", None)
    (tmp / "var").mkdir()
    log = tmp / "worker.log"
    command = [sys.executable, "-m", "hisbridge.cli.worker"]
    if args.profile:
        command = [sys.executable, "-m", "cProfile", "-o", str(Path(args.profile).resolve()), "-m",
                   "hisbridge.cli.worker"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, log, env


def stop_worker(proc: subprocess.Popen, graceful: bool) -> None:
    if proc.poll() is not None:
        return
    if graceful:   # SIGINT: Faust shuts down, cProfile writes its file
        os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
            return
        except subprocess.TimeoutExpired:
            pass
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def committed(admin, group: str) -> dict[str, int]:
    offsets = admin.list_group_offsets({group: None}).get(group, {})
    return {tp.topic: meta.offset for tp, meta in offsets.items()}


def watch(proc, log: Path, ends: EndOffsets, want: dict[str, int], raw_ends: dict[str, int], group: str,
          timeout: float) -> dict[str, Any]:
    """Poll the log for Ready and the end offsets for the outputs (perf_counter times). Done = the transform
    group has committed every raw offset (the worker commits a batch only after its outputs are
    acknowledged, so they are all on the broker then); the done time is when the output count last grew.
    A watermark mark (at most one per core partition) is counted on a core topic that expects nothing."""
    from kafka.admin import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=SETTINGS.connections.kafka_bootstrap, client_id="bench-worker-watch")
    sentinel = next(t for t in ends.parts if not t.endswith(".quarantine") and t not in want)
    seen: dict[str, Any] = {"ready": None, "first": None, "first_count": 0, "last": None, "cpu_last": None,
                            "started": time.perf_counter(), "outputs": 0}
    next_commit_check = 0.0
    try:
        while time.perf_counter() - seen["started"] < timeout:
            if proc.poll() is not None:
                raise SystemExit(f"worker exited with {proc.returncode}; log tail:\n{log.read_text()[-4000:]}")
            now = time.perf_counter()
            if seen["ready"] is None and "[^Worker]: Ready" in log.read_text(errors="replace"):
                seen["ready"], seen["cpu_ready"] = now, cpu_seconds(proc.pid)
            offsets = ends.read()
            marks = offsets[sentinel]
            mine = {t: offsets[t] - (0 if t.endswith(".quarantine") else marks) for t in ends.parts}
            produced = sum(n for t, n in mine.items() if t != sentinel)
            if produced > seen["outputs"]:
                if seen["first"] is None:
                    seen["first"], seen["first_count"] = now, produced
                seen["last"], seen["cpu_last"], seen["outputs"] = now, cpu_seconds(proc.pid), produced
            if seen["outputs"] and now >= next_commit_check:
                next_commit_check = now + 0.5
                done = committed(admin, group)
                if all(done.get(t, -1) >= n for t, n in raw_ends.items()):
                    return seen
            time.sleep(0.05)
    finally:
        admin.close()
    raise SystemExit(f"timeout after {timeout:.0f}s: want {want}, have {ends.read()}; log tail:\n"
                     f"{log.read_text()[-4000:]}")


# --- profile ----------------------------------------------------------------------------------------------

GROUPS = (   # self time by where the code lives (first match wins)
    ("hisbridge (the chain and its wiring)", "/hisbridge/"), ("aiokafka", "/aiokafka/"),
    ("kafka-python", "/kafka/"), ("faust", "/faust/"), ("mode (faust's service library)", "/mode/"),
    ("asyncio + selectors", "asyncio"), ("fastavro", "fastavro"), ("json / orjson", "json"),
    ("cryptography (SM4)", "cryptography"))

FUNCTIONS = (   # cumulative time of the wiring's steps (cProfile: a coroutine counts only while it runs)
    ("plan_batch (decode + lookups + transform, pure)", "runtime/batch_plan.py", "plan_batch"),
    ("  chain.transform (the pure chain)", "hisbridge/chain/chain.py", "transform"),
    ("  decode.decode_message", "decode.py", "decode_message"),
    ("  mapping.lookup_updates", "mapping.py", "lookup_updates"),
    ("  ReferenceStore.apply (lookup rows → store)", "state/lookups.py", "apply"),
    ("  codec.decode_value / encode_value (held records ↔ JSON)", "state/codec.py",
     ("decode_value", "encode_value")),
    ("  HeldRecords.park / at / release", "state/held.py", ("park", "at", "release")),
    ("TransformIO.produce (send core/quarantine + await acks)", "runtime/transform_worker.py", "produce"),
    ("TransformIO.save_held (held-record writes + await acks)", "runtime/transform_worker.py", "save_held"),
    ("TransformWorker._mark", "runtime/transform_worker.py", "_mark"),
    ("RawBatches.next (fetch + merge oldest first)", "runtime/transform_worker.py", "next"),
    ("aiokafka send (producer)", "aiokafka/producer", "send"),
    ("aiokafka Fetcher (consume)", "aiokafka/consumer/fetcher.py", None),
    ("selector poll (idle: waiting for I/O)", "selectors.py", "select"),
)


def print_profile(path: str) -> None:
    stats = pstats.Stats(path)
    raw = stats.stats   # (file, line, function) → (primitive calls, calls, tottime, cumtime, callers)
    total = sum(v[2] for v in raw.values())
    print(f"\nprofile {path}: {total:.1f} s of profiled (main-thread) time, start-up included")
    by_group: Counter = Counter()
    for (file, _, func), v in raw.items():
        name = next((g for g, needle in GROUPS if needle in file or needle in func), "other (stdlib, builtins…)")
        by_group[name] += v[2]
    print("  self time by package:")
    for name, t in by_group.most_common():
        print(f"    {name:<42} {t:8.1f} s  {t / total:6.1%}")
    print("  cumulative time of the worker's steps:")
    for label, file_part, funcs in FUNCTIONS:
        names = (funcs,) if isinstance(funcs, str) else funcs
        rows = [v for (file, _, func), v in raw.items() if file_part in file and (funcs is None or func in names)]
        if funcs is None:
            cum = sum(v[2] for v in rows)      # a whole module: its self time
        else:
            cum = sum(v[3] for v in rows)
        calls = sum(v[1] for v in rows)
        print(f"    {label:<58} {cum:8.1f} s  {cum / total:6.1%}  ({calls:,} calls)")
    print("  top 25 by self time:")
    stats.sort_stats("tottime").print_stats(25)


SAMPLE_STEPS = (   # (label, regex on one py-spy frame "function (file:line)"), most specific first
    ("chain.transform (the pure chain)", r"^transform \(.*hisbridge/chain/chain\.py"),
    ("decode.decode_message", r"^decode_message \(.*hisbridge/chain/decode\.py"),
    ("lookup rows → store (ReferenceStore.apply)", r"^apply \(.*state/lookups"),
    ("held records (park / at / release)", r"^(park|at|release|_index) \(.*state/held"),
    ("other plan_batch (lookup_updates…)", r"^plan_batch \(.*runtime/batch_plan"),
    ("TransformIO.produce + marks (send, await acks)", r"hisbridge/runtime/transform_worker\.py"),
    ("faust conductor / consumer / streams / other", r"faust/"),
    ("aiokafka (fetch, send, connection)", r"aiokafka/"),
    ("mode (faust's service library: timers, supervisors)", r"mode/"),
    ("asyncio event loop + selector", r"asyncio/|selectors\.py"),
)


def print_samples(path: str) -> None:
    """py-spy's collapsed stacks ("frame;frame;… count", outermost first) summed per worker step."""
    counts: Counter = Counter()
    for line in Path(path).read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        step = _step_of(frames)
        counts[step] += int(n)
    total = sum(n for step, n in counts.items() if not step.startswith("(idle"))
    print(f"\npy-spy {path}: {total:,} busy samples of the worker's threads (100/s, start-up included; shares "
          f"of the busy samples)")
    for step, n in counts.most_common():
        print(f"    {step:<70} {n:7,}  {n / total:6.1%}")


def _step_of(frames: list[str]) -> str:
    # py-spy takes a thread blocked in epoll for busy: those samples are idle time, not work
    if re.match(r"\S*select \(.*selectors\.py", frames[-1]):
        return "(idle: blocked in epoll — not CPU)"
    if frames[0].startswith("Thread._bootstrap"):    # Faust runs the aiokafka consumer in its own thread + loop
        return "consumer thread (aiokafka fetch + Faust's consumer thread)"
    for label, pattern in SAMPLE_STEPS:     # the steps are ordered from the most to the least specific
        if any(re.search(pattern, f) for f in frames):
            return label
    return "other"


# --- main -------------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--day", default="2026-03-02")
    ap.add_argument("--days", type=int, default=1, help="simulated days (each: --visits visits)")
    ap.add_argument("--visits", type=int, default=2000)
    ap.add_argument("--take", type=int, default=SETTINGS.worker.transform_take,
                    help="HISBRIDGE_TRANSFORM_TAKE for the worker (events per batch)")
    ap.add_argument("--within", type=float, default=1.0, help="HISBRIDGE_TRANSFORM_WITHIN for the worker")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--profile", help="run the worker under cProfile, write this file and print a breakdown")
    ap.add_argument("--py-spy", dest="pyspy", help="sample the worker with py-spy (pip install py-spy into the "
                    "venv; not a project dependency), write collapsed stacks to this file and print a breakdown")
    ap.add_argument("--keep", action="store_true", help="keep the run's topics and consumer group")
    args = ap.parse_args()

    catalog = load_catalog()
    mapping = load_mapping(catalog, MAPPING)
    key_hex = os.urandom(16).hex()
    key = crypto.parse_key(key_hex, "bench-only random key")
    run = uuid.uuid4().hex[:8]
    raw_prefix, core_prefix, app_id = f"benchw{run}", f"corebw{run}", f"hisbridge-benchworker-{run}"

    t0 = time.perf_counter()
    messages = build_messages(date.fromisoformat(args.day), args.days, args.visits, set(mapping.by_source)
                              | set(mapping.lookup_sources))
    cpu0 = time.process_time()
    expect, expect_keys, held = expected_outputs(messages, raw_prefix, catalog, mapping, key, args.take)
    pure = time.process_time() - cpu0
    by_table = Counter(t for t, _, _ in messages)
    size = sum(len(v) + len(k) for _, k, v in messages)
    print(f"input: {len(messages):,} raw messages ({size / 2**20:.1f} MiB) on {len(by_table)} topics, "
          f"{args.days} day(s) × {args.visits} visits: {dict(by_table)}  [built in {time.perf_counter() - t0:.1f} s]")
    print(f"expected: {sum(expect.values()):,} outputs {dict(expect)}; {held} records stay waiting for a "
          f"reference row (HISBRIDGE_LOOKUP_WAIT=3600: not produced during the run)")
    print(f"in-process reference: plan_batch with dicts for the stores, no Kafka, in order: {pure:.2f} s "
          f"CPU = {len(messages) / pure:,.0f} raw messages, {sum(expect.values()) / pure:,.0f} outputs per "
          f"CPU-second (first run of each code path included)")

    raw_names = raw_topics(raw_prefix, mapping.sources)
    core_names = [f"{core_prefix}.{t}" for t in sorted(catalog.tables)] + [f"{core_prefix}.quarantine"]
    create_topics(raw_names + core_names)   # core topics too: end offsets can be read from the start
    print(f"produce: {len(messages) / produce(messages, raw_prefix):,.0f} messages/s to {SETTINGS.connections.kafka_bootstrap}")
    want = {f"{core_prefix}.{t}": n for t, n in expect.items()}
    raw_ends = Counter(f"{raw_prefix}.his.{t}" for t, _, _ in messages)

    tmp = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    ends = EndOffsets(core_names)
    proc, log, _ = start_worker(tmp, run, key_hex, args)
    spy = None
    if args.pyspy:   # on-CPU samples of the worker's Python stacks, 100 a second, from start to the end
        spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--format", "raw", "--rate",
                                "100", "-o", args.pyspy, "-p", str(proc.pid)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        seen = watch(proc, log, ends, want, raw_ends, transform_group(app_id), args.timeout)
        if spy:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=30)
        counts, keys = ends.count_records()
    finally:
        stop_worker(proc, graceful=bool(args.profile))
        ends.close()
        if not args.keep:
            delete_run((raw_prefix + ".", core_prefix + ".", app_id, heartbeat_topic(raw_prefix)),
                       (app_id, transform_group(app_id)))
    report(args, messages, seen, counts, want, {f"{core_prefix}.{t}": k for t, k in expect_keys.items()}, keys)
    if args.profile:
        print_profile(args.profile)
    if args.pyspy:
        print_samples(args.pyspy)


def report(args, messages: list[Message], seen: dict[str, Any], counts: Counter, want: dict[str, int],
           want_keys: dict[str, set[str]], keys: dict[str, set[str]]) -> None:
    outputs = seen["outputs"]                 # what the worker produced (re-derived versions included)
    core = outputs - counts.get(next((t for t in counts if t.endswith(".quarantine")), ""), 0)
    missing = {t: len(k - keys.get(t, set())) for t, k in want_keys.items() if k - keys.get(t, set())}
    extra = {t: len(k - want_keys.get(t, set())) for t, k in keys.items() if k - want_keys.get(t, set())}
    if missing or extra:
        print(f"MISSING business keys (vs the in-order run): {missing}; keys the in-order run lacks: {extra}")
    versions = {t: (c, want.get(t, 0)) for t, c in counts.items() if c != want.get(t, 0)}
    if versions:
        print(f"versions per table differ from the in-order run (worker, in-order) — a record is re-derived when "
              f"a reference row arrives after its driver (the sink keeps the newest): {versions}")
    startup = seen["ready"] - seen["started"]
    run = seen["last"] - seen["ready"]
    steady = seen["last"] - seen["first"]
    cpu_run = seen["cpu_last"] - seen["cpu_ready"]
    print(f"load {os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} cores; worker batch HISBRIDGE_TRANSFORM_TAKE="
          f"{args.take}, HISBRIDGE_TRANSFORM_WITHIN={args.within}" + (" — under cProfile" if args.profile else ""))
    print(f"  start-up (process → Ready)        {startup:7.2f} s")
    print(f"  run (Ready → last output)         {run:7.2f} s: {len(messages) / run:8,.0f} raw messages/s, "
          f"{outputs / run:8,.0f} outputs/s ({core:,} core records + {outputs - core:,} quarantine; "
          f"{sum(map(len, keys.values())):,} distinct keys), {core / run:8,.0f} core records/s")
    print(f"  steady (first output → last)      {steady:7.2f} s: "
          f"{(outputs - seen['first_count']) / steady:8,.0f} outputs/s")
    print(f"  worker CPU during run             {cpu_run:7.2f} s ({cpu_run / run:.0%} of one core): "
          f"{outputs / cpu_run:8,.0f} outputs per CPU-second, {len(messages) / cpu_run:8,.0f} raw messages "
          f"per CPU-second; total CPU {seen['cpu_last']:.2f} s")


if __name__ == "__main__":
    main()
