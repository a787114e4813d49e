"""A test run killed before its cleanup: what it left on the stack — a worker still running, its database,
topics and consumer group — goes when the next session sweeps (support.sweep_dead_runs); the register of a
run whose process still runs is left alone."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from devstack import procs
from kafka.admin import KafkaAdminClient
from support import ROOT, admin_statement, sweep_dead_runs, wait_for

pytestmark = pytest.mark.stack

# The killed run: registers what it creates, starts a stand-in worker in its own session (as the tests'
# workers are), says the worker's pid, then waits to be killed.
KILLED_RUN = r"""
import os, subprocess, sys
from hisbridge.settings import load_settings
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.structs import OffsetAndMetadata
from support import Resources

res = Resources(load_settings(), id=sys.argv[1])
res.database("his", f"sweep_{res.id}")
topic = res.topics(f"sweep{res.id}") + ".raw"
app = res.groups_starting(f"hisbridge-sweeptest-{res.id}")
bootstrap = res.settings.connections.kafka_bootstrap
admin = KafkaAdminClient(bootstrap_servers=bootstrap)
admin.create_topics([NewTopic(topic, 1, 1)])
admin.close()
group = KafkaConsumer(bootstrap_servers=bootstrap, group_id=app + ".transform", enable_auto_commit=False)
group.assign([TopicPartition(topic, 0)])
group.commit({TopicPartition(topic, 0): OffsetAndMetadata(0, "", -1)})
group.close()
worker = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()", "hisbridge-stand-in"],
                          stdin=subprocess.DEVNULL, env=dict(os.environ, HISBRIDGE_WORKER_APP_ID=app),
                          start_new_session=True)
print(worker.pid, flush=True)
sys.stdin.read()
"""


def _database_exists(settings, name: str) -> bool:
    return bool(admin_statement(settings.stack.his_pg_port, "SELECT 1 FROM pg_database WHERE datname = %s", (name,)))


def _kafka_has(settings, topic: str, group: str) -> tuple[bool, bool]:
    admin = KafkaAdminClient(bootstrap_servers=settings.connections.kafka_bootstrap)
    try:
        return topic in admin.list_topics(), group in {g["group_id"] for g in admin.list_groups()}
    finally:
        admin.close()


def test_what_a_killed_run_left_is_swept_and_a_live_runs_register_is_not(settings, resources):
    rid = uuid.uuid4().hex[:8]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT / "tests"), os.environ.get("PYTHONPATH"))
                                                      if p))
    run = subprocess.Popen([sys.executable, "-c", KILLED_RUN, rid], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           env=env, cwd=ROOT)
    line = run.stdout.readline()
    assert line.strip().isdigit(), f"the killed run did not start its worker (exit {run.poll()})"
    worker = int(line)
    resources.finally_(lambda: procs.terminate(worker, "hisbridge-stand-in", 5))   # if the sweep did not
    topic, group = f"sweep{rid}.raw", f"hisbridge-sweeptest-{rid}.transform"
    run.kill()                                       # no cleanup runs
    run.wait()
    journal = settings.paths.var / "test-runs" / f"{rid}.json"
    assert journal.exists() and procs.is_alive(worker, "hisbridge-stand-in")
    assert _database_exists(settings, f"sweep_{rid}") and _kafka_has(settings, topic, group) == (True, True)
    live = resources.topics(f"sweeplive{resources.id}")      # this session's own register: its owner runs
    assert live and resources.journal.exists()

    swept = [line for line in sweep_dead_runs(settings) if f"run {rid} " in line]
    assert len(swept) == 1 and "left:" not in swept[0], swept
    wait_for("the stand-in worker stopped", lambda: not procs.is_running_pid(worker), timeout=30)
    assert not _database_exists(settings, f"sweep_{rid}")
    assert _kafka_has(settings, topic, group) == (False, False)
    assert not journal.exists()
    assert resources.journal.exists()
    assert not [line for line in sweep_dead_runs(settings) if f"run {resources.id} " in line]
