"""Transform and sink in two processes with ONE app id (HISBRIDGE_AGENTS=transform / HISBRIDGE_AGENTS=sink)
deliver the demo day into the front-end exactly as one process running both does (support.e2e's checks).

Why this needs its own test: Faust's consumer group elects one leader among its members, which holds the
on-leader timers (the sink's flush timer) and hands the core partitions out. When the transform-only process
joined that group too (`<app id>`) and started first, it took the lead: the sink process staged, but its
flush timer never ran, and the day stayed pending in staging (bench_peer's hb2 side never finished). A process running no Faust-consuming
stage now has its own group, `<app id>.monitor` (contract.faust_app_id).

The demo (deploy/demo.py through support.e2e.run_demo) starts the transform-only worker; the sink-only worker
is started here once that one is ready (so the transform process would be the old group's leader), on the same
settings. Both are removed with `resources`.
"""
from __future__ import annotations

import pytest
from devstack.worker import Worker
from hisbridge.contract import faust_app_id
from hisbridge.settings import Settings, environment_for
from kafka.admin import KafkaAdminClient
from support import e2e, wait_for

pytestmark = pytest.mark.stack


def test_a_transform_only_and_a_sink_only_process_with_one_app_id_deliver_the_day(resources, tmp_path):
    started: dict[str, object] = {}
    sinks: list[Worker] = []

    def keep(settings: Settings, worker: Worker, connector: str) -> None:
        started.update(settings=settings, worker=worker)

    def start_sink_after_the_transform(line: str) -> None:
        """Once the demo's transform-only worker is up (its Faust app ready: first in its group, as in
        bench_peer's hb2 where the sink process starts second), the sink-only process beside it."""
        if not line.startswith("worker: pid"):
            return
        settings, transform = started["settings"], started["worker"]
        wait_for("the transform-only worker ready",
                 lambda: transform.log.exists() and "[^Worker]: Ready" in transform.log.read_text(errors="replace"))
        sink = Worker(settings, f"{transform.name}-sink")
        resources.finally_(sink.stop)
        sink.start_background(env={**environment_for(settings), "HISBRIDGE_AGENTS": "sink"}, restart=True)
        sinks.append(sink)

    tag = "split"
    run = e2e.run_demo(resources, tmp_path, tag,
                       {"HISBRIDGE_HIS_DSN": resources.database("his", f"his_{tag}_{resources.id}", create=False),
                        "HISBRIDGE_AGENTS": "transform"}, on_start=keep, say=start_sink_after_the_transform)
    app_id = run.settings.worker.app_id
    assert run.worker.is_running() and sinks[0].is_running(), sinks[0].log.read_text(errors="replace")[-3000:]
    want = e2e.expected()
    e2e.check_every_batch_reconciles_exactly(run, want)
    e2e.check_frontend_holds_exactly_the_expected_rows_once(run, want, e2e.DAY.isoformat())
    e2e.check_quarantine_holds_exactly_the_planted_defects(run, want)
    # the transform process is no member of the sink's group: it has one of its own
    admin = KafkaAdminClient(bootstrap_servers=run.settings.connections.kafka_bootstrap)
    try:
        groups = admin.describe_groups([app_id, faust_app_id(app_id, ["transform"])])
    finally:
        admin.close()
    assert [len(d["members"]) for d in groups.values()] == [1, 1]
