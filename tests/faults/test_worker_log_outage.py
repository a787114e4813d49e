"""A Kafka outage in the worker's log: the real broker is stopped under a running worker (transform + sink)
for a minute. Every failing client retries many times a second; the log writes each kind of failure once a
minute with the count of the ones held back (hisbridge.logs.RepeatFilter), so the WARNING/ERROR lines per
minute stay a handful instead of ~120 a second. The worker must still be running — a dead worker would make
a quiet log trivial — and the broker is started again afterwards.

Waiting a minute is the measurement itself (lines per minute of outage), not a stand-in for a condition."""
from __future__ import annotations

import os
import time

import devstack
import pytest
from devstack.worker import Worker
from hisbridge.settings import load_settings
from support import wait_for

# a minute of real outage and a broker restart: `make faults` (faults_full), not `make test`
pytestmark = [pytest.mark.stack, pytest.mark.stack_restart, pytest.mark.faults_full]
OUTAGE_SECONDS = 65.0
# one line per kind of failure and minute: the aiokafka clients of the transform consumer, the Faust
# consumer/producer and the admin client each report a few kinds (connect failed, metadata, coordinator)
MAX_PROBLEM_LINES_PER_MINUTE = 30


def _levels(lines: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in lines:
        parts = line.split(maxsplit=3)
        if len(parts) >= 3 and parts[1].endswith("+08:00"):
            counts[parts[2]] = counts.get(parts[2], 0) + 1
    return counts


def test_a_kafka_outage_writes_a_few_lines_a_minute_with_counts(settings, resources, tmp_path):
    (tmp_path / "sm4.key").write_text(os.urandom(16).hex() + "\n")      # throwaway test key
    env = {"HISBRIDGE_STAGING_DSN": resources.database("frontend", f"staging_out_{resources.id}"),
           "HISBRIDGE_FRONTEND_DSN": resources.database("frontend", f"frontend_out_{resources.id}"),
           "HISBRIDGE_TOPIC_PREFIX": resources.topics(f"out{resources.id}"),
           "HISBRIDGE_CORE_PREFIX": resources.topics(f"coreout{resources.id}"),
           "HISBRIDGE_WORKER_APP_ID": resources.groups_starting(f"hisbridge-out-{resources.id}"),
           "HISBRIDGE_AGENTS": "transform,sink", "HISBRIDGE_WORKER_WEB_PORT": "0", "HISBRIDGE_LANG": "en",
           "HISBRIDGE_SM4_KEY_FILE": str(tmp_path / "sm4.key")}
    resources.topics(env["HISBRIDGE_WORKER_APP_ID"])
    run_settings = load_settings({**os.environ, **env})
    worker = Worker(run_settings, f"worker-out-{resources.id}")
    resources.finally_(worker.stop)
    worker.start_background(env)
    # the transform declares its topics and restores its state after Faust's "Ready": the outage starts once
    # it runs its loop (a broker leaving while topics are created is a crash at start-up, not an outage)
    wait_for("transform running", lambda: worker.log.exists() and "reference-row changes" in worker.log.read_text(),
             120)

    before = len(worker.log.read_text(encoding="utf-8").splitlines())
    devstack.down(settings, ["kafka"])
    try:
        stopped = time.monotonic()
        wait_for("a minute of outage", lambda: time.monotonic() - stopped >= OUTAGE_SECONDS or not worker.is_running(),
                 OUTAGE_SECONDS + 10, 1.0)
        assert worker.is_running(), worker.log.read_text()[-3000:]
        elapsed = time.monotonic() - stopped
        during = worker.log.read_text(encoding="utf-8").splitlines()[before:]
    finally:
        devstack.up(settings, ["kafka"])
    levels = _levels(during)
    problems = levels.get("WARNING", 0) + levels.get("ERROR", 0)
    per_minute = problems * 60 / elapsed
    print(f"outage {elapsed:.0f} s: {levels}, {per_minute:.1f} WARNING/ERROR lines a minute")
    assert 0 < problems and per_minute < MAX_PROBLEM_LINES_PER_MINUTE, "\n".join(during[-60:])
    assert any("more in the last" in line for line in during), "\n".join(during[-60:])
