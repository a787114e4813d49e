"""The stack's Kafka Connect loads Debezium's JDBC sink (3.6.0.Final, the peer bench/bench_peer.py measures
against) from its own plugin folder beside the 3.6.1 source connectors, and accepts the bench's sink settings."""
from __future__ import annotations

import json
import urllib.request

import pytest

pytestmark = pytest.mark.stack


def rest(settings, method: str, path: str, body: dict | None = None):
    req = urllib.request.Request(settings.connections.connect_url + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def test_jdbc_sink_loads_beside_the_source_connectors(settings):
    plugins = {p["class"]: p for p in rest(settings, "GET", "/connector-plugins")}
    sink = plugins["io.debezium.connector.jdbc.JdbcSinkConnector"]
    assert (sink["type"], sink["version"]) == ("sink", "3.6.0.Final")
    assert plugins["io.debezium.connector.postgresql.PostgresConnector"]["version"] == "3.6.1.Final"
    config = {"name": "peer-validate", "connector.class": sink["class"], "tasks.max": "1", "topics": "his.his.op_visit",
              "connection.url": "jdbc:postgresql://127.0.0.1:1/none", "connection.username": "postgres",
              "insert.mode": "upsert", "primary.key.mode": "record_key", "schema.evolution": "basic",
              "batch.size": "2000", "consumer.override.max.poll.records": "2000"}
    answer = rest(settings, "PUT", f"/connector-plugins/{sink['class']}/config/validate", config)
    errors = {c["value"]["name"]: c["value"]["errors"] for c in answer["configs"] if c["value"]["errors"]}
    assert errors == {}
