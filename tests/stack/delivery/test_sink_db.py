"""Sink against a real PostgreSQL: staging and front-end databases of this module's own on the stack's
front-end server (removed afterwards). Each test uses its own organisation code and batch day, so the
tests of the module never see each other's rows.
"""
from __future__ import annotations

import itertools
import threading
from dataclasses import replace
from datetime import date, datetime, timedelta

import psycopg2
import pytest
from hisbridge.catalog import load_catalog
from hisbridge.catalog.sample import sample_records
from hisbridge.chain.batch import assign_batch
from hisbridge.clock import SHANGHAI
from hisbridge.delivery import ledger, staging
from hisbridge.delivery.flush import (Forced, WindowClosed, claim, ensure_frontend,
                                      flush_batch, plan_flushes, write_frontend)
from hisbridge.delivery.schedule import parse
from hisbridge.delivery.timer import LoopState, tick
from hisbridge.runtime.sink_io import PgSinkIO
from hisbridge.settings import defaults
from support import wait_for
from support.delivery_dbs import connect, delivery_dbs, delivery_dsns

pytestmark = pytest.mark.stack
TABLE = load_catalog().table("mjzzlxx")
HOSPITAL = parse({})


@pytest.fixture(scope="module")
def dsns(module_resources) -> dict[str, str]:
    return delivery_dsns(module_resources, "sinkdb")


@pytest.fixture(scope="module")
def dbs(dsns):
    with delivery_dbs(dsns) as pair:
        yield pair


@pytest.fixture
def case():
    """A fresh organisation code and a batch day no other test of the module uses."""
    n = next(_CASES)
    return f"T{n:017d}", date(2026, 1, 1) + timedelta(days=7 * n)


_CASES = itertools.count(1)


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
    assert staging.row_states(stage_conn, "mjzzlxx", batch)[(org, "V00000001")][2] == 300
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


def test_connection_killed_mid_flush_then_restart_gives_one_copy(dbs, dsns, case):
    stage_conn, _ = dbs
    org, day = case
    batch = day.isoformat()
    stage(stage_conn, [record(org, n, at(day, 8)) for n in range(5)], 10)
    victim = connect(dsns["frontend"])
    killer = connect(dsns["frontend"])
    killer.autocommit = True

    def kill():
        with killer.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (victim.get_backend_pid(),))

    with pytest.raises(psycopg2.Error):
        flush_batch(stage_conn, victim, TABLE, batch, at(day, 18, 5), HOSPITAL, before_commit=kill)
    killer.close()
    restarted = connect(dsns["frontend"])
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


def test_forced_flush_bypasses_the_guard_and_is_ledgered(dbs, case):
    stage_conn, front = dbs
    org, day = case
    batch = day.isoformat()
    stage(stage_conn, [record(org, 1, at(day, 8))], 10)
    result = flush_batch(stage_conn, front, TABLE, batch, at(day, 10), HOSPITAL,
                         forced=Forced("ops-test", "province asked for a re-send"))
    [entry] = ledger.rows(front, "mjzzlxx", batch)
    assert (result.kind, entry.kind, entry.operator) == ("forced", "forced", "ops-test")


def _checksum(org: str, keys) -> str:
    """The ledger checksum recomputed independently: md5 over org\x1fkey sorted bytewise, \x1e-joined."""
    import hashlib
    return hashlib.md5("\x1e".join(sorted(f"{org}\x1f{k}" for k in keys)).encode()).hexdigest()


def test_first_delivery_meeting_an_existing_key_falls_back_to_upsert_with_the_same_content(dbs, case, caplog):
    stage_conn, front = dbs
    org, day = case
    d, d1 = day.isoformat(), (day + timedelta(days=1)).isoformat()
    stage(stage_conn, [record(org, n, at(day, 8, n)) for n in (1, 2, 3)], 10)
    first_d = flush_batch(stage_conn, front, TABLE, d, at(day, 18, 5), HOSPITAL)
    # record 2's batch time moves to D 19:00 → batch D+1, whose FIRST delivery now meets a key the
    # front-end already holds (from D's flush) — the direct COPY fails and must fall back to the upsert
    moved = stage(stage_conn, [record(org, 2, at(day, 19), fee="22.22"), record(org, 4, at(day, 20)),
                               record(org, 5, at(day, 21))], 100)
    assert moved == [d1] * 3
    with caplog.at_level("INFO", logger="hisbridge.delivery.flush"):
        second = flush_batch(stage_conn, front, TABLE, d1, at(day, 18, 30, days=1), HOSPITAL)
    assert any("upserting instead" in r.getMessage() for r in caplog.records), "the fallback was not taken"
    assert (second.outcome, second.kind, second.row_count) == ("flushed", "first", 3)
    rows = frontend_rows(front, org)
    assert set(rows) == {f"V{n:08d}" for n in (1, 2, 3, 4, 5)}
    assert {k for k, r in rows.items() if r[0] == second.report_datetime} == {"V00000002", "V00000004", "V00000005"}
    assert {k for k, r in rows.items() if r[0] == first_d.report_datetime} == {"V00000001", "V00000003"}
    assert str(rows["V00000002"][2]) == "22.22" and rows["V00000002"][3] == at(day, 19).replace(tzinfo=None)
    [entry] = ledger.rows(front, "mjzzlxx", d1)
    assert (entry.kind, entry.row_count, entry.report_datetime) == ("first", 3, second.report_datetime)
    assert entry.checksum == _checksum(org, ["V00000002", "V00000004", "V00000005"])
    assert [e.row_count for e in ledger.rows(front, "mjzzlxx", d)] == [3]       # D's ledger untouched
    assert {**_states(stage_conn, org, d), **_states(stage_conn, org, d1)} == {
        "V00000001": ("flushed", first_d.report_datetime), "V00000003": ("flushed", first_d.report_datetime),
        "V00000002": ("flushed", second.report_datetime), "V00000004": ("flushed", second.report_datetime),
        "V00000005": ("flushed", second.report_datetime)}
    assert not [b for b in staging.staged_batches(stage_conn) if (b.table, b.batch) in {("mjzzlxx", d), ("mjzzlxx", d1)}]
    # a later update of a row the fallback carried is a resubmission of D+1 in the next window
    stage(stage_conn, [record(org, 4, at(day, 20), fee="44.44")], 200)
    third = flush_batch(stage_conn, front, TABLE, d1, at(day, 18, 1, days=2), HOSPITAL)
    assert (third.kind, third.row_count) == ("resubmission", 1)
    rows = frontend_rows(front, org)
    assert str(rows["V00000004"][2]) == "44.44" and rows["V00000004"][0] == third.report_datetime
    assert rows["V00000005"][0] == second.report_datetime
    assert [(e.kind, e.row_count) for e in ledger.rows(front, "mjzzlxx", d1)] == [("first", 3), ("resubmission", 1)]


def _states(conn, org: str, batch: str) -> dict[str, tuple]:
    return {k: (s, r) for (o, k), (s, r, _) in staging.row_states(conn, "mjzzlxx", batch).items() if o == org}


def test_rows_staged_after_a_plans_cut_stay_pending_and_revokes_of_flushed_rows_go_out(dbs, dsns, case):
    stage_conn, front = dbs
    org, day = case
    batch = day.isoformat()
    writer = connect(dsns["staging"])     # a second staging session: the sink agent's, in effect
    try:
        stage(stage_conn, [record(org, n, at(day, 8, n)) for n in (1, 2, 3)], 10)
        first = flush_batch(stage_conn, front, TABLE, batch, at(day, 18, 5), HOSPITAL)
        assert first.row_count == 3
        stage(writer, [record(org, 1, at(day, 8, 1), fee="1.11"), record(org, 4, at(day, 9))], 20)   # late
        plan = claim(stage_conn, front, "mjzzlxx", batch, at(day, 18, 5, days=1), (day + timedelta(days=1)).isoformat())
        # after the cut, before the front-end write: a revoke of flushed row 2, a newer version of row 4
        # (whose older version the plan covers) and another late row
        stage(writer, [record(org, 2, at(day, 8, 2), xgbz="1"), record(org, 4, at(day, 9), fee="4.44"),
                       record(org, 5, at(day, 10))], 30)

        def meanwhile():   # during the front-end transaction, after staging was read: row 1 revoked
            stage(writer, [record(org, 1, at(day, 8, 1), xgbz="1")], 40)

        second = flush_batch(stage_conn, front, TABLE, batch, at(day, 18, 6, days=1), HOSPITAL,
                             before_commit=meanwhile)
        assert (second.report_datetime, second.kind, second.row_count) == (plan.report_datetime, "resubmission", 1)
        rows = frontend_rows(front, org)
        assert set(rows) == {"V00000001", "V00000002", "V00000003"}          # row 4's old version: not sent
        assert rows["V00000001"][0] == second.report_datetime and str(rows["V00000001"][2]) == "1.11"
        assert rows["V00000002"][1] == "0"
        states = _states(stage_conn, org, batch)
        assert {k: s for k, (s, _) in states.items()} == {
            "V00000001": "pending", "V00000002": "pending", "V00000003": "flushed", "V00000004": "pending",
            "V00000005": "pending"}
        assert states["V00000003"][1] == first.report_datetime
        [mine] = [b for b in staging.staged_batches(stage_conn) if (b.table, b.batch) == ("mjzzlxx", batch)]
        assert (mine.pending, mine.flushed_before) == (4, True)
        # the next flush carries exactly what the cut left behind, the revokes as xgbz = '1'
        third = flush_batch(stage_conn, front, TABLE, batch, at(day, 18, 1, days=2), HOSPITAL)
        assert (third.kind, third.row_count) == ("resubmission", 4)
        rows = frontend_rows(front, org)
        assert {k: r[1] for k, r in rows.items()} == {"V00000001": "1", "V00000002": "1", "V00000003": "0",
                                                      "V00000004": "0", "V00000005": "0"}
        assert str(rows["V00000004"][2]) == "4.44"
        assert {k for k, r in rows.items() if r[0] == third.report_datetime} == {"V00000001", "V00000002",
                                                                                "V00000004", "V00000005"}
        assert set(_states(stage_conn, org, batch).values()) == {("flushed", first.report_datetime),
                                                                 ("flushed", third.report_datetime)}
        assert [(e.kind, e.row_count) for e in ledger.rows(front, "mjzzlxx", batch)] == [
            ("first", 3), ("resubmission", 1), ("resubmission", 4)]
        assert ledger.rows(front, "mjzzlxx", batch)[2].checksum == _checksum(
            org, ["V00000001", "V00000002", "V00000004", "V00000005"])
    finally:
        writer.close()


def test_revoke_of_an_unsent_row_is_superseded_while_another_batchs_flush_is_in_flight(dbs, case):
    stage_conn, front = dbs
    org, day = case
    d, d1 = day.isoformat(), (day + timedelta(days=1)).isoformat()
    stage(stage_conn, [record(org, 1, at(day, 8)), record(org, 2, at(day, 19))], 10)    # batches D and D+1
    # D+1's plan is claimed (its cut is above row 1's seq too) but not yet written
    plan = claim(stage_conn, front, "mjzzlxx", d1, at(day, 18, 5, days=1), d1)
    stage(stage_conn, [record(org, 1, at(day, 8), xgbz="1")], 20)    # row 1 (batch D) was never sent
    assert _states(stage_conn, org, d)["V00000001"][0] == "superseded"
    result = flush_batch(stage_conn, front, TABLE, d1, at(day, 18, 6, days=1), HOSPITAL)
    assert (result.report_datetime, result.row_count) == (plan.report_datetime, 1)
    flush_batch(stage_conn, front, TABLE, d, at(day, 18, 7, days=1), HOSPITAL)          # D: nothing to send
    assert set(frontend_rows(front, org)) == {"V00000002"} and ledger.rows(front, "mjzzlxx", d) == []


TRICKY = ["tab\there", "line\nbreak and \r return", r"back\slash \N not null", "\x01\x02\x1f controls",
          '"quoted", comma; 中文 \\t']


def _carried(front, org: str) -> dict[str, dict]:
    cols = ", ".join(TABLE.carried_names)
    with front, front.cursor() as cur:
        cur.execute(f"SELECT {cols} FROM mjzzlxx WHERE yljgdm = %s", (org,))
        return {r[1]: dict(zip(TABLE.carried_names, r)) for r in cur.fetchall()}


def _tricky_records(org: str, day: date) -> list[dict]:
    recs = []
    for n, text in enumerate(TRICKY, 1):
        rec = record(org, n, at(day, 9, n))
        rec.update(zs=text, gzdw=text[::-1], gj=None)
        recs.append(rec)
    return recs


def test_flushed_rows_hold_every_staged_value_exactly(dbs, case):
    stage_conn, front = dbs
    org, day = case
    recs = _tricky_records(org, day)
    stage(stage_conn, recs, 10)
    result = flush_batch(stage_conn, front, TABLE, day.isoformat(), at(day, 18, 5), HOSPITAL)
    assert (result.outcome, result.row_count) == ("flushed", len(recs))
    got = _carried(front, org)
    assert got == {r["jzlsh"]: {n: r[n] for n in TABLE.carried_names} for r in recs}


def test_rows_staged_without_a_line_get_it_from_their_payload_when_flushed(dbs, case, caplog):
    stage_conn, front = dbs
    org, day = case
    recs = _tricky_records(org, day)
    rows = [staging.staged_row(TABLE, rec, day.isoformat(), 10 + i, 10 + i) for i, rec in enumerate(recs)]
    staging.upsert_rows(stage_conn, [staging.StagedRow(**{**r.__dict__, "line": None, "line_of": None})
                                     for r in rows])                 # an older version's rows

    def lines() -> list:
        with stage_conn, stage_conn.cursor() as cur:
            cur.execute("SELECT line FROM hisbridge.staged WHERE tbl = 'mjzzlxx' AND org = %s ORDER BY bkey", (org,))
            return [r[0] for r in cur.fetchall()]

    assert lines() == [None] * len(recs)
    with caplog.at_level("INFO", logger="hisbridge.delivery.flush"):
        result = flush_batch(stage_conn, front, TABLE, day.isoformat(), at(day, 18, 5), HOSPITAL)
    assert any(f"COPY line of {len(recs)} rows" in r.getMessage() for r in caplog.records)
    assert (result.outcome, result.row_count) == ("flushed", len(recs))
    assert _carried(front, org) == {r["jzlsh"]: {n: r[n] for n in TABLE.carried_names} for r in recs}
    assert lines() == [r.line for r in sorted(rows, key=lambda r: r.bkey)]


def test_rows_staged_before_a_catalog_revision_reordered_the_fields_land_in_their_own_columns(dbs, case, caplog):
    """A revision that only reorders two fields of the same type: a line staged before it, streamed as it was,
    would put each value in the other's column without a word."""
    stage_conn, front = dbs
    org, day = case
    recs = _tricky_records(org, day)
    stage(stage_conn, recs, 10)                             # lines made for the catalog before the revision
    fields = list(TABLE.fields)
    i, j = TABLE.field_names.index("xzz"), TABLE.field_names.index("gzdw")
    fields[i], fields[j] = fields[j], fields[i]
    revised = replace(TABLE, fields=tuple(fields))
    assert revised.carried_names != TABLE.carried_names and all(r["xzz"] != r["gzdw"] for r in recs)
    with caplog.at_level("INFO", logger="hisbridge.delivery.flush"):
        result = flush_batch(stage_conn, front, revised, day.isoformat(), at(day, 18, 5), HOSPITAL)
    assert any(f"COPY line of {len(recs)} rows" in r.getMessage() for r in caplog.records)
    assert (result.outcome, result.row_count) == ("flushed", len(recs))
    assert _carried(front, org) == {r["jzlsh"]: {n: r[n] for n in TABLE.carried_names} for r in recs}


def test_a_table_whose_front_end_refuses_its_flush_holds_back_no_other_table(dbs, dsns, case, tmp_path):
    """basy_zd's front-end table lacks a column (renamed by hand here; a catalog revision nobody migrated in
    production): its flush is refused at every step and alerted once, while mjzzlxx — planned after it — goes
    out in the same step. Once the column is back, basy_zd goes out too."""
    stage_conn, front = dbs
    org, day = case
    child = load_catalog().table("basy_zd")
    visits = [record(org, n, at(day, 9, n)) for n in (1, 2)]
    diagnoses = []
    for n, rec in enumerate(sample_records(child, 2, seed=7), 1):
        rec.update(yljgdm=org, bah=f"B{org}{n}", gdsj=at(day, 10, n).replace(tzinfo=None))
        diagnoses.append(staging.staged_row(child, rec, assign_batch(child, rec).name, 100 + n, 100 + n))
    topic = f"sinkdb{org}.core"
    stage(stage_conn, visits, 10)
    staging.upsert_rows(stage_conn, diagnoses, progress={("c", topic, 0): int(at(day, 18, 30).timestamp() * 1000)})
    refused: list[str] = []
    io = PgSinkIO({t.name: t for t in (TABLE, child)}, [topic], HOSPITAL, dsns["staging"], dsns["frontend"],
                  defaults().paths.frontend_sql / "frontend.sql", f"sinkdbtest{org}", on_failed=refused.append)
    column = child.carried_names[-1]
    with front, front.cursor() as cur:
        cur.execute(f'ALTER TABLE basy_zd RENAME COLUMN "{column}" TO "{column}_gone"')
    try:
        state = LoopState()
        first = tick(at(day, 18, 5), state, io, HOSPITAL)        # other tests' batches left pending may go too
        assert [(r.table, r.outcome) for r in first.flushed if r.batch == str(day)] == [("mjzzlxx", "flushed")]
        assert len(first.alerts) == 1 and first.alerts[0].startswith(f"basy_zd batch {day} could not be flushed")
        assert f'column "{column}" of relation "basy_zd" does not exist' in first.alerts[0]
        again = tick(at(day, 18, 6), state, io, HOSPITAL)
        assert [r for r in again.flushed if r.batch == str(day)] == [] and again.alerts == []
        assert refused == ["basy_zd", "basy_zd"]
        assert set(frontend_rows(front, org)) == {v["jzlsh"] for v in visits}
    finally:
        with front, front.cursor() as cur:
            cur.execute(f'ALTER TABLE basy_zd RENAME COLUMN "{column}_gone" TO "{column}"')
    last = tick(at(day, 18, 7), state, io, HOSPITAL)
    io.close()
    assert [(r.table, r.outcome, r.row_count) for r in last.flushed if r.batch == str(day)] == [
        ("basy_zd", "flushed", 2)]


def _holds_staged_lock(conn, pid: int, granted: bool) -> bool:
    """Whether backend `pid` holds (granted) or waits for (not granted) a lock on hisbridge.staged."""
    with conn.cursor() as cur:
        cur.execute("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = %s AND relation = 'hisbridge.staged'::regclass "
                    "AND granted = %s)", (pid, granted))
        return cur.fetchone()[0]


def test_a_schema_change_queued_behind_a_running_flush_waits_for_it_instead_of_deadlocking(dbs, dsns, case,
                                                                                          monkeypatch):
    # The flush reads staging on two sessions in one snapshot and its caller waits for both. An ALTER of
    # hisbridge.staged queued after the stream's lock and before the checksum read's would queue that read
    # behind itself while it waits for the stream's transaction: the caller would wait forever (the CI hang).
    stage_conn, front = dbs
    org, day = case
    batch = day.isoformat()
    stage(stage_conn, [record(org, n, at(day, 8)) for n in range(5)], 10)
    plan = claim(stage_conn, front, "mjzzlxx", batch, at(day, 18, 5), batch)
    watcher, ddl = connect(dsns["staging"]), connect(dsns["staging"])
    watcher.autocommit = True
    outcome: list[str] = []

    def alter() -> None:
        try:
            with ddl, ddl.cursor() as cur:
                cur.execute("SET LOCAL lock_timeout = '20s'")   # the old flush would hold it until then
                cur.execute("ALTER TABLE hisbridge.staged ADD COLUMN IF NOT EXISTS line text")
            outcome.append("altered")
        except psycopg2.errors.LockNotAvailable:
            outcome.append("lock timeout")

    real, altering = staging.key_checksum, threading.Thread(target=alter)

    def checksum_behind_a_queued_alter(cur, *args):
        wait_for("the stream holds its lock", lambda: _holds_staged_lock(watcher, stage_conn.get_backend_pid(), True),
                 timeout=20, every=0.05)
        altering.start()
        wait_for("the ALTER waits for the stream", lambda: _holds_staged_lock(watcher, ddl.get_backend_pid(), False),
                 timeout=20, every=0.05)
        return real(cur, *args)

    monkeypatch.setattr(staging, "key_checksum", checksum_behind_a_queued_alter)
    try:
        row, written = write_frontend(stage_conn, front, TABLE, plan)
        altering.join()
    finally:
        watcher.close()
        ddl.close()
    assert written and row.row_count == 5 and len(frontend_rows(front, org)) == 5
    assert outcome == ["altered"]       # it ran once the flush committed, not after giving up


def test_ensuring_a_current_schema_takes_no_lock_a_writer_or_a_flush_holds(dbs, dsns, case):
    org, _ = case                          # dbs: both schemas applied already
    writer = connect(dsns["staging"])
    try:
        with writer.cursor() as cur:       # a staging write in flight: ROW EXCLUSIVE on staged until it ends
            cur.execute("UPDATE hisbridge.staged SET status = status WHERE org = %s", (org,))
        fresh = psycopg2.connect(dsns["staging"], connect_timeout=5, options="-c lock_timeout=2000")
        fresh_front = psycopg2.connect(dsns["frontend"], connect_timeout=5, options="-c lock_timeout=2000")
        holder = connect(dsns["frontend"])
        try:
            with holder.cursor() as cur:   # a flush's front-end transaction reads the ledger until it commits
                cur.execute("SELECT count(*) FROM hisbridge.ledger")
            staging.ensure_schema(fresh)   # ADD COLUMN IF NOT EXISTS / CREATE INDEX would wait, then time out
            ensure_frontend(fresh_front)   # DROP/ADD CONSTRAINT would take ACCESS EXCLUSIVE on the ledger
        finally:
            for conn in (fresh, fresh_front, holder):
                conn.close()
    finally:
        writer.rollback()
        writer.close()


def test_a_table_dropped_by_hand_is_made_again_at_the_next_connect(module_resources):
    """The applied-scripts record alone would have kept a dropped table away until the next version."""
    fresh = delivery_dsns(module_resources, "ddldrop")
    conns = {name: connect(dsn) for name, dsn in fresh.items()}
    dropped = (("staging", "hisbridge.flush_plan"), ("frontend", "hisbridge.ledger"))

    def ensure() -> None:
        staging.ensure_schema(conns["staging"])
        ledger.ensure_frontend_ledger(conns["frontend"])
    try:
        ensure()
        for name, table in dropped:
            with conns[name], conns[name].cursor() as cur:
                cur.execute(f"DROP TABLE {table}")
        ensure()
        for name, table in dropped:
            with conns[name], conns[name].cursor() as cur:
                cur.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
                assert cur.fetchone()[0], (name, table)
    finally:
        for conn in conns.values():
            conn.close()
