"""Safe scale-out: 1, 2 and 3 transform workers with ONE app id, on raw topics of 3 partitions fed by real
Debezium, deliver exactly what the simulated HIS must give — every clean record, every planted defect in
quarantine, nothing else, no `missing_lookup` — because every worker reads the reference topics in full
into its own reference store, outside the group that splits the driver partitions among them.

The module's HIS (own database, connector, slot, topic prefix; raw topics created with 3 partitions before
the connector writes them) receives one more simulated day while each run's workers are up, so a visit and
its patient row race on different topics and partitions; each run's group reads everything from the
beginning, so run n must deliver the days of runs 1…n. Each worker process has its own state folder.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

import devstack.postgres
import pytest
from hisbridge.catalog import load_catalog
from hisbridge.chain import crypto
from hisbridge.chain.mapping import load_mapping
from hisbridge.contract import transform_group
from hisbridge.ops import connectors
from hisbridge.sim import expectations, generate
from hisbridge.sim import load as sim_load
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from support import ROOT, end_process, wait_for

pytestmark = pytest.mark.stack
MAPPING_FILE = ROOT / "schemas" / "mapping" / "demo_hospital.yaml"
CATALOG = load_catalog()
MAPPING = load_mapping(CATALOG, MAPPING_FILE)
KEY = crypto.parse_key(os.urandom(16).hex(), "test")      # throwaway SM4 key
SEED, VISITS, BAD_SHARE, PARTITIONS = 11, 60, 0.05, 3
FIRST_DAY = date(2026, 2, 10)


class His:
    """The module's HIS database and connector; the raw topics exist with PARTITIONS partitions first."""

    def __init__(self, base, res) -> None:
        db = f"his_so_{res.id}"
        self.dsn = res.database("his", db)
        devstack.postgres.his(base).prepare_cdc(db)
        self.prefix = res.topics(f"so{res.id}")
        res.topics(f"__debezium-heartbeat.{self.prefix}")
        self.settings = base.with_values(connections={"his_dsn": self.dsn}, source={"db": db, "topic_prefix": self.prefix})
        self.bootstrap = base.connections.kafka_bootstrap
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=f"test-scaleout-{res.id}")
        try:
            admin.create_topics([NewTopic(f"{self.prefix}.{s}", PARTITIONS, 1, topic_configs={"cleanup.policy": "compact"})
                                 for s in MAPPING.sources])
        finally:
            admin.close()
        conn = sim_load.connect(self.dsn)
        try:
            sim_load.init_schema(conn, seed=SEED)
        finally:
            conn.close()
        connectors.apply(self.settings, connectors.ConnectorSpec(res.connector(f"his-so-{res.id}"), "postgres",
                                                                 MAPPING.sources), timeout=180)
        self.days: list[date] = []

    def load_next_day(self) -> None:
        day = FIRST_DAY + timedelta(days=len(self.days))
        conn = sim_load.connect(self.dsn)
        try:
            sim_load.load_backdated(conn, generate.day_activity(SEED, day, VISITS, BAD_SHARE).events)
        finally:
            conn.close()
        self.days.append(day)

    def expected(self) -> tuple[set[tuple[str, str]], set[tuple[str, str, str]]]:
        """(table, key) delivered and (table, key, rule) quarantined over every day loaded so far."""
        delivered, quarantined = set(), set()
        for day in self.days:
            activity = generate.day_activity(SEED, day, VISITS, BAD_SHARE)
            for (table, _), want in expectations.sim_expectations(activity, MAPPING, CATALOG,
                                                                  generate.PRIMARY_KEYS).items():
                delivered |= {(table, k) for k in want.delivered}
                quarantined |= {(table, k, rule) for k, rule in want.quarantined}
        return delivered, quarantined


@pytest.fixture(scope="module")
def his(settings, module_resources):
    return His(settings, module_resources)


class Workers:
    """n worker processes (transform only) with one app id, each with its own state folder."""

    def __init__(self, tmp: Path, his: His, res, n: int) -> None:
        run = uuid.uuid4().hex[:8]
        self.tmp, self.his, self.n = tmp, his, n
        self.app_id = res.groups_starting(f"hisbridge-scaleout-{run}")
        res.topics(self.app_id)
        self.core_prefix = res.topics(f"coreso{run}")
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        for i in range(self.n):
            var = self.tmp / f"var{i}"
            var.mkdir()
            env = dict(os.environ, HISBRIDGE_WORKER_APP_ID=self.app_id, HISBRIDGE_WORKER_WEB_PORT="0",
                       HISBRIDGE_AGENTS="transform", HISBRIDGE_CORE_PREFIX=self.core_prefix,
                       HISBRIDGE_MAPPING=str(MAPPING_FILE), HISBRIDGE_SM4_KEY=KEY.key.hex(), HISBRIDGE_LOOKUP_WAIT="600",
                       HISBRIDGE_TOPIC_PREFIX=self.his.prefix, HISBRIDGE_TRANSFORM_WITHIN="0.3", HISBRIDGE_VAR=str(var))
            env.pop("HISBRIDGE_SM4_KEY_FILE", None)
            with open(self.tmp / f"worker{i}.log", "ab") as out:
                self.procs.append(subprocess.Popen([sys.executable, "-m", "hisbridge.cli.worker"], env=env, stdout=out,
                                                   stderr=subprocess.STDOUT, start_new_session=True))

    def stop(self) -> None:
        for proc in self.procs:
            end_process(proc)

    def sharing(self) -> bool:
        """Every worker's latest assignment (its log) is non-empty and together they cover every raw partition."""
        latest = []
        for i in range(self.n):
            found = re.findall(r"assigned (\d+) raw partitions", (self.tmp / f"worker{i}.log").read_text(errors="replace"))
            latest.append(int(found[-1]) if found else 0)
        return all(latest) and sum(latest) == len(MAPPING.sources) * PARTITIONS + 1     # + the heartbeat topic

    def drained(self) -> bool:
        """The group's committed offsets reached the end of every raw partition."""
        admin = KafkaAdminClient(bootstrap_servers=self.his.bootstrap)
        try:
            group = transform_group(self.app_id)
            committed = {tp: m.offset for tp, m in admin.list_group_offsets({group: None}).get(group, {}).items()}
        finally:
            admin.close()
        consumer = KafkaConsumer(bootstrap_servers=self.his.bootstrap)
        try:
            parts = [TopicPartition(f"{self.his.prefix}.{s}", p) for s in MAPPING.sources for p in range(PARTITIONS)]
            ends = consumer.end_offsets(parts)
        finally:
            consumer.close()
        return all(end == 0 or committed.get(tp, 0) >= end for tp, end in ends.items())

    def logs(self) -> str:
        return "\n".join((self.tmp / f"worker{i}.log").read_text(errors="replace")[-3000:] for i in range(self.n))


class Outputs:
    """The run's core topics and quarantine: (table, key) of core records, (table, key, rule) quarantined."""

    def __init__(self, workers: Workers) -> None:
        self.workers = workers
        self.consumer = KafkaConsumer(bootstrap_servers=workers.his.bootstrap, auto_offset_reset="earliest",
                                      enable_auto_commit=False, group_id=None)
        self.assigned = False
        self.core: dict[tuple[str, str], int] = defaultdict(int)
        self.quarantined: set[tuple[str, str | None, str]] = set()

    def poll(self) -> None:
        if not self.assigned:
            topics = [f"{self.workers.core_prefix}.{t}" for t in [*CATALOG.tables, "quarantine"]]
            parts = [(t, self.consumer.partitions_for_topic(t)) for t in topics]
            if any(not p for _, p in parts):
                return
            self.consumer.assign([TopicPartition(t, n) for t, ps in parts for n in ps])
            self.assigned = True
        for messages in self.consumer.poll(timeout_ms=500).values():
            for m in messages:
                headers = dict(m.headers)
                if headers.get("hisbridge.kind") == b"watermark":
                    continue
                table = m.topic[len(self.workers.core_prefix) + 1:]
                if table == "quarantine":
                    entry = json.loads(m.value)
                    self.quarantined |= {(entry["table"], entry["key"], r["rule"]) for r in entry["reasons"]}
                else:
                    self.core[(table, m.key.decode())] += 1


@pytest.fixture(params=[1, 2, 3], ids=lambda n: f"{n}-workers")
def run(request, tmp_path, his, resources):
    workers = Workers(tmp_path, his, resources, request.param)
    resources.finally_(workers.stop)
    workers.start()
    outputs = Outputs(workers)
    try:
        yield workers, outputs
    except BaseException:
        print(workers.logs())
        raise
    finally:
        outputs.consumer.close()


def test_n_workers_with_one_app_id_deliver_exactly_what_the_his_must_give(run, his):
    workers, outputs = run
    wait_for(f"{workers.n} workers sharing the raw partitions", workers.sharing, timeout=120, every=1)
    his.load_next_day()                    # streamed while the workers run: visits race their patients
    delivered, quarantined = his.expected()
    assert len(delivered) > 50 and {rule for _, _, rule in quarantined}

    def complete() -> bool:
        outputs.poll()
        return set(outputs.core) >= delivered and outputs.quarantined >= quarantined

    try:
        wait_for(f"every expected record from {workers.n} workers", complete, timeout=150, every=0.5)
    except AssertionError as timed_out:
        print(workers.logs())       # the fixture sees only its own errors, not the test's
        raise AssertionError(f"{timed_out}; missing core {sorted(delivered - set(outputs.core))[:20]}, "
                             f"missing quarantine {sorted(quarantined - outputs.quarantined)[:20]}") from None
    wait_for("the group's offsets at the end of every raw partition", workers.drained, timeout=60, every=1)
    outputs.poll()
    missing = delivered - set(outputs.core)
    assert not missing and set(outputs.core) == delivered
    assert outputs.quarantined == quarantined
    assert not any(rule == "missing_lookup" for _, _, rule in outputs.quarantined)
