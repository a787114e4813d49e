"""The Faust app: the only global object (STYLE.md). Agents wire pure stages to topics; this module stays
thin. For now one agent proves the wiring: it receives raw Debezium envelopes and records them.

Settings come from hisbridge.config / environment:
  HISBRIDGE_WORKER_APP_ID   Faust app id = consumer group (default hisbridge)
  HISBRIDGE_RAW_TOPIC       the raw topic the probe agent reads (default his.stackprobe.probe)
  HISBRIDGE_WORKER_OUT      JSON-lines file of received envelopes (default var/worker/received.jsonl)
  HISBRIDGE_WORKER_WEB_PORT Faust web port; 0 disables the web server
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import faust

from hisbridge import config


def raw_topic_name() -> str:
    return config.env_str("HISBRIDGE_RAW_TOPIC", f"{config.raw_topic_prefix()}.stackprobe.probe")


def received_file() -> Path:
    return config.env_path("HISBRIDGE_WORKER_OUT", config.var_dir() / "worker" / "received.jsonl")


def received_record(topic: str, partition: int, offset: int, key: bytes | None,
                    value: bytes | None) -> dict[str, Any]:
    """What the probe agent records per event: position, and key/value decoded from Debezium JSON."""
    return {"topic": topic, "partition": partition, "offset": offset,
            "key": json.loads(key) if key else None,
            "value": json.loads(value) if value else None}  # None = the tombstone after a delete


def make_app() -> faust.App:
    web_port = config.env_int("HISBRIDGE_WORKER_WEB_PORT", 56066)
    return faust.App(
        config.env_str("HISBRIDGE_WORKER_APP_ID", "hisbridge"),
        broker=f"kafka://{config.kafka_bootstrap()}",
        store="memory://",
        datadir=str(config.var_dir() / "faust"),
        web_enabled=web_port != 0,
        web_port=web_port or 56066,
        web_host="127.0.0.1",
        topic_partitions=1,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
    )


app = make_app()
raw_topic = app.topic(raw_topic_name(), key_serializer="raw", value_serializer="raw")


@app.agent(raw_topic)
async def record_raw_envelopes(stream):
    """Append every received envelope to the received file in small batches. take_events is stream.take
    with the events (key, offset) instead of bare values, and `within` so a quiet topic never stalls it."""
    out = received_file()
    out.parent.mkdir(parents=True, exist_ok=True)
    async for events in stream.take_events(100, within=1.0):
        lines = [json.dumps(received_record(e.message.topic, e.message.partition, e.message.offset,
                                            e.key, e.value), ensure_ascii=False) for e in events]
        with open(out, "a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")


# Pipeline agents live in their own modules and register on `app` when imported; kept as data so a new
# stage is one line. A module not built yet must not stop the others.
AGENT_MODULES = ("hisbridge.agents.transform", "hisbridge.agents.sink")


def agent_modules() -> tuple[str, ...]:
    """HISBRIDGE_AGENTS (comma-separated short names, e.g. "sink") runs only those stages: a worker per
    stage in production, and tests that must not pick up the other stage's topics; "none" runs only the
    probe agent (stack checks that need neither a mapping nor an SM4 key)."""
    chosen = config.env_str("HISBRIDGE_AGENTS", "")
    if not chosen:
        return AGENT_MODULES
    if chosen == "none":
        return ()
    return tuple(f"hisbridge.agents.{name.strip()}" for name in chosen.split(",") if name.strip())


def load_agents() -> None:
    for name in agent_modules():
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
