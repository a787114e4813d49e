"""The sink wiring's pure parts: staging a consumed batch, watermarks from marks, the flush timer's step."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest

from hisbridge import avrocodec
from hisbridge.batching import SHANGHAI, assign_batch
from hisbridge.catalog import load_catalog
from hisbridge.catalog.avro import avro_datum
from hisbridge.catalog.sample import sample_records
from hisbridge.flush import FlushResult
from hisbridge.schedule import parse
from hisbridge.clock import FileClock, write_clock_file
from hisbridge.sinkloop import (FrontendUnavailable, LoopState, SinkEvent, connector_progress, stage_chunk,
                                table_watermarks, tables_by_topic, tick)
from hisbridge.staging import StagedBatch
from hisbridge.watermark import to_ms

CATALOG = load_catalog()
TABLE = CATALOG.table("mjzzlxx")
TOPICS = tables_by_topic(CATALOG.tables.values(), "core")
SCHEMAS = avrocodec.schemas_by_fingerprint(avrocodec.load_all().values())
HOSPITAL = parse({})


def at(h: int, m: int = 0, s: int = 0, us: int = 0, days: int = 0) -> datetime:
    return datetime(2026, 4, 1, h, m, s, us, tzinfo=SHANGHAI) + timedelta(days=days)


def data_event(n: int, produced: datetime, offset: int, lsn: int) -> SinkEvent:
    rec = dict(sample_records(TABLE, 1, seed=n)[0])
    rec.update(jzlsh=f"V{n:06d}", scsj=produced.replace(tzinfo=None))
    datum = avro_datum(TABLE, rec)
    value = avrocodec.encode(avrocodec.load_schema("mjzzlxx"), datum)
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


def test_watermark_is_the_minimum_over_partitions_and_connectors():
    rows = [("a", "core.mjzzlxx", 0, to_ms(at(18, 30))), ("a", "core.mjzzlxx", 1, to_ms(at(18, 5))),
            ("b", "core.mjzzlxx", 0, to_ms(at(19))), ("b", "core.mjzzlxx", 1, to_ms(at(19)))]
    marks = table_watermarks(connector_progress(rows), ["mjzzlxx"])
    assert marks == {"mjzzlxx": at(18, 5)}


def test_no_watermark_until_every_expected_partition_has_a_mark():
    expected = [("core.mjzzlxx", 0), ("core.mjzzlxx", 1)]
    rows = [("a", "core.mjzzlxx", 0, to_ms(at(19)))]
    assert table_watermarks(connector_progress(rows, expected), ["mjzzlxx"]) == {"mjzzlxx": None}
    assert table_watermarks(connector_progress([], expected), ["mjzzlxx"]) == {"mjzzlxx": None}


@dataclass
class FakeIO:
    """The SinkIO interface over lists (the timer's decisions, not PostgreSQL, are under test here)."""
    staged: list[StagedBatch]
    mark: datetime | None
    down: bool = False
    flushed: list[tuple[str, str, datetime]] = field(default_factory=list)
    recovered: int = 0

    def recover(self):
        if self.down:
            raise FrontendUnavailable("connection refused")
        self.recovered += 1
        return []

    def staged_batches(self):
        return list(self.staged)

    def watermarks(self):
        return {"mjzzlxx": self.mark}

    def flush(self, plan, now):
        if self.down:
            raise FrontendUnavailable("connection refused")
        self.flushed.append((plan.table, plan.batch, now))
        self.staged = [b for b in self.staged if (b.table, b.batch) != (plan.table, plan.batch)]
        return FlushResult(plan.table, plan.batch, "flushed", now.replace(tzinfo=None), 3, plan.kind)


def pending(batch: str = "2026-04-01", before: bool = False) -> StagedBatch:
    return StagedBatch("mjzzlxx", "daily", batch, 3, before)


def test_tick_recovers_once_and_flushes_nothing_before_the_window():
    io, state = FakeIO([pending()], at(19)), LoopState()
    assert tick(at(17, 59, 59), state, io, HOSPITAL).flushed == []
    tick(at(17, 59, 59, 999999), state, io, HOSPITAL)
    assert io.flushed == [] and io.recovered == 1 and state.recovered


def test_tick_flushes_a_closed_batch_once_inside_the_window():
    io, state = FakeIO([pending()], at(18, 10)), LoopState()
    report = tick(at(18), state, io, HOSPITAL)
    assert [(r.batch, r.kind) for r in report.flushed] == [("2026-04-01", "first")]
    assert tick(at(18, 1), state, io, HOSPITAL).flushed == []
    assert state.counters == {"flushes": 1, "rows_flushed": 3}


def test_tick_waits_for_the_watermark_then_flushes():
    io, state = FakeIO([pending()], at(18, 9, 59)), LoopState()
    assert tick(at(18, 30), state, io, HOSPITAL).flushed == []
    io.mark = at(18, 10)
    assert [r.batch for r in tick(at(18, 31), state, io, HOSPITAL).flushed] == ["2026-04-01"]


def test_stalled_watermark_alerts_once_near_the_window_end():
    io, state = FakeIO([pending()], at(17)), LoopState()
    assert tick(at(20, 59), state, io, HOSPITAL).alerts == []
    first = tick(at(21, 0), state, io, HOSPITAL)
    again = tick(at(21, 1), state, io, HOSPITAL)
    assert len(first.alerts) == 1 and "not closed" in first.alerts[0] and again.alerts == []
    assert state.counters["stalled_watermark"] == 1 and io.flushed == []


def test_frontend_down_backs_off_then_flushes_when_back():
    io, state = FakeIO([pending()], at(19), down=True), LoopState()
    report = tick(at(18), state, io, HOSPITAL)
    assert "retry" in report.waiting and state.wait_until == at(18) + HOSPITAL.retry_base
    assert tick(at(18, 0, 4), state, io, HOSPITAL).waiting.startswith("backing off")
    tick(at(18, 0, 5), state, io, HOSPITAL)                  # second failure: longer delay
    assert state.wait_until == at(18, 0, 5) + 2 * HOSPITAL.retry_base
    io.down = False
    report = tick(at(18, 0, 15), state, io, HOSPITAL)
    assert [r.batch for r in report.flushed] == ["2026-04-01"] and state.attempt == 0


def test_frontend_down_until_the_window_end_alerts_and_waits_for_the_next_window():
    io, state = FakeIO([pending()], at(19), down=True), LoopState()
    report = tick(at(21, 59, 58), state, io, HOSPITAL)
    assert len(report.alerts) == 1 and "unreachable" in report.alerts[0]
    assert state.counters["frontend_unreachable"] == 1 and state.wait_until == at(22)
    io.down = False
    assert tick(at(23), state, io, HOSPITAL).flushed == []    # window closed: nothing until the next one
    report = tick(at(18, 0, 1, days=1), state, io, HOSPITAL)
    assert [(r.batch, r.kind) for r in report.flushed] == [("2026-04-01", "first")]


def test_file_clock_follows_the_file_and_runs_at_its_speed(tmp_path):
    path = tmp_path / "clock.json"

    class Fixed:
        def now(self):
            return at(9)

    clock = FileClock(path, Fixed())
    assert clock.now() == at(9)
    write_clock_file(path, at(17, 59, 59), speed=0)
    assert clock.now() == at(17, 59, 59)
    write_clock_file(path, at(18, 30), speed=0)
    assert clock.now() == at(18, 30)
    with pytest.raises(ValueError):
        write_clock_file(path, datetime(2026, 4, 1, 18))
