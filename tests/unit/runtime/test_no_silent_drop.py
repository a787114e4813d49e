"""No silent drop: every raw message the transform's planning path consumes ends as a core record, a
quarantine entry, a held record (which ends as one of those after its wait), a reference-row update, or a
skip with a counted reason — the named bad inputs one by one, then ≥ 10,000 generated envelopes. Every
quarantine entry names a table and the raw message (topic, partition, offset, key)."""
from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import replace

from fixtures.mapping import his_rows as h
from hisbridge.catalog import load_catalog
from hisbridge.chain import avro, crypto
from hisbridge.chain.chain import CoreRecord, transform
from hisbridge.chain.mapping import load_mapping
from hisbridge.chain.screen import SchemaWatch
from hisbridge.contract import SOURCE_MESSAGE_FIELDS, QuarantineEntry
from hisbridge.contract import raw_topics
from hisbridge.runtime import batch_plan
from hisbridge.runtime.batch_plan import (FATES, plan_batch, plan_expiry,
                                          plan_references, release_all)
from hisbridge.runtime.coverage import FeedCoverage
from hisbridge.runtime.ordering import RawEvent
from hisbridge.state.codec import CodedStore
from hisbridge.state.held import HeldRecords
from hisbridge.state.lookups import ReferenceStore, TableLookups
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import FIXTURES
from support.debezium import Feed, envelope

CATALOG = load_catalog()
MAPPING = load_mapping(CATALOG, FIXTURES / "mapping" / "test_hospital.yaml")
KEY = crypto.parse_key("0123456789abcdeffedcba9876543210", "test")
WAIT_MS = 1_000
ROWS = {"pat_master": h.patient, "op_visit": h.visit, "op_diagnosis": h.op_diagnosis, "dept_dict": h.dept,
        "staff_dict": h.staff, "op_register": h.register, "lab_result": lambda: {"id": 1, "value": "x"}}


FATE_COUNTS: Counter = Counter()


class Worker:
    """The transform's pure planning path over in-memory state, as the worker runs it."""

    def __init__(self) -> None:
        self.store, self.watch = ReferenceStore(), SchemaWatch()
        self.pending = HeldRecords(CodedStore({}))

    def run(self, message, give_up: bool):
        return transform(message, catalog=CATALOG, mapping=MAPPING, lookups=TableLookups(self.store, MAPPING.lookups),
                         key=KEY, give_up=give_up, defer=True, watch=self.watch, max_bytes=5_000)

    def consume(self, events: list[RawEvent]) -> list:
        """Plan the batch, then expire everything still held; check the partition and return all outputs."""
        plan = plan_batch(events, mapping=MAPPING, lookups=self.store, pending=self.pending, run=self.run,
                          now_ms=10_000, watch=self.watch)
        self.pending.release(plan.release)
        FATE_COUNTS.update(plan.counts)
        assert set(plan.fates) == {(e.topic, e.partition, e.offset) for e in events}
        assert all(fate and set(fate) <= FATES for fate in plan.fates.values())
        produced = plan.counts["core"] + plan.counts["quarantine"]
        assert len(plan.outputs) >= produced            # + held records an arrival released
        late = plan_expiry(pending=self.pending, run=self.run, now_ms=10_000 + WAIT_MS, wait_ms=WAIT_MS)
        release_all(self.pending, late)
        held, quarantined, _ = self.pending.waiting()   # given up: quarantined, still held for a late row
        assert held == quarantined == len(late.given_up)    # every held record ended as an output
        outputs = plan.outputs + late.outputs
        assert all(isinstance(o, (CoreRecord, QuarantineEntry)) for o in outputs)
        for entry in (o for o in outputs if isinstance(o, QuarantineEntry)):
            assert entry.table and entry.table != "_unknown"
            assert all(f in entry.source for f in SOURCE_MESSAGE_FIELDS)
        return outputs


def raw(table: str, value: bytes | None, offset: int = 0, key: bytes | None = b'{"id": 1}') -> RawEvent:
    return RawEvent(f"his.his.{table}", 0, offset, key, value)


def references() -> list[RawEvent]:
    """Every reference row visit V0001 needs (on topics of their own: offsets do not collide with the variant's)."""
    feed = Feed()
    return [feed.event(t, row()) for t, row in (("dept_dict", h.dept), ("staff_dict", h.staff), ("op_register", h.register),
                                                ("pat_master", h.patient), ("op_diagnosis", h.op_diagnosis))]


def bad_variants() -> list[tuple[str, RawEvent, str | None]]:
    """(what, message, the rule its entry must carry — None: a counted skip or a lookup update)."""
    good = json.loads(envelope("op_visit", "c", None, h.visit(), 1_000, 100))

    def variant(**payload) -> bytes:
        return json.dumps({"schema": good["schema"], "payload": {**good["payload"], **payload}}).encode()

    no_id = {k: v for k, v in h.patient().items() if k != "patient_id"}
    source = good["payload"]["source"]
    return [
        ("after={}", raw("op_visit", variant(after={})), "empty_row"),
        ("delete with before={}", raw("op_visit", variant(op="d", before={}, after=None)), "empty_row"),
        ("patient without patient_id", raw("pat_master", envelope("pat_master", "c", None, {**no_id, "patient_id": None},
                                                                   1_000, 101)), "missing_key"),
        ("delete whose before lacks the key", raw("pat_master", envelope("pat_master", "d", {**no_id, "patient_id": None},
                                                                          None, 1_000, 102)), "missing_key"),
        ("not JSON", raw("op_visit", b"{not json"), "decode_error"),
        ("not UTF-8", raw("op_visit", b"\xff\xfe"), "decode_error"),
        ("a JSON array", raw("op_visit", b"[1, 2]"), "decode_error"),
        ("no source block", raw("op_visit", variant(source=None)), "decode_error"),
        ("source without table", raw("op_visit", variant(source={**source, "table": None})), "decode_error"),
        ("unknown op", raw("op_visit", variant(op="x")), "decode_error"),
        ("op c without after", raw("op_visit", variant(after=None)), "decode_error"),
        ("op d without before", raw("op_visit", variant(op="d", before=None, after=None)), "decode_error"),
        ("a timestamp beyond year 9999", raw("op_visit", variant(after={**good["payload"]["after"],
                                                                         "visit_time": 10 ** 18})), "decode_error"),
        ("a decimal that is not base64", raw("op_visit", variant(after={**good["payload"]["after"],
                                                                         "total_fee": "@@"})), "decode_error"),
        ("an unknown source table", raw("lab_result", envelope("lab_result", "c", None, {"id": 1}, 1_000, 103)),
         "unknown_source_table"),
        ("a truncate", raw("op_visit", variant(op="t", before=None, after=None)), "source_truncated"),
        ("a dropped column the mapping reads", raw("op_visit", envelope(
            "op_visit", "c", None, {k: v for k, v in h.visit(visit_id="V0009").items() if k != "chief_complaint"},
            1_000, 104)), "schema_drift"),
        ("an oversized value", raw("op_visit", envelope("op_visit", "c", None, h.visit(chief_complaint="痛" * 4000),
                                                        1_000, 105), offset=7), "oversize"),
        ("a tombstone", raw("op_visit", None), None),
        ("a heartbeat", Feed().heartbeat(5_000), None),
    ]


def test_each_named_bad_input_ends_as_its_specific_quarantine_entry_or_a_counted_skip():
    for what, event, rule in bad_variants():
        worker = Worker()
        outputs = [o for o in worker.consume(references() + [event])
                   if (o.source["topic"], o.source.get("partition", 0), o.source.get("offset", event.offset))
                   == (event.topic, event.partition, event.offset)]       # the variant's own (not the diagnosis's)
        entries = [o for o in outputs if isinstance(o, QuarantineEntry)]
        if rule is None:
            assert outputs == [], what
        else:
            assert entries and all(rule in e.rules for e in entries), (what, [e.rules for e in entries])
            assert entries[0].source["offset"] == event.offset and entries[0].source["partition"] == 0, what
            if rule in ("schema_drift", "oversize"):       # the record could still be mapped: key and batch known
                assert entries[0].key and entries[0].batch, what
    oversize = next(o for o in Worker().consume(references() + [bad_variants()[-3][1]])
                    if isinstance(o, QuarantineEntry) and "oversize" in o.rules)
    reason = next(r for r in oversize.reasons if r["rule"] == "oversize")
    assert reason["field"] == "zs" and "bytes" in reason["message"]
    assert oversize.record is not None and "left out" in str(oversize.record.values())


def test_an_older_replayed_reference_row_is_skipped_and_never_feeds_a_record():
    """The stale-fee case: the visit's newer version is kept; its older version replayed later is skipped
    as a reference row (counted); a record driven afterwards reads the newer one."""
    worker, refs = Worker(), references()
    newer = raw("op_visit", envelope("op_visit", "u", h.visit(), h.visit(chief_complaint="新"), 1_000, 500), offset=1)
    older = raw("op_visit", envelope("op_visit", "u", h.visit(), h.visit(chief_complaint="旧"), 1_000, 400), offset=2)
    diag = raw("op_diagnosis", envelope("op_diagnosis", "u", h.op_diagnosis(), h.op_diagnosis(),
                                        1_000, 600), offset=5)
    plan = plan_batch(refs + [newer, older, diag], mapping=MAPPING, lookups=worker.store, pending=worker.pending,
                      run=worker.run, now_ms=10_000, watch=worker.watch)
    assert worker.store.older == 1 and plan.counts["skip:older_version"] == 0   # its own record still goes out…
    records = [o for o in plan.outputs if isinstance(o, CoreRecord)]
    lsns = [json.loads(dict(r.headers)["hisbridge.source"])["lsn"] for r in records]
    # the held diagnosis (released by the newer visit), the newer visit, the older one — under its older LSN,
    # which staging's newest-version-wins drops (tests/stack/delivery/test_sink_db.py) — the diagnosis update
    assert lsns[1:] == [500, 400, 600] and lsns[0] < 400
    schemas = avro.schemas_by_fingerprint([avro.load_schema("mjzzlxx")])
    assert [avro.decode(r.value, schemas)["zs"] for r in records] == ["新", "新", "旧", "新"]


def _junk(rng: random.Random, depth: int = 0):
    """A small JSON value of the envelope's words: what a broken producer might write."""
    kind = rng.randrange(5 if depth < 2 else 3)
    if kind == 0:
        return None
    if kind == 1:
        return rng.randrange(-5, 5)
    if kind == 2:
        return rng.choice(["", "c", "d", "x", "payload"])
    if kind == 3:
        return [_junk(rng, depth + 1) for _ in range(rng.randrange(3))]
    return {rng.choice(["schema", "payload", "op", "after"]): _junk(rng, depth + 1) for _ in range(rng.randrange(3))}


def envelope_from(seed: int) -> tuple[str, bytes | None]:
    """One raw message built from a seed: mostly real envelopes with columns dropped, nulled, emptied or
    replaced, of every op, now and then an empty row; else tombstones, junk bytes and junk JSON."""
    rng = random.Random(seed)
    table = rng.choice(sorted(ROWS))
    kind = rng.choice(["row"] * 5 + ["garbage", "tombstone", "json"])
    if kind == "tombstone":
        return table, None
    if kind == "garbage":
        return table, rng.randbytes(rng.randrange(40))
    if kind == "json":
        return table, json.dumps(_junk(rng)).encode()
    row = dict(ROWS[table]())
    for column in rng.sample(sorted(row), min(len(row), rng.randrange(4))):
        choice = rng.choice(["drop", "null", "empty", "text"])
        if choice == "drop":
            row.pop(column)
        else:
            row[column] = {"null": None, "empty": "", "text": "".join(rng.choices("ab1中-", k=rng.randrange(8)))}[choice]
    row = row or {"id": 1}
    op = rng.choice(["c", "c", "u", "d", "r", "t"])
    before, after = (row if op in ("u", "d") else None), (row if op != "d" else None)
    data = json.loads(envelope(table, op, before, after, rng.randrange(10 ** 13), rng.randrange(1, 10 ** 9)))
    if op == "t":
        data["payload"]["after"] = None
    elif rng.randrange(10) == 0:                        # the empty row Debezium never should send
        data["payload"]["before" if op == "d" else "after"] = {}
    return table, json.dumps(data).encode()


SEEN = {"envelopes": 0}
BATCH = 100


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(st.lists(st.integers(0, 2 ** 32), min_size=BATCH, max_size=BATCH))
def _every_generated_envelope_ends_with_one_fate(seeds):
    events = [raw(*envelope_from(seed), offset=i) for i, seed in enumerate(seeds)]
    Worker().consume(events)
    SEEN["envelopes"] += len(events)


def test_ten_thousand_generated_envelopes_each_end_as_exactly_one_fate():
    SEEN["envelopes"] = 0
    FATE_COUNTS.clear()
    _every_generated_envelope_ends_with_one_fate()
    assert SEEN["envelopes"] >= 10_000
    # the generated mix reaches every way a message can end
    assert {"core", "quarantine", "held", "lookup", "skip:tombstone", "skip:not_reportable"} <= set(FATE_COUNTS)


def _planned(events: list[RawEvent], coverage: FeedCoverage | None) -> tuple:
    """The reference feed's pass over the lookup topics, then the group's over every topic, as the worker
    runs them: (outputs, commits, fates, messages the group decoded)."""
    worker, feed = Worker(), set(raw_topics("his", MAPPING.lookup_sources))
    ref = plan_references([e for e in events if e.topic in feed], mapping=MAPPING, lookups=worker.store,
                          pending=worker.pending, run=worker.run, watch=worker.watch, coverage=coverage)
    decoded, decode = [], batch_plan.decode_message
    batch_plan.decode_message = lambda *a: decoded.append(a) or decode(*a)
    try:
        plan = plan_batch(events, mapping=MAPPING, lookups=worker.store, pending=worker.pending, run=worker.run,
                          now_ms=10_000, watch=worker.watch, coverage=coverage)
    finally:
        batch_plan.decode_message = decode
    outputs = [replace(o, first_seen="") if isinstance(o, QuarantineEntry) else o for o in ref.outputs + plan.outputs]
    # the feed kept the row first either way; whether the group's own pass found it the same or an older
    # version than the one kept is only the name of the skip
    fates = {k: tuple("skip:same_version" if f == "skip:older_version" else f for f in v) for k, v in plan.fates.items()}
    return outputs, plan.commits, fates, len(decoded)


def test_what_the_feed_read_already_is_not_decoded_again_and_the_batch_comes_out_the_same():
    """plan_batch with the feed's coverage: a change that only feeds lookups is passed without decoding, and
    every output, commit time and fate is what the full pass gives — over the named bad inputs and
    generated envelopes on every topic, the reference topics included."""
    rng, skipped = random.Random(15), 0
    for n in range(30):
        events = references() + [raw(*envelope_from(rng.randrange(2 ** 32)), offset=10 + i) for i in range(100)]
        if n == 0:
            events += [replace(e, offset=200 + i) for i, (_, e, _) in enumerate(bad_variants())]
        full, fast = _planned(events, None), _planned(events, FeedCoverage())
        assert fast[:3] == full[:3]
        assert full[3] == len(events) and fast[3] < full[3]
        skipped += full[3] - fast[3]
    assert skipped > 300
