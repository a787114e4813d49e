"""What the sink consumes, made into staging rows and mark progress (no Kafka, no database)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta

from hisbridge.catalog import load_catalog
from hisbridge.catalog.avro import avro_datum
from hisbridge.catalog.sample import sample_records
from hisbridge.chain import avro
from hisbridge.chain.batch import assign_batch
from hisbridge.clock import SHANGHAI
from hisbridge.delivery.intake import SinkEvent, stage_chunk, tables_by_topic

CATALOG = load_catalog()

TABLE = CATALOG.table("mjzzlxx")

TOPICS = tables_by_topic(CATALOG.tables.values(), "core")

SCHEMAS = avro.schemas_by_fingerprint(avro.load_all().values())

def at(h: int, m: int = 0, s: int = 0, us: int = 0, days: int = 0) -> datetime:
    return datetime(2026, 4, 1, h, m, s, us, tzinfo=SHANGHAI) + timedelta(days=days)

def data_event(n: int, produced: datetime, offset: int, lsn: int) -> SinkEvent:
    rec = dict(sample_records(TABLE, 1, seed=n)[0])
    rec.update(jzlsh=f"V{n:06d}", scsj=produced.replace(tzinfo=None))
    datum = avro_datum(TABLE, rec)
    value = avro.encode(avro.load_schema("mjzzlxx"), datum)
    source = {"db": "his", "schema": "public", "table": "visit", "lsn": lsn, "tx_id": 1, "commit_time_ms": lsn}
    return SinkEvent("core.mjzzlxx", 0, offset, value,
                     {"hisbridge.batch": assign_batch(TABLE, datum).name.encode(),
                      "hisbridge.source": json.dumps(source).encode()})

def mark(connector: str, ms: int, partition: int = 0, offset: int = 0) -> SinkEvent:
    return SinkEvent("core.mjzzlxx", partition, offset, json.dumps({"connector": connector, "commit_time_ms": ms}).encode(),
                     {"hisbridge.kind": b"watermark"})

def test_boundary_rows_are_staged_in_their_batches_with_source_positions():
    chunk = stage_chunk([data_event(1, at(17, 59, 59, 999999), 0, 100), data_event(2, at(18), 1, 101)],
                        TOPICS, SCHEMAS)
    assert chunk.problems == [] and chunk.progress == {}
    assert [(r.bkey, r.batch, r.lsn) for r in chunk.rows] == [("V000001", "2026-04-01", 100),
                                                              ("V000002", "2026-04-02", 101)]

def test_marks_become_progress_and_keep_the_latest_time_per_partition():
    chunk = stage_chunk([mark("his", 500), mark("his", 900, offset=1), mark("his", 700, offset=2),
                         mark("his", 300, partition=1)], TOPICS, SCHEMAS)
    assert chunk.rows == []
    assert chunk.progress == {("his", "core.mjzzlxx", 0): 900, ("his", "core.mjzzlxx", 1): 300}

def test_bad_events_are_problems_with_their_position_not_exceptions():
    bad = [SinkEvent("core.mjzzlxx", 0, 7, b"not avro", {}),
           SinkEvent("core.mjzzlxx", 0, 8, b"{}", {"hisbridge.kind": b"watermark"}),
           SinkEvent("core.nosuch", 0, 9, b"", {})]
    chunk = stage_chunk(bad, TOPICS, SCHEMAS)
    assert chunk.rows == [] and chunk.progress == {}
    assert [p.split(":")[0] for p in chunk.problems] == ["core.mjzzlxx[0]@7", "core.mjzzlxx[0]@8", "core.nosuch[0]@9"]

def test_quarantine_entries_replayed_records_and_batch_requests_are_told_apart():
    from hisbridge.contract import (QuarantineEntry, replay_batch_value,
                                    replay_record_headers, serialize_entry)
    entry = QuarantineEntry("mjzzlxx", ({"rule": "unmapped_code", "field": "xb", "message": "m"},),
                            {"lsn": 7, "commit_time_ms": 70}, "2026-04-01", None, "v", "2026-04-01T10:00:00+08:00",
                            "V000009")
    live = data_event(3, at(10), 2, 102)
    replayed = SinkEvent("core.replay", 0, 5, live.value,
                         dict(replay_record_headers(tuple(live.headers.items()), "r1", "mjzzlxx")))
    events = [SinkEvent("core.quarantine", 0, 0, serialize_entry(entry), {"hisbridge.kind": b"quarantine"}),
              replayed,
              SinkEvent("core.replay", 0, 6, replay_batch_value("mjzzlxx", "2026-04-01"),
                        {"hisbridge.kind": b"replay_batch", "hisbridge.replay": b"r2"}),
              SinkEvent("core.quarantine", 0, 1, b"not json", {"hisbridge.kind": b"quarantine"})]
    chunk = stage_chunk(events, TOPICS, SCHEMAS)
    assert [(e.table, e.key, e.rules) for e in chunk.entries] == [("mjzzlxx", "V000009", ["unmapped_code"])]
    assert [(r.bkey, r.replay) for r in chunk.rows] == [("V000003", "r1")]
    assert chunk.replays == [("r2", "mjzzlxx", "2026-04-01")]
    assert len(chunk.problems) == 1 and chunk.problems[0].startswith("core.quarantine[0]@1")
