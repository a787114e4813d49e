"""The quarantine life cycle and replays in a real staging database (delivery.quarantine, delivery.replay),
with flushes into a real front-end database: one entry per (table, organisation, key, version), resolved by the rows
staged in the same transaction, dismissed by an operator, replayed rows ledgered as `replay` exactly once.
Each test has its own organisation, keys and batch day."""
from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta

import pytest
from hisbridge.catalog import load_catalog
from hisbridge.catalog.sample import sample_records
from hisbridge.chain.batch import assign_batch
from hisbridge.clock import SHANGHAI
from hisbridge.contract import QuarantineEntry
from hisbridge.delivery import ledger, quarantine, replay, staging
from hisbridge.delivery.flush import flush_batch
from hisbridge.delivery.schedule import parse
from support.delivery_dbs import delivery_dbs, delivery_dsns

pytestmark = pytest.mark.stack
TABLE = load_catalog().table("mjzzlxx")
HOSPITAL = parse({})
_CASES = itertools.count(1)


@pytest.fixture(scope="module")
def dbs(module_resources):
    with delivery_dbs(delivery_dsns(module_resources, "qdb")) as pair:
        yield pair


@pytest.fixture
def case():
    n = next(_CASES)
    return f"Q{n:017d}", date(2026, 5, 1) + timedelta(days=7 * n), n


def record(org: str, key: str, day: date) -> dict:
    rec = dict(sample_records(TABLE, 1, seed=len(key))[0])
    rec.update(yljgdm=org, jzlsh=key, scsj=datetime(day.year, day.month, day.day, 10), xgbz="0")
    return rec


def entry(key: str | None, lsn: int, rule: str = "unmapped_code", batch: str | None = None,
          org: str | None = None) -> QuarantineEntry:
    record = {"jzlsh": key} if org is None else {"jzlsh": key, "yljgdm": org}
    return QuarantineEntry(TABLE.name, ({"rule": rule, "field": "xb", "message": "m"},),
                           {"topic": "his.his.op_visit", "lsn": lsn, "commit_time_ms": lsn * 10}, batch,
                           record, "sm3:test", "2026-05-01T10:00:00+08:00", key)


def row(org: str, key: str, day: date, lsn: int, replay_id: str | None = None) -> staging.StagedRow:
    rec = record(org, key, day)
    r = staging.staged_row(TABLE, rec, assign_batch(TABLE, rec).name, lsn, lsn * 10)
    return staging.StagedRow(**{**r.__dict__, "replay": replay_id})


def state_of(stage, key: str) -> list[tuple[str, str | None, str | None]]:
    return [(e.state, e.note, e.actor) for e in quarantine.entries(stage, table=TABLE.name) if e.key == key]


def test_the_same_fact_twice_is_one_entry_and_a_clean_newer_version_resolves_it(dbs, case):
    stage, _ = dbs
    org, day, n = case
    key = f"K{n}A"
    staging.upsert_rows(stage, [], entries=[entry(key, 90), entry(key, 100)])   # two drivers, one record
    staging.upsert_rows(stage, [], entries=[entry(key, 100)])                 # a batch consumed again
    staging.upsert_rows(stage, [], entries=[entry(key, 90, rule="required")])  # an older version, late
    assert state_of(stage, key) == [("open", None, None)]
    assert [(e.version, e.rules) for e in quarantine.entries(stage) if e.key == key] == [("100:1000", ["unmapped_code"])]
    staging.upsert_rows(stage, [row(org, key, day, 200)])
    assert state_of(stage, key) == [("resolved", "superseded", None)]
    staging.upsert_rows(stage, [], entries=[entry(key, 100)])                 # redelivered: stays resolved
    assert state_of(stage, key) == [("resolved", "superseded", None)]


def test_an_entry_arriving_after_its_clean_record_is_resolved_at_once_a_newer_bad_one_stays_open(dbs, case):
    stage, _ = dbs
    org, day, n = case
    key = f"K{n}B"
    staging.upsert_rows(stage, [row(org, key, day, 300)], entries=[entry(key, 300)])
    staging.upsert_rows(stage, [], entries=[entry(key, 400)])
    assert sorted(state_of(stage, key)) == [("open", None, None), ("resolved", "released", None)]


def test_one_key_from_two_hospitals_is_two_entries_each_resolved_by_its_own_hospitals_row(dbs, case):
    stage, _ = dbs
    org, day, n = case
    key, other = f"K{n}H", f"R{org[1:]}"
    staging.upsert_rows(stage, [], entries=[entry(key, 600, org=org),
                                            entry(key, 610, rule="duplicate_key_across_hospitals", org=other)])
    opened = {e.entry["record"]["yljgdm"]: e.rules for e in quarantine.entries(stage, state="open") if e.key == key}
    assert opened == {org: ["unmapped_code"], other: ["duplicate_key_across_hospitals"]}
    staging.upsert_rows(stage, [row(org, key, day, 700)])       # the first hospital's fix
    states = {e.entry["record"]["yljgdm"]: (e.state, e.note) for e in quarantine.entries(stage) if e.key == key}
    assert states == {org: ("resolved", "superseded"), other: ("open", None)}


def test_dismissed_entries_stay_dismissed_and_only_open_ones_count(dbs, case):
    stage, _ = dbs
    org, day, n = case
    batch = assign_batch(TABLE, record(org, "x", day)).name
    keys = [f"K{n}C", f"K{n}D"]
    staging.upsert_rows(stage, [], entries=[entry(k, 500 + i, batch=batch) for i, k in enumerate(keys)])
    (first,) = [e for e in quarantine.entries(stage, table=TABLE.name) if e.key == keys[0]]
    dismissed = quarantine.dismiss(stage, first.id, "tester", "duplicate registration")
    assert (dismissed.state, dismissed.actor, dismissed.note) == ("dismissed", "tester", "duplicate registration")
    with pytest.raises(quarantine.NotDismissable):
        quarantine.dismiss(stage, first.id, "tester", "again")
    staging.upsert_rows(stage, [], entries=[entry(keys[0], 500, batch=batch)])
    assert state_of(stage, keys[0])[0][0] == "dismissed"
    assert quarantine.open_pairs(stage, TABLE.name, batch) == {(keys[1], "unmapped_code")}
    assert ("unmapped_code", TABLE.name, "open", 1) in quarantine.counts(stage, batch=batch)


def test_replayed_rows_go_out_once_as_a_replay_flush_with_operator_and_reason(dbs, case):
    stage, front = dbs
    org, day, n = case
    key, other = f"K{n}E", f"K{n}F"
    staging.upsert_rows(stage, [row(org, other, day, 600)], entries=[entry(key, 610)])
    batch = assign_batch(TABLE, record(org, key, day)).name
    window = datetime(day.year, day.month, day.day, 18, 30, tzinfo=SHANGHAI)
    assert flush_batch(stage, front, TABLE, batch, window, HOSPITAL).kind == "first"
    rid = replay.request(stage, "quarantine", "tester", "value map fixed", {"rule": "unmapped_code"})
    for _ in range(2):                                                         # a replay run twice
        staging.upsert_rows(stage, [row(org, key, day, 610, rid)])
    replay.record_sent(stage, rid, 1)                                          # the sink ran ahead of the command
    assert rid in {r.id for r in replay.in_flight(stage)}                      # its row still waits
    assert state_of(stage, key) == [("resolved", "replayed", rid)]
    done = flush_batch(stage, front, TABLE, batch, window + timedelta(minutes=1), HOSPITAL)
    assert (done.kind, done.row_count) == ("replay", 1)
    rows = ledger.rows(front, TABLE.name, batch)
    assert [(r.kind, r.operator, r.reason) for r in rows][-1] == ("replay", "tester", "value map fixed")
    staging.upsert_rows(stage, [row(org, key, day, 610, rid)])                  # the same version again
    assert flush_batch(stage, front, TABLE, batch, window + timedelta(minutes=2), HOSPITAL).outcome == "nothing"
    assert rid not in {r.id for r in replay.in_flight(stage)}


def test_a_replay_whose_records_all_come_back_unchanged_is_done_once_the_sink_has_seen_them(dbs, case):
    stage, _ = dbs
    org, day, n = case
    keys = [f"K{n}U", f"K{n}V"]
    staging.upsert_rows(stage, [row(org, k, day, 650 + i) for i, k in enumerate(keys)])
    rid = replay.request(stage, "raw", "tester", "mapping unchanged after all", {"since": "2026-02-10"})
    replay.record_sent(stage, rid, 2)
    staging.upsert_rows(stage, [row(org, keys[0], day, 650, rid)])             # the same content: not taken
    assert rid in {r.id for r in replay.in_flight(stage)}                      # one record still to come
    assert staging.upsert_rows(stage, [row(org, keys[1], day, 651, rid)]) == 0
    assert rid not in {r.id for r in replay.in_flight(stage)}


def test_a_batch_request_is_applied_once_and_resends_every_row(dbs, case):
    stage, front = dbs
    org, day, n = case
    keys = [f"K{n}G", f"K{n}H"]
    staging.upsert_rows(stage, [row(org, k, day, 700 + i) for i, k in enumerate(keys)])
    batch = assign_batch(TABLE, record(org, keys[0], day)).name
    window = datetime(day.year, day.month, day.day, 18, 30, tzinfo=SHANGHAI)
    first = flush_batch(stage, front, TABLE, batch, window, HOSPITAL)
    rid = replay.request(stage, "batch", "tester", "province asked", {"table": TABLE.name, "batch": batch})
    assert staging.upsert_rows(stage, [], replays=[(rid, TABLE.name, batch)]) == 2
    assert staging.upsert_rows(stage, [], replays=[(rid, TABLE.name, batch)]) == 0     # redelivered request
    again = flush_batch(stage, front, TABLE, batch, window + timedelta(minutes=1), HOSPITAL)
    assert (first.row_count, again.kind, again.row_count) == (2, "replay", 2)
    assert again.report_datetime > first.report_datetime
    with front, front.cursor() as cur:
        cur.execute('SELECT count(*), count(DISTINCT report_datetime) FROM "mjzzlxx" WHERE yljgdm = %s', (org,))
        assert cur.fetchone() == (2, 1)
