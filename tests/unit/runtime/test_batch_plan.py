"""One consumed batch planned without Kafka: reference rows applied before the change that needs them,
records held for a missing reference row (retry on arrival, quarantine after the wait), the raw topics the
mapping names, the state a restart restores. Dicts stand in for the worker's stores; envelopes are real
Debezium JSON-converter messages (tests/support/debezium.py)."""
from __future__ import annotations

from typing import Any
from datetime import datetime

import pytest
from fixtures.mapping import his_rows as h
from hisbridge.catalog import load_catalog
from hisbridge.chain import avro, crypto
from hisbridge.chain.chain import CoreRecord, transform
from hisbridge.chain.mapping import load_mapping
from hisbridge.clock import SHANGHAI
from hisbridge.contract import QuarantineEntry, heartbeat_topic, raw_topics
from hisbridge.runtime.batch_plan import (FATES, batch_close_ms, plan_batch,
                                          plan_expiry, plan_present,
                                          plan_references, release_all)
from hisbridge.runtime.ordering import RawEvent
from hisbridge.state.codec import CodedStore, LoggedStore
from hisbridge.state.held import HeldRecords
from hisbridge.state.lookups import (ReferenceStore, TableLookups,
                                     lookup_topics)
from support import FIXTURES
from support.debezium import Feed

CATALOG = load_catalog()

MAPPING = load_mapping(CATALOG, FIXTURES / "mapping" / "test_hospital.yaml")

KEY = crypto.parse_key("0123456789abcdeffedcba9876543210", "test")

WAIT_MS = 5_000

def run(message, give_up: bool):
    """As the agent runs it: records left Unfinished for plan_batch / plan_expiry to finish together."""
    return transform(message, catalog=CATALOG, mapping=MAPPING, lookups=TableLookups(STORE["lookups"],
                                                                                     MAPPING.lookups),
                     key=KEY, give_up=give_up, defer=True)

STORE: dict[str, Any] = {}

@pytest.fixture(autouse=True)
def stores():
    """Lookups as a plain dict; held records over a raw dict (what the held-records topic holds) — PENDING is
    that raw dict, so the tests see what a restart would recover."""
    STORE["lookups"], STORE["raw"] = ReferenceStore(), {}
    STORE["pending"] = HeldRecords(CodedStore(STORE["raw"]))
    yield STORE

def pending() -> HeldRecords:
    return STORE["pending"]

def raw_pending() -> dict:
    return STORE["raw"]

def expiry(now_ms: int):
    return plan_expiry(pending=pending(), run=run, now_ms=now_ms, wait_ms=WAIT_MS)

def batch(events, now_ms: int = 10_000):
    return plan_batch(events, mapping=MAPPING, lookups=STORE["lookups"], pending=pending(), run=run, now_ms=now_ms)

def reference_events(feed: Feed, patient: bool = True) -> list[RawEvent]:
    events = [feed.event("dept_dict", h.dept()), feed.event("staff_dict", h.staff()),
              feed.event("op_register", h.register())]
    return events + ([feed.event("pat_master", h.patient())] if patient else [])

def test_raw_topics_come_from_the_mapping_sources_not_from_code():
    topics = raw_topics("his", MAPPING.sources)
    assert "his.his.op_visit" in topics and "his.his.pat_master" in topics and "his.his.mr_diagnosis" in topics
    assert topics == sorted(set(topics))
    assert len(topics) == len(set(MAPPING.by_source) | MAPPING.lookup_sources)
    assert heartbeat_topic("his") == "__debezium-heartbeat.his"

def test_reference_rows_are_applied_before_the_change_that_needs_them_in_the_same_batch():
    feed = Feed()
    plan = batch(reference_events(feed) + [feed.event("op_diagnosis", h.op_diagnosis()),
                                           feed.event("op_visit", h.visit())])
    records = [o for o in plan.outputs if isinstance(o, CoreRecord)]
    # the diagnosis drove first and waited for its visit; the visit's arrival released it, then drove itself
    assert [r.key for r in records] == ["V0001", "V0001"] and records[0].value == records[1].value
    assert raw_pending() and plan.release     # released only by release_all, after the produce acks
    release(plan)
    assert raw_pending() == {} and len(pending()) == 0

def test_a_visit_waits_for_its_patient_and_goes_out_when_the_patient_arrives():
    feed = Feed()
    first = batch(reference_events(feed, patient=False) + [feed.event("op_diagnosis", h.op_diagnosis()),
                                                            feed.event("op_visit", h.visit(), commit_ms=2_000)])
    release(first)
    assert [o for o in first.outputs if isinstance(o, CoreRecord)] == [] and first.parked >= 1
    assert pending().oldest_commit() == 1_000          # the diagnosis (commit 1000) waits too
    second = batch([feed.event("pat_master", h.patient())], now_ms=12_000)
    records = [o for o in second.outputs if isinstance(o, CoreRecord)]
    assert records and {r.key for r in records} == {"V0001"}
    release(second)
    assert raw_pending() == {} and pending().oldest_commit() is None

def test_a_record_held_twice_after_a_crash_is_held_once():
    feed = Feed()
    events = reference_events(feed, patient=False) + [feed.event("op_diagnosis", h.op_diagnosis()),
                                                      feed.event("op_visit", h.visit())]
    batch(events)
    held = dict(raw_pending())
    again = batch(events)          # the same batch consumed again (offsets were not committed)
    assert again.parked == 0 and raw_pending() == held

def test_a_patient_that_never_arrives_is_quarantined_after_the_wait_with_the_missing_key():
    feed = Feed()
    release(batch(reference_events(feed, patient=False)
                                 + [feed.event("op_diagnosis", h.op_diagnosis()),
                                    feed.event("op_visit", h.visit())], now_ms=10_000))
    early = expiry(10_000 + WAIT_MS - 1)
    assert early.outputs == [] and early.release == []
    late = expiry(10_000 + WAIT_MS)
    assert late.outputs and all(isinstance(o, QuarantineEntry) for o in late.outputs)
    assert {o.rules[0] for o in late.outputs} == {"missing_lookup"}
    assert all("patient[P0001]" in o.reasons[0]["message"] and o.key == "V0001" for o in late.outputs)
    release(late)
    # still held (the row may come days later), but no longer holding the watermark, and given up once
    assert len(pending()) == 2 and pending().oldest_commit() is None and pending().waiting()[1] == 2
    assert expiry(10_000 + 10 * WAIT_MS).outputs == []


def test_a_patient_arriving_after_the_give_up_releases_the_record_as_it_would_have_been():
    feed = Feed()
    release(batch(reference_events(feed, patient=False) + [feed.event("op_diagnosis", h.op_diagnosis()),
                                                            feed.event("op_visit", h.visit())], now_ms=10_000))
    release(expiry(10_000 + WAIT_MS))
    late = batch([feed.event("pat_master", h.patient())], now_ms=99_000_000)
    assert {o.key for o in late.outputs if isinstance(o, CoreRecord)} == {"V0001"}
    release(late)
    assert len(pending()) == 0


def test_a_waiting_record_holds_until_everything_else_passed_its_batch_close():
    feed = Feed()
    tables = CATALOG.tables
    events = reference_events(feed, patient=False) + [feed.event("op_diagnosis", h.op_diagnosis()),
                                                      feed.event("op_visit", h.visit())]
    release(plan_batch(events, mapping=MAPPING, lookups=STORE["lookups"], pending=pending(), run=run,
                       now_ms=10_000, close_of=lambda w: batch_close_ms(tables, 600_000, w)))
    # visit 2026-03-01 10:30 local → batch 2026-03-01, closing at 18:00 + 10 min grace
    close = int(datetime(2026, 3, 1, 18, 10, tzinfo=SHANGHAI).timestamp() * 1000)
    assert {held.close_ms for _, held in pending().at("patient", "P0001")} == {close}
    never = plan_expiry(pending=pending(), run=run, now_ms=10**13, wait_ms=0, free_mark_ms=close - 1)
    assert never.outputs == []            # no operator bound: only the batch's close gives up on it
    closed = plan_expiry(pending=pending(), run=run, now_ms=10_000, wait_ms=0, free_mark_ms=close)
    assert {r for o in closed.outputs for r in o.rules} == {"missing_lookup"} and closed.given_up

def test_delete_revokes_and_removes_the_reference_row():
    feed = Feed()
    plan = batch(reference_events(feed) + [feed.event("op_diagnosis", h.op_diagnosis()),
                                           feed.event("op_visit", h.visit()),
                                           feed.event("op_visit", None, op="d", before=h.visit())])
    records = [o for o in plan.outputs if isinstance(o, CoreRecord)]
    schemas = avro.schemas_by_fingerprint([avro.load_schema("mjzzlxx")])
    revoke_flags = [(r.key, avro.decode(r.value, schemas)["xgbz"]) for r in records]
    assert revoke_flags == [("V0001", "0"), ("V0001", "0"), ("V0001", "1")]
    assert "visit\x1eV0001" not in STORE["lookups"]

def test_tombstones_are_skipped_and_heartbeats_and_commits_are_tracked():
    feed = Feed()
    plan = batch([feed.event("dept_dict", h.dept(), commit_ms=5_000),
                  RawEvent("his.his.dept_dict", 0, 1, b"{}", None), feed.heartbeat(9_000, offset=3)])
    assert plan.outputs == [] and plan.heartbeats == {"his": 9_000}
    assert plan.commits == {("his.his.dept_dict", 0): 5_000, ("__debezium-heartbeat.his", 0): 9_000}
    assert plan.offsets[("his.his.dept_dict", 0)] == 1

def test_an_unreadable_envelope_is_quarantined_not_raised():
    plan = batch([RawEvent("his.his.op_visit", 0, 0, None, b"{not json")])
    assert len(plan.outputs) == 1 and plan.outputs[0].rules == ["decode_error"]

def test_a_record_still_missing_another_row_is_held_again_with_its_first_wait_time():
    feed = Feed()
    events = [feed.event("dept_dict", h.dept()), feed.event("staff_dict", h.staff()),
              feed.event("op_diagnosis", h.op_diagnosis()), feed.event("op_visit", h.visit())]
    release(batch(events, now_ms=10_000))
    first_keys = set(raw_pending())
    arrived = batch([feed.event("op_register", h.register())] if any(k.startswith("register") for k in first_keys)
                    else [feed.event("pat_master", h.patient())], now_ms=13_000)
    assert [o for o in arrived.outputs if isinstance(o, CoreRecord)] == []
    release(arrived)
    assert raw_pending() and set(raw_pending()).isdisjoint(first_keys)      # moved to the other key
    assert expiry(10_000 + WAIT_MS - 1).outputs == []
    late = expiry(10_000 + WAIT_MS)
    assert late.outputs and {o.rules[0] for o in late.outputs} == {"missing_lookup"}

def test_held_records_index_is_rebuilt_from_the_store_after_a_restart():
    feed = Feed()
    release(batch(reference_events(feed, patient=False)
                                 + [feed.event("op_diagnosis", h.op_diagnosis()),
                                    feed.event("op_visit", h.visit(), commit_ms=3_000)], now_ms=10_000))
    STORE["pending"] = HeldRecords(CodedStore(raw_pending()))     # a new worker over the recovered table
    assert len(pending()) == 2 and pending().oldest_commit() == 1_000
    plan = batch([feed.event("pat_master", h.patient())], now_ms=11_000)
    assert {o.key for o in plan.outputs if isinstance(o, CoreRecord)} == {"V0001"}
    release(plan)
    assert raw_pending() == {} and len(pending()) == 0

def test_the_reference_topics_read_in_full_rebuild_the_rows_the_running_worker_kept():
    """Every worker reads the reference tables' raw topics in full into its store (plan_references): an
    update, a delete with its tombstone and an undecodable message there give the rows a worker that
    planned the same messages as batches holds."""
    feed = Feed()
    events = reference_events(feed) + [
        feed.event("pat_master", h.patient(phone="13700137000"), op="u", before=h.patient()),
        feed.event("staff_dict", None, op="d", before=h.staff()),
        RawEvent("his.his.staff_dict", 0, 9, b'{"id": 1}', None),       # the tombstone after the delete
        RawEvent("his.his.dept_dict", 0, 9, b'{"id": 1}', b"{not json"),
    ]
    batch(events)
    assert set(lookup_topics(MAPPING, "his")) >= {e.topic for e in events}
    rebuilt = ReferenceStore()
    plan_references(events, mapping=MAPPING, lookups=rebuilt, pending=pending(), run=run)
    assert dict(rebuilt) == dict(STORE["lookups"])
    first = ReferenceStore()
    plan_references(events[:4], mapping=MAPPING, lookups=first, pending=pending(), run=run)
    assert set(rebuilt) == set(first) - {k for k in first if k.startswith("staff\x1e")}
    assert len(first) == 4 and len(rebuilt) == 3
    assert [row["phone"] for row in rebuilt.values() if "phone" in row] == ["13700137000"]


def test_a_held_record_whose_row_is_already_in_the_store_goes_out_when_its_partition_is_adopted():
    """A partition taken over from another worker: its held records come with it, and those whose row the
    store already holds (it arrived while the other worker owned the partition) are retried at once."""
    feed = Feed()
    release(batch(reference_events(feed, patient=False) + [feed.event("op_diagnosis", h.op_diagnosis()),
                                                            feed.event("op_visit", h.visit())]))
    assert len(pending()) == 2
    plan_references([feed.event("pat_master", h.patient())], mapping=MAPPING, lookups=STORE["lookups"],
                    pending=HeldRecords(CodedStore({})), run=run)          # the store learnt the row elsewhere
    plan = plan_present(lookups=STORE["lookups"], pending=pending(), run=run)
    assert {o.key for o in plan.outputs if isinstance(o, CoreRecord)} == {"V0001"} and len(plan.release) == 2


def test_every_message_of_a_batch_gets_one_fate():
    feed = Feed()
    events = reference_events(feed) + [feed.event("op_diagnosis", h.op_diagnosis()), feed.event("op_visit", h.visit()),
                                       RawEvent("his.his.staff_dict", 0, 90, b'{"id": 1}', None), feed.heartbeat(9_000, 91)]
    plan = batch(events)
    assert len(plan.fates) == len(events) and all(f and set(f) <= FATES for f in plan.fates.values())
    assert plan.counts["lookup"] == 4 and plan.counts["skip:tombstone"] == 1 and plan.counts["skip:heartbeat"] == 1


def test_held_records_written_through_to_their_topic_come_back_after_a_restart():
    """The worker keeps held records in a LoggedStore and produces its writes (a release is a tombstone)
    to a compacted topic after every batch; a restarted worker reads that topic back."""
    rows = LoggedStore()
    STORE["pending"] = HeldRecords(CodedStore(rows))
    feed = Feed()
    first = batch(reference_events(feed, patient=False) + [feed.event("op_diagnosis", h.op_diagnosis()),
                                                           feed.event("op_visit", h.visit(), commit_ms=3_000)])
    release(first)
    topic = [("held", key.encode(), value) for key, value in rows.drain()]
    assert len(rows) == 2 and rows.drain() == []       # drained: the next batch produces only its own writes
    restarted = LoggedStore()
    restarted.restore(topic)
    assert restarted.rows == rows.rows and restarted.writes == []
    STORE["pending"] = HeldRecords(CodedStore(restarted))
    plan = batch([feed.event("pat_master", h.patient())], now_ms=11_000)
    release(plan)
    assert {o.key for o in plan.outputs if isinstance(o, CoreRecord)} == {"V0001"}
    released = [("held", key.encode(), value) for key, value in restarted.drain()]
    assert [value for _, _, value in released] == [None, None]             # both released: tombstones
    topic += released
    again = LoggedStore()
    again.restore(topic)
    assert again.rows == {}


def release(plan) -> None:
    """What the worker does once a plan's outputs are acknowledged."""
    release_all(pending(), plan)
