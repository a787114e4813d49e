"""The stack probe: a small HIS table with the awkward types (µs timestamp, numeric(12,2), Chinese text,
NULL) and its connector — shared by the stack tests and `make demo`, independent of the HIS model."""
from __future__ import annotations

import psycopg2

from hisbridge import config
from hisbridge.connectors import ConnectorSpec

TABLE = "stackprobe.probe"
# One connector per captured table set: two connectors on the same table would duplicate every event.
SPEC = ConnectorSpec("stackprobe", "postgres", (TABLE,), heartbeat_ms=1000)

DDL = """CREATE SCHEMA IF NOT EXISTS stackprobe;
CREATE TABLE IF NOT EXISTS stackprobe.probe (
  id bigint PRIMARY KEY, seen_at timestamp(6) NOT NULL, amount numeric(12,2), label text, note text)"""


def topic() -> str:
    return f"{config.raw_topic_prefix()}.stackprobe.probe"


def his_connection():
    conn = psycopg2.connect(config.his_dsn())
    conn.autocommit = True
    return conn


def ensure_table() -> None:
    conn = his_connection()
    try:
        with conn.cursor() as cur:
            cur.execute(DDL)
    finally:
        conn.close()
