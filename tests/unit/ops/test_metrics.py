"""The metrics a snapshot becomes: names, labels, one current state per batch, stale series gone after the
next refresh, no identity values."""
from datetime import datetime, timedelta

from hisbridge.clock import SHANGHAI
from hisbridge.ops.lag import PartitionLag
from hisbridge.ops.metrics import Metrics, Snapshot
from hisbridge.ops.observe import BatchView, ConnectorView, GroupLag, SlotView, TaskView


def lines(metrics: Metrics) -> list[str]:
    return [line for line in metrics.render().decode().splitlines() if line and not line.startswith("#")]


def test_a_snapshot_becomes_the_state_gauges():
    now = datetime(2026, 2, 10, 19, 0, tzinfo=SHANGHAI)
    m = Metrics()
    m.publish(Snapshot(
        at=now.timestamp(), clock=now, sources={"kafka": True, "frontend": False},
        lags=[GroupLag("hb", "Stable", (PartitionLag("hb", "core.mjzzlxx", 0, 10, 7),), {("core.mjzzlxx", 0): 4.5})],
        batches=[BatchView("mjzzlxx", "daily", "2026-02-10", "closed", 12, 3, now - timedelta(hours=1),
                           now + timedelta(hours=3))],
        connectors=[ConnectorView("his", "RUNNING", (TaskView(0, "FAILED", 'PSQLException: "x"'),))],
        slots=[SlotView("hisbridge_his", False, "extended", 5_000_000, 100)],
        quarantine={("mjzzlxx", "required"): 2}, held=(3, 12.5), watermarks={"his": now - timedelta(seconds=30)},
        last_flushes={"mjzzlxx": datetime(2026, 2, 10, 18, 0, 1, tzinfo=SHANGHAI)}))
    text = lines(m)
    assert 'kafka_consumergroup_lag{consumergroup="hb",partition="0",topic="core.mjzzlxx"} 3.0' in text
    assert 'kafka_consumergroup_lag_seconds{consumergroup="hb",partition="0",topic="core.mjzzlxx"} 4.5' in text
    assert 'hisbridge_batch_state{batch="2026-02-10",cadence="daily",state="closed",table="mjzzlxx"} 1.0' in text
    assert 'hisbridge_batch_state{batch="2026-02-10",cadence="daily",state="open",table="mjzzlxx"} 0.0' in text
    assert ('hisbridge_batch_window_close_seconds{batch="2026-02-10",cadence="daily",state="closed",'
            'table="mjzzlxx"} 10800.0') in text
    assert 'hisbridge_frontend_up 0.0' in text and 'hisbridge_held_records 3.0' in text
    assert 'hisbridge_quarantine_open{rule="required",table="mjzzlxx"} 2.0' in text
    assert 'hisbridge_replication_slot_retained_wal_bytes{slot="hisbridge_his"} 5e+06' in text
    assert 'hisbridge_connector_task_failed_info{connector="his",reason="PSQLException: \\"x\\"",task="0"} 1.0' in text
    assert 'hisbridge_watermark_age_seconds{connector="his"} 30.0' in text
    assert 'hisbridge_last_flush_timestamp_seconds{table="mjzzlxx"} 1.770717601e+09' in text   # 10:00:01 UTC

    m.publish(Snapshot(at=now.timestamp(), clock=now, sources={"kafka": False}))   # Kafka down: its series go
    text = lines(m)
    assert not any(line.startswith("kafka_consumergroup_lag") for line in text)
    assert 'hisbridge_source_up{source="kafka"} 0.0' in text


def test_events_are_counted():
    m = Metrics()
    m.count("transform", "mjzzlxx", "core", 5)
    m.flushed("mjzzlxx", "first", 120, 0.8)
    text = lines(m)
    assert 'hisbridge_records_total{outcome="core",stage="transform",table="mjzzlxx"} 5.0' in text
    assert 'hisbridge_flush_rows_total{kind="first",table="mjzzlxx"} 120.0' in text
