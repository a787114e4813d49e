"""The Faust app: the only global-like object (STYLE.md), built by `make_app(settings)` when a worker starts —
never at import time. Agents wire pure stages to topics; this module stays thin.

Stages (`worker.agents`): `transform` and `sink` (runtime.transform_worker, runtime.sink_worker), and
`probe`, the stack probe's raw recorder that only the stack tests run.
"""
from __future__ import annotations

import importlib
import json
from typing import Any

import faust
from hisbridge.contract import faust_app_id
from hisbridge.settings import Settings


def received_record(topic: str, partition: int, offset: int, key: bytes | None,
                    value: bytes | None) -> dict[str, Any]:
    """What the probe agent records per event: position, and key/value decoded from Debezium JSON."""
    return {"topic": topic, "partition": partition, "offset": offset,
            "key": json.loads(key) if key else None,
            "value": json.loads(value) if value else None}  # None = the tombstone after a delete


def make_app(settings: Settings) -> faust.App:
    worker = settings.worker
    return faust.App(
        faust_app_id(worker.app_id, worker.agents),   # the app id's own group only where agents consume
        broker=f"kafka://{settings.connections.kafka_bootstrap}",
        store="memory://",
        datadir=str(settings.paths.var / "faust"),
        web_enabled=worker.web_port != 0,
        web_port=worker.web_port or 56066,
        web_host=worker.web_host,
        web_bind=worker.web_host,      # Faust binds 0.0.0.0 unless told: /metrics stays on loopback by default
        topic_partitions=1,
        topic_replication_factor=settings.connections.topic_replication,
        consumer_auto_offset_reset="earliest",
    )


def register_probe(app: faust.App, settings: Settings) -> None:
    """The stack probe's agent: append every envelope of the probe topic to a JSON-lines file (stack tests)."""
    out = settings.worker.probe_out
    raw_topic = app.topic(settings.worker.probe_topic, key_serializer="raw", value_serializer="raw")

    @app.agent(raw_topic, name="hisbridge.probe.record_raw_envelopes")
    async def record_raw_envelopes(stream):
        """take_events is stream.take with the events (key, offset), `within` so a quiet topic never stalls."""
        out.parent.mkdir(parents=True, exist_ok=True)
        async for events in stream.take_events(100, within=1.0):
            lines = [json.dumps(received_record(e.message.topic, e.message.partition, e.message.offset,
                                                e.key, e.value), ensure_ascii=False) for e in events]
            with open(out, "a", encoding="utf-8") as fh:
                fh.write("\n".join(lines) + "\n")


# stage name → module with `register(app, settings)`; kept as data so a new stage is one line
STAGES = {"transform": "hisbridge.runtime.transform_worker", "sink": "hisbridge.runtime.sink_worker"}


def register_stages(app: faust.App, settings: Settings) -> None:
    """Register the stages `worker.agents` names ("none": no stage at all), and the monitoring (/metrics,
    /health, the connector supervisor) that every worker runs."""
    from hisbridge.runtime import monitor
    for name in settings.worker.agents:
        if name == "none":
            continue
        if name == "probe":
            register_probe(app, settings)
            continue
        if name not in STAGES:
            raise ValueError(f"unknown worker stage {name!r} in HISBRIDGE_AGENTS (known: transform, sink, probe)")
        importlib.import_module(STAGES[name]).register(app, settings)
    monitor.register(app, settings)
