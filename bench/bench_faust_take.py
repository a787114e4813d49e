"""How fast can a Faust agent take events at all? The floor under any `stream.take` transform agent.

An agent over one topic with `stream.take_events(--take, within=1.0)` that does nothing but count, run as a
real Faust worker subprocess against the real broker, over --messages pre-produced 3.5 KB messages (the
size of a 门急诊 Debezium envelope). Printed: events/s from the first batch to the last, and the worker's
CPU per event. Compare with bench_worker.py: a transform worker cannot be faster than this, whatever its
chain costs — which is why the transform consumes its raw topics in batches with aiokafka instead
(services/hisbridge/agents/transform.py).

Needs a running Kafka (`hisbridge stack up kafka` or `make up`; SETTINGS.connections.kafka_bootstrap).
Run: .venv/bin/python bench/bench_faust_take.py [--messages 20000] [--take 500]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

from hisbridge.settings import load_settings

SETTINGS = load_settings()

AGENT = textwrap.dedent('''
    import os, time
    import faust
    N = int(os.environ["BENCH_N"])
    app = faust.App(os.environ["BENCH_APP"], broker="kafka://" + os.environ["BENCH_BOOTSTRAP"], store="memory://",
                    web_enabled=False, topic_partitions=1, consumer_auto_offset_reset="earliest",
                    datadir=os.environ["BENCH_DIR"])
    topic = app.topic(os.environ["BENCH_TOPIC"], key_serializer="raw", value_serializer="raw")
    seen = {"n": 0}

    @app.agent(topic)
    async def count(stream):
        async for events in stream.take_events(int(os.environ["BENCH_TAKE"]), within=1.0):
            if not seen["n"]:
                seen["t0"], seen["c0"] = time.monotonic(), time.process_time()
            seen["n"] += len(events)
            if seen["n"] >= N:
                wall, cpu = time.monotonic() - seen["t0"], time.process_time() - seen["c0"]
                print(f"RESULT {seen['n']} {wall:.3f} {cpu:.3f}", flush=True)
                os._exit(0)
''')


def produce(topic: str, count: int) -> None:
    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=SETTINGS.connections.kafka_bootstrap, linger_ms=20, batch_size=1 << 20)
    value = b"x" * 3500
    for i in range(count):
        producer.send(topic, key=str(i).encode(), value=value)
    producer.flush()
    producer.close()


def delete(topics: list[str], group: str) -> None:
    from kafka.admin import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=SETTINGS.connections.kafka_bootstrap, client_id="bench-faust-take")
    try:
        mine = [t for t in admin.list_topics() if t in topics or t.startswith(group + "-")]
        if mine:
            admin.delete_topics(mine)
        try:
            admin.delete_groups([group])
        except Exception:   # noqa: BLE001 — a group the broker already dropped
            pass
    finally:
        admin.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--take", type=int, default=500)
    args = ap.parse_args()
    run = uuid.uuid4().hex[:8]
    topic, app_id = f"benchfaust{run}", f"benchfaust-{run}"
    produce(topic, args.messages)
    work = Path(tempfile.mkdtemp(prefix="bench-faust-"))
    (work / "agent.py").write_text(AGENT)
    env = dict(os.environ, BENCH_N=str(args.messages), BENCH_APP=app_id, BENCH_TOPIC=topic, BENCH_DIR=str(work),
               BENCH_TAKE=str(args.take), BENCH_BOOTSTRAP=SETTINGS.connections.kafka_bootstrap)
    try:
        out = subprocess.run([sys.executable, "-m", "faust", "-A", "agent", "worker", "-l", "warn"], cwd=work,
                             env=env, capture_output=True, text=True, timeout=600)
    finally:
        delete([topic], app_id)
    line = next((line for line in out.stdout.splitlines() + out.stderr.splitlines() if "RESULT" in line), None)
    if line is None:
        sys.exit(f"the agent gave no result:\n{out.stderr[-3000:]}")
    count, wall, cpu = line.split("RESULT", 1)[1].split()
    n, wall_s, cpu_s = int(count), float(wall), float(cpu)
    print(f"load {os.getloadavg()[0]:.2f} (1 min); Faust agent, take_events({args.take}), counting only: {n:,} events "
          f"in {wall_s:.2f} s = {n / wall_s:,.0f} events/s; {cpu_s / n * 1e6:.0f} µs of main-thread CPU per event")


if __name__ == "__main__":
    main()
