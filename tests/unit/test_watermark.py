from datetime import datetime, timedelta

from hisbridge.batching import SHANGHAI, batch_by_name
from hisbridge.watermark import (ConnectorProgress, is_closed, mark_caught_up, observe, to_ms, watermark,
                                 watermark_ms)

DATA0, DATA1, HEARTBEAT = ("his.his.op_visit", 0), ("his.his.op_visit", 1), ("__debezium-heartbeat.his", 0)


def test_watermark_is_the_minimum_over_partitions_of_the_latest_commit_seen():
    p = ConnectorProgress()
    for part, ms in ((DATA0, 500), (DATA1, 300), (HEARTBEAT, 900), (DATA0, 400)):
        p = observe(p, part, ms)
    assert p.seen_ms[DATA0] == 500          # never backwards
    assert watermark_ms(p) == 300


def test_no_watermark_until_every_expected_partition_reported():
    p = ConnectorProgress(expected=frozenset({DATA0, HEARTBEAT}))
    p = observe(p, DATA0, 100)
    assert watermark_ms(p) is None
    assert watermark_ms(observe(p, HEARTBEAT, 50)) == 50


def test_caught_up_partition_does_not_hold_the_watermark_back_until_it_moves_again():
    p = observe(observe(observe(ConnectorProgress(), DATA0, 100), DATA1, 900), HEARTBEAT, 1000)
    p = mark_caught_up(p, [DATA0])
    assert watermark_ms(p) == 900
    assert watermark_ms(observe(p, DATA0, 150)) == 150
    assert watermark_ms(mark_caught_up(p, [DATA1, HEARTBEAT])) == 1000


def test_daily_batch_closes_at_1800_plus_grace():
    batch = batch_by_name("daily", "2026-03-01")
    grace = timedelta(minutes=10)
    just_before = datetime(2026, 3, 1, 18, 9, 59, 999000, tzinfo=SHANGHAI)
    p = observe(ConnectorProgress(), HEARTBEAT, to_ms(just_before))
    assert not is_closed(batch, watermark(p), grace)
    p = observe(p, HEARTBEAT, to_ms(just_before + timedelta(milliseconds=1)))
    assert is_closed(batch, watermark(p), grace)
    assert not is_closed(batch, None, grace)


def test_monthly_and_yearly_close_at_period_end_plus_grace():
    grace = timedelta(minutes=5)
    month, year = batch_by_name("monthly", "2026-02"), batch_by_name("yearly", "2025")
    assert is_closed(month, datetime(2026, 3, 1, 0, 5, tzinfo=SHANGHAI), grace)
    assert not is_closed(month, datetime(2026, 3, 1, 0, 4, 59, tzinfo=SHANGHAI), grace)
    assert is_closed(year, datetime(2026, 1, 1, 0, 5, tzinfo=SHANGHAI), grace)
    assert not is_closed(year, datetime(2025, 12, 31, 23, 59, tzinfo=SHANGHAI), grace)
