"""Sink against a real PostgreSQL (the stack's frontend and staging databases, via hisbridge.config).

Each test uses its own organisation code and batch days far in the future, so runs never collide with
each other or with pipeline data, and nothing is truncated.
"""
from __future__ import annotations

import random
import uuid
from datetime import date, datetime, timedelta

import psycopg2
import pytest

from hisbridge import config, ledger, staging
from hisbridge.batching import SHANGHAI, assign_batch
from hisbridge.catalog import load_catalog
from hisbridge.catalog.sample import sample_records
from hisbridge.flush import (Forced, WindowClosed, claim, flush_batch, plan_flushes, retry_decision,
                             write_frontend)
from hisbridge.schedule import parse

pytestmark = pytest.mark.stack
TABLE = load_catalog().table("mjzzlxx")
HOSPITAL = parse({})


def _connect(dsn: str):
    try:
        return psycopg2.connect(dsn, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        pytest.fail(f"cannot reach {dsn!r} — start the stack with `hisbridge stack up` ({exc})")


@pytest.fixture(scope="module")
def dbs():
    front, stage = _connect(config.frontend_dsn()), _connect(config.staging_dsn())
    from hisbridge.flush import ensure_frontend
    ensure_frontend(front)
    staging.ensure_schema(stage)
    yield stage, front
    front.close()
    stage.close()


@pytest.fixture
def case():
    """A fresh organisation code and a batch day nobody else uses."""
    rng = random.Random(uuid.uuid4().int)
    day = date(2200, 1, 1) + timedelta(days=rng.randrange(300_000))
    return "T" + uuid.uuid4().hex[:17].upper(), day


def at(day: date, h: int, m: int = 0, s: int = 0, us: int = 0, days: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, h, m, s, us, tzinfo=SHANGHAI) + timedelta(days=days)


def record(org: str, n: int, produced: datetime, xgbz: str = "0", fee: str | None = None) -> dict:
    rec = dict(sample_records(TABLE, 1, seed=n)[0])
    rec.update(yljgdm=org, jzlsh=f"V{n:08d}", scsj=produced.replace(tzinfo=None), xgbz=xgbz)
    if fee is not None:
        from decimal import Decimal
        rec["zfy"] = Decimal(fee)
    return rec


def stage(conn, recs: list[dict], lsn_start: int) -> list[str]:
    rows, batches = [], []
    for i, rec in enumerate(recs):
        batch = assign_batch(TABLE, rec).name
        batches.append(batch)
        rows.append(staging.staged_row(TABLE, rec, batch, lsn_start + i, lsn_start + i))
    staging.upsert_rows(conn, rows)
    return batches


def frontend_rows(front, org: str) -> dict[str, tuple]:
    with front, front.cursor() as cur:
        cur.execute("SELECT jzlsh, report_datetime, xgbz, zfy, scsj FROM mjzzlxx WHERE yljgdm = %s", (org,))
        return {r[0]: r[1:] for r in cur.fetchall()}


def test_boundary_rows_land_in_their_batches_and_only_theirs_flush(dbs, case):
    stage_conn, front = dbs
    org, day = case
    batches = stage(stage_conn, [record(org, 1, at(day, 17, 59, 59, 999999)), record(org, 2, at(day, 18))], 10)
    assert batches == [day.isoformat(), (day + timedelta(days=1)).isoformat()]
    result = flush_batch(stage_conn, front, TABLE, day.isoformat(), at(day, 18, 30), HOSPITAL)
    assert (result.outcome, result.row_count, result.kind) == ("flushed", 1, "first")
    assert set(frontend_rows(front, org)) == {"V00000001"}


def test_guard_refuses_before_the_window_and_writes_nothing(dbs, case):
    stage_conn, front = dbs
    org, day = case
    stage(stage_conn, [record(org, 1, at(day, 9))], 10)
    with pytest.raises(WindowClosed):
        flush_batch(stage_conn, front, TABLE, day.isoformat(), at(day, 17, 59, 59), HOSPITAL)
    with pytest.raises(WindowClosed):
        flush_batch(stage_conn, front, TABLE, day.isoformat(), at(day, 22), HOSPITAL)
    assert frontend_rows(front, org) == {}
    assert ledger.rows(front, "mjzzlxx", day.isoformat()) == []
    assert staging.row_states(stage_conn, "mjzzlxx", day.isoformat())[(org, "V00000001")][0] == "pending"


def test_all_rows_of_a_flush_share_one_report_datetime_and_the_ledger_counts_them(dbs, case):
    stage_conn, front = dbs
    org, day = case
    stage(stage_conn, [record(org, n, at(day, 8) + timedelta(minutes=n)) for n in range(40)], 100)
    now = at(day, 19, 12, 34, 567)
    result = flush_batch(stage_conn, front, TABLE, day.isoformat(), now, HOSPITAL)
    rows = frontend_rows(front, org)
    assert len(rows) == 40 and {r[0] for r in rows.values()} == {datetime(day.year, day.month, day.day, 19, 12, 34)}
    [entry] = ledger.rows(front, "mjzzlxx", day.isoformat())
    assert (entry.row_count, entry.kind, entry.report_datetime) == (40, "first", result.report_datetime)
    # checksum: md5 over org\x1fkey sorted bytewise, \x1e-joined — recomputed here independently
    import hashlib
    keys = sorted(f"{org}\x1f{k}" for k in rows)
    assert entry.checksum == hashlib.md5("\x1e".join(keys).encode()).hexdigest()
    assert {s for s, _, _ in staging.row_states(stage_conn, "mjzzlxx", day.isoformat()).values()} == {"flushed"}


def test_late_row_and_update_after_flush_go_out_next_window_as_resubmission(dbs, case):
    stage_conn, front = dbs
    org, day = case
    batch = day.isoformat()
    stage(stage_conn, [record(org, 1, at(day, 8)), record(org, 2, at(day, 9))], 10)
    first = flush_batch(stage_conn, front, TABLE, batch, at(day, 18, 20), HOSPITAL)
    # after the window: a changed version of row 1 and a late row of the same batch
    stage(stage_conn, [record(org, 1, at(day, 8), fee="1.23"), record(org, 3, at(day, 10))], 50)
    with pytest.raises(WindowClosed):
        flush_batch(stage_conn, front, TABLE, batch, at(day, 23), HOSPITAL)
    mine = [b for b in staging.staged_batches(stage_conn) if (b.table, b.batch) == ("mjzzlxx", batch)]
    marks = {"mjzzlxx": at(day, 19, days=1)}
    plans, alerts = plan_flushes(at(day, 23), mine, marks, HOSPITAL)
    assert plans == [] and alerts == []
    plans, _ = plan_flushes(at(day, 19, days=1), mine, marks, HOSPITAL)
    assert [(p.batch, p.kind) for p in plans] == [(batch, "resubmission")]
    second = flush_batch(stage_conn, front, TABLE, batch, at(day, 19, days=1), HOSPITAL)
    assert (second.kind, second.row_count) == ("resubmission", 2)
    assert second.report_datetime > first.report_datetime
    rows = frontend_rows(front, org)
    assert rows["V00000001"][0] == second.report_datetime and str(rows["V00000001"][2]) == "1.23"
    assert rows["V00000002"][0] == first.report_datetime
    assert rows["V00000003"][0] == second.report_datetime
    assert [e.kind for e in ledger.rows(front, "mjzzlxx", batch)] == ["first", "resubmission"]


def test_older_version_arriving_late_does_not_overwrite_a_newer_one(dbs, case):
    stage_conn, front = dbs
    org, day = case
    newer, older = record(org, 1, at(day, 8), fee="200.00"), record(org, 1, at(day, 8), fee="100.00")
    batch = assign_batch(TABLE, newer).name
    staging.upsert_rows(stage_conn, [staging.staged_row(TABLE, newer, batch, 200, 2000)])
    staging.upsert_rows(stage_conn, [staging.staged_row(TABLE, older, batch, 100, 3000)])
    # both in one chunk, older last: the newest source position still wins
    staging.upsert_rows(stage_conn, [staging.staged_row(TABLE, newer, batch, 300, 2000),
                                     staging.staged_row(TABLE, older, batch, 250, 2000)])
    assert staging.row_states(stage_conn, "mjzzlxx")[(org, "V00000001")][2] == 300
    flush_batch(stage_conn, front, TABLE, batch, at(day, 18, 1), HOSPITAL)
    assert str(frontend_rows(front, org)["V00000001"][2]) == "200.00"


def test_revoke_after_flush_sets_xgbz_and_revoke_of_unsent_row_is_superseded(dbs, case):
    stage_conn, front = dbs
    org, day = case
    batch = day.isoformat()
    stage(stage_conn, [record(org, 1, at(day, 8)), record(org, 2, at(day, 8))], 10)
    flush_batch(stage_conn, front, TABLE, batch, at(day, 18, 1), HOSPITAL)
    stage(stage_conn, [record(org, 1, at(day, 8), xgbz="1"), record(org, 3, at(day, 8))], 20)
    stage(stage_conn, [record(org, 3, at(day, 8), xgbz="1")], 30)   # never sent, then revoked
    states = staging.row_states(stage_conn, "mjzzlxx", batch)
    assert states[(org, "V00000003")][0] == "superseded" and states[(org, "V00000001")][0] == "pending"
    flush_batch(stage_conn, front, TABLE, batch, at(day, 18, 1, days=1), HOSPITAL)
    rows = frontend_rows(front, org)
    assert rows["V00000001"][1] == "1" and rows["V00000002"][1] == "0" and "V00000003" not in rows


class Crash(RuntimeError):
    pass


def _raise():
    raise Crash("worker died before the front-end commit")


def test_crash_before_frontend_commit_then_rerun_writes_exactly_once(dbs, case):
    stage_conn, front = dbs
    org, day = case
    batch = day.isoformat()
    stage(stage_conn, [record(org, n, at(day, 8)) for n in range(5)], 10)
    with pytest.raises(Crash):
        flush_batch(stage_conn, front, TABLE, batch, at(day, 18, 5), HOSPITAL, before_commit=_raise)
    assert frontend_rows(front, org) == {} and ledger.rows(front, "mjzzlxx", batch) == []
    result = flush_batch(stage_conn, front, TABLE, batch, at(day, 18, 10), HOSPITAL)
    assert result.report_datetime == datetime(day.year, day.month, day.day, 18, 5)  # the planned one, reused
    assert len(frontend_rows(front, org)) == 5 and len(ledger.rows(front, "mjzzlxx", batch)) == 1


def test_connection_killed_mid_flush_then_restart_gives_one_copy(dbs, case):
    stage_conn, _ = dbs
    org, day = case
    batch = day.isoformat()
    stage(stage_conn, [record(org, n, at(day, 8)) for n in range(5)], 10)
    victim = _connect(config.frontend_dsn())
    killer = _connect(config.frontend_dsn())
    killer.autocommit = True

    def kill():
        with killer.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (victim.get_backend_pid(),))

    with pytest.raises(psycopg2.Error):
        flush_batch(stage_conn, victim, TABLE, batch, at(day, 18, 5), HOSPITAL, before_commit=kill)
    killer.close()
    restarted = _connect(config.frontend_dsn())
    try:
        result = flush_batch(stage_conn, restarted, TABLE, batch, at(day, 18, 6), HOSPITAL)
        assert (result.outcome, result.row_count) == ("flushed", 5)
        assert len(frontend_rows(restarted, org)) == 5
        assert [e.row_count for e in ledger.rows(restarted, "mjzzlxx", batch)] == [5]
    finally:
        restarted.close()


def test_crash_after_frontend_commit_is_recovered_from_the_ledger_without_rewriting(dbs, case):
    stage_conn, front = dbs
    org, day = case
    batch = day.isoformat()
    stage(stage_conn, [record(org, n, at(day, 8)) for n in range(3)], 10)
    plan = claim(stage_conn, front, "mjzzlxx", batch, at(day, 18, 5), batch)
    write_frontend(stage_conn, front, TABLE, plan)        # committed; the worker dies before marking
    stage(stage_conn, [record(org, 0, at(day, 8), fee="9.99")], 90)   # a change arrives meanwhile
    result = flush_batch(stage_conn, front, TABLE, batch, at(day, 18, 30), HOSPITAL)
    assert (result.outcome, result.report_datetime) == ("recovered", plan.report_datetime)
    assert len(ledger.rows(front, "mjzzlxx", batch)) == 1
    states = staging.row_states(stage_conn, "mjzzlxx", batch)
    assert states[(org, "V00000000")][0] == "pending"           # the newer version still goes out
    assert states[(org, "V00000001")][0] == "flushed"
    again = flush_batch(stage_conn, front, TABLE, batch, at(day, 18, 31), HOSPITAL)
    assert (again.kind, again.row_count) == ("resubmission", 1)
    assert str(frontend_rows(front, org)["V00000000"][2]) == "9.99"


def test_city_relay_window_across_midnight(dbs, case):
    stage_conn, front = dbs
    org, day = case
    relay = parse({"mode": "city_relay"})
    batch = day.isoformat()
    stage(stage_conn, [record(org, 1, at(day, 8))], 10)
    for refused in (at(day, 21, 59), at(day, 3, days=1)):
        with pytest.raises(WindowClosed):
            flush_batch(stage_conn, front, TABLE, batch, refused, relay)
    result = flush_batch(stage_conn, front, TABLE, batch, at(day, 1, 30, days=1), relay)
    assert result.outcome == "flushed"
    assert frontend_rows(front, org)["V00000001"][0] == datetime(day.year, day.month, day.day, 1, 30) + timedelta(days=1)


def test_frontend_unreachable_at_window_open_retries_then_flushes_when_up(dbs, case):
    stage_conn, front = dbs
    org, day = case
    batch = day.isoformat()
    stage(stage_conn, [record(org, 1, at(day, 8))], 10)
    down = config.frontend_dsn() + " port=1"   # nothing listens on port 1
    now, attempt = at(day, 18), 0
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(down, connect_timeout=2)
    decision = retry_decision(now, at(day, 22), attempt, HOSPITAL)
    assert decision.retry and decision.delay == HOSPITAL.retry_base
    # it comes back: the retry flushes the whole batch
    result = flush_batch(stage_conn, front, TABLE, batch, now + decision.delay, HOSPITAL)
    assert (result.outcome, result.row_count) == ("flushed", 1)
    late = retry_decision(at(day, 21, 59, 58), at(day, 22), 3, HOSPITAL)
    assert not late.retry and "unreachable" in late.alert


def test_forced_flush_bypasses_the_guard_and_is_ledgered(dbs, case):
    stage_conn, front = dbs
    org, day = case
    batch = day.isoformat()
    stage(stage_conn, [record(org, 1, at(day, 8))], 10)
    result = flush_batch(stage_conn, front, TABLE, batch, at(day, 10), HOSPITAL,
                         forced=Forced("ops-test", "province asked for a re-send"))
    [entry] = ledger.rows(front, "mjzzlxx", batch)
    assert (result.kind, entry.kind, entry.operator) == ("forced", "forced", "ops-test")
