"""A simulated hospital day through the whole transform chain (pure: no Kafka, no database).

The pipeline's promise, checked exactly on the demo hospital (simulated HIS + demo_hospital.yaml + value
maps + catalog + shipped ICD subsets): every record the generator did NOT mark bad reaches core, and every
record a planted defect reaches is quarantined with the reason the manifest names — nothing else.

The generator's events become Debezium-like changes in event order (an insert is op 'c', an update op 'u'
with the full before-image, as REPLICA IDENTITY FULL gives; an "ensure" of a row already present is no
change at all). Dictionaries come first as snapshot reads. Like the worker, the test applies
`lookup_updates` before transforming a change, retries a Waiting change when its missing row arrives and
gives up on what is still waiting at the end.
"""
from __future__ import annotations

import os
from collections import defaultdict
from datetime import date, datetime
from typing import Any

import pytest
from hisbridge.catalog import load_catalog
from hisbridge.chain import chain as transform_module
from hisbridge.chain.chain import (CoreRecord, Waiting, finish_outputs,
                                   transform)
from hisbridge.chain.crypto import parse_key
from hisbridge.chain.decode import Change, SourcePosition
from hisbridge.chain.mapping import load_mapping, lookup_updates
from hisbridge.clock import SHANGHAI
from hisbridge.contract import QuarantineEntry
from hisbridge.sim import generate
from hisbridge.sim.expectations import columns_read

SEED, VISITS, BAD_SHARE = 7, 1000, 0.05
DAY = date(2026, 1, 11)         # the 11th: the statistics office also enters December's and 2025's indicators
KEY = parse_key(os.urandom(16).hex(), "test-only random key")   # throwaway, never a deployment key
NOW = datetime(2026, 1, 11, 18, 30, tzinfo=SHANGHAI)

# The manifest's reasons (the generator's vocabulary) → the rule ids the transform reports.
RULE_OF_REASON = {generate.UNMAPPED_CODE: "unmapped_code", generate.MISSING_REQUIRED: "required",
                  generate.INVALID_ID_NUMBER: "resident_id"}


# --- the simulated day as changes ---------------------------------------------------------------------

def _change(table: str, op: str, before: dict | None, after: dict | None, lsn: int, at: datetime) -> Change:
    commit_ms = int(at.replace(tzinfo=SHANGHAI).timestamp() * 1000)
    source = SourcePosition(connector="postgresql", db="his", schema="his", table=table, lsn=lsn, tx_id=lsn,
                            commit_time_ms=commit_ms, snapshot=op == "r", server="his")
    return Change(op=op, before=before, after=after, source=source, ts_ms=commit_ms, topic=f"his.his.{table}")


def day_changes(activity: generate.Activity) -> list[Change]:
    """Dictionaries as snapshot reads, then every event in order as the HIS database would log it."""
    changes: list[Change] = []
    for table, rows in generate.dictionary_rows(SEED).items():
        changes += [_change(table, "r", None, row, len(changes) + 1, generate.DICTIONARY_TIME) for row in rows]
    state: dict[tuple, dict] = {}
    for event in activity.events:
        key = (event.table, tuple(event.row[k] for k in generate.PRIMARY_KEYS[event.table]))
        if event.op == "update":
            before, after = state[key], {**state[key], **event.row}
            changes.append(_change(event.table, "u", before, after, len(changes) + 1, event.at))
        elif event.op == "insert" or key not in state:
            after = dict(event.row)
            changes.append(_change(event.table, "c", None, after, len(changes) + 1, event.at))
        else:
            continue        # ensure of a row the HIS already holds: no statement, no change
        state[key] = after
    return changes


def _apply(lookups: dict, updates) -> list[tuple[str, str]]:
    """Write lookup updates like the wiring's tables; returns the (lookup, key) pairs that gained a row."""
    arrived = []
    for u in updates:
        table = lookups.setdefault(u.lookup, {})
        if u.member is None:
            if u.row is None:
                table.pop(u.key, None)
            else:
                table[u.key] = u.row
        else:
            group = table.setdefault(u.key, {})
            if u.row is None:
                group.pop(u.member, None)
            else:
                group[u.member] = u.row
        if u.row is not None:
            arrived.append((u.lookup, u.key))
    return arrived


def run_chain(changes: list[Change], catalog, mapping, batch: int | None = None) -> tuple[list, int]:
    """Every output of every change; a Waiting change is retried when its row arrives, given up at the end.
    With `batch`, records are finished together every `batch` changes, as the worker's plan_batch does."""
    lookups: dict = {}
    outputs: list = []
    waiting: dict[tuple[str, str], list[Change]] = defaultdict(list)
    retried = 0
    finished = 0

    def run(change: Change, give_up: bool = False) -> None:
        for out in transform(change, catalog=catalog, mapping=mapping, lookups=lookups, key=KEY, now=NOW,
                             give_up=give_up, defer=batch is not None):
            if isinstance(out, Waiting):
                waiting[(out.missing.lookup, out.missing.key)].append(change)
            else:
                outputs.append(out)

    for change in changes:
        for pair in _apply(lookups, lookup_updates(mapping, change)):
            for pending in waiting.pop(pair, []):
                retried += 1
                run(pending)
        run(change)
        if batch is not None and len(outputs) - finished >= batch:
            outputs[finished:] = finish_outputs(outputs[finished:])
            finished = len(outputs)
    for pending in [c for cs in waiting.values() for c in cs]:
        run(pending, give_up=True)
    return finish_outputs(outputs), retried


# --- what the manifest predicts ------------------------------------------------------------------------

def _k(*values: Any) -> str:
    return "|".join(v.isoformat() if hasattr(v, "isoformat") else str(v) for v in values)


def entity_records(entity: dict, rows: dict[str, dict[tuple, dict]]) -> list[tuple[str, str, set]]:
    """(catalog table, business key, the HIS rows feeding it) of every record an entity should produce by
    the end of the window, from the HIS's final state."""
    out = []
    if entity["kind"] == "outpatient":
        visit_id = entity["visit_id"]
        if visit_id and (visit_id,) in rows["op_visit"] and (visit_id, 1) in rows["op_diagnosis"]:
            out.append(("mjzzlxx", visit_id, {("pat_master", (entity["patient_id"],)),
                                              ("op_register", (entity["reg_id"],)), ("op_visit", (visit_id,)),
                                              ("op_diagnosis", (visit_id, 1))}))
        return out
    no, patient = entity["inpatient_no"], ("pat_master", (entity["patient_id"],))
    adm = rows["ip_admission"].get((no,))
    if adm and adm["discharge_time"] is not None:
        out.append(("zyhzryxx", no, {patient, ("ip_admission", (no,))}))
    hp = rows["mr_homepage"].get((no,))
    if not hp or hp["archive_time"] is None:
        return out
    bah, zycs = hp["mr_no"], hp["admit_times"]
    homepage, main = ("mr_homepage", (no,)), ("mr_diagnosis", (no, 0))
    out.append(("basy", _k(bah, zycs), {patient, ("ip_admission", (no,)), homepage, main}))
    out += [("basy_zd", _k(bah, zycs, seq), {homepage, ("mr_diagnosis", (n, seq))})
            for (n, seq), dx in rows["mr_diagnosis"].items() if n == no and dx["diag_type"] == "Q"]
    out += [("basy_ss", _k(bah, zycs, seq + 1), {homepage, ("mr_operation", (n, seq))})
            for (n, seq) in rows["mr_operation"] if n == no]
    if (no,) in rows["mr_homepage_tcm"]:
        tcm = ("mr_homepage_tcm", (no,))
        out.append(("zybasy", _k(bah, zycs), {patient, ("ip_admission", (no,)), homepage, tcm, main}))
        out.append(("zybasy_zz", _k(bah, zycs, 1), {homepage, tcm}))
    return out


def indicator_records(rows: dict[str, dict[tuple, dict]]) -> list[tuple[str, str]]:
    """Monthly hospital-wide → ylfwnl, monthly per key specialty → zdzkzb, yearly → zypzyx."""
    out = []
    for (period, code), row in rows.get("eval_indicator", {}).items():
        if len(period) == 4:
            out.append(("zypzyx", _k(date(int(period), 1, 1), code)))
        elif row["specialty_code"]:
            out.append(("zdzkzb", _k(date.fromisoformat(period + "-01"), row["specialty_code"], code)))
        else:
            out.append(("ylfwnl", _k(date.fromisoformat(period + "-01"), code)))
    return out


def expectations(activity: generate.Activity, mapping) -> tuple[dict[str, set[str]], set[tuple[str, str, str]]]:
    """(core keys per table, quarantined (table, key, rule)) as the manifest predicts them."""
    rows = {t: {tuple(r[k] for k in generate.PRIMARY_KEYS[t]): r for r in rs} for t, rs in activity.rows().items()}
    for table in generate.PRIMARY_KEYS:
        rows.setdefault(table, {})
    reads = columns_read(mapping)
    core: dict[str, set[str]] = defaultdict(set)
    quarantined: set[tuple[str, str, str]] = set()
    for entity in activity.manifest["entities"]:
        for table, key, fed_by in entity_records(entity, rows):
            hits = {(table, key, RULE_OF_REASON[d["reason"]]) for d in entity["defects"]
                    if (d["table"], tuple(d["key"])) in fed_by and (d["table"], d["column"]) in reads[table]}
            if hits:
                quarantined |= hits
            else:
                core[table].add(key)
    for table, key in indicator_records(rows):
        core[table].add(key)
    return dict(core), quarantined


# --- the test ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def day():
    catalog = load_catalog()
    mapping = load_mapping(catalog)
    activity = generate.day_activity(SEED, DAY, VISITS, BAD_SHARE)
    outputs, retried = run_chain(day_changes(activity), catalog, mapping)
    return activity, mapping, outputs, retried


def _observed(outputs) -> tuple[dict[str, set[str]], set[tuple[str, str, str]]]:
    core: dict[str, set[str]] = defaultdict(set)
    quarantined = set()
    for out in outputs:
        if isinstance(out, CoreRecord):
            core[out.table].add(out.key)
        else:
            assert isinstance(out, QuarantineEntry)
            quarantined |= {(out.table, out.key, rule) for rule in out.rules}
    return dict(core), quarantined


def test_every_clean_record_reaches_core_and_only_planted_defects_are_quarantined(day):
    activity, mapping, outputs, _ = day
    expected_core, expected_quarantine = expectations(activity, mapping)
    core, quarantined = _observed(outputs)
    assert quarantined == expected_quarantine
    assert core == expected_core
    assert not {(t, k) for t, k, _ in quarantined} & {(t, k) for t, keys in core.items() for k in keys}


def test_the_day_exercises_every_catalog_table_and_every_kind_of_defect(day):
    activity, mapping, outputs, _ = day
    core, quarantined = _observed(outputs)
    assert set(core) == set(mapping.tables)
    assert {rule for _, _, rule in quarantined} == set(RULE_OF_REASON.values())
    planted_tables = {d["table"] for e in activity.manifest["entities"] for d in e["defects"]}
    assert {"pat_master", "op_register", "op_diagnosis", "mr_homepage", "mr_diagnosis"} <= planted_tables
    assert {t for t, _, _ in quarantined} >= {"mjzzlxx", "zyhzryxx", "basy"}


def test_one_outpatient_record_per_diagnosed_visit_and_nothing_waits(day):
    activity, _, outputs, retried = day
    rows = activity.rows()
    diagnosed = {d["visit_id"] for d in rows["op_diagnosis"] if d["seq"] == 1}
    visits = {v["visit_id"] for v in rows["op_visit"]} & diagnosed
    core, quarantined = _observed(outputs)
    assert core["mjzzlxx"] | {k for t, k, _ in quarantined if t == "mjzzlxx"} == visits
    # every visit change after its diagnosis and every diagnosis change gives one version; no duplicates
    per_visit = defaultdict(int)
    for out in outputs:
        if out.table == "mjzzlxx":
            per_visit[out.key] += 1
    changes = defaultdict(int)
    for event in activity.events:
        vid = event.row.get("visit_id")
        if (event.table == "op_visit" and event.op == "update") or (
                event.table == "op_diagnosis" and event.row.get("seq") == 1):
            changes[vid] += 1
    assert per_visit == {v: changes[v] for v in visits}
    assert retried == 0 and not any(r == "missing_lookup" for _, _, r in quarantined)


def test_front_pages_of_neoplasms_and_injuries_carry_pathology_and_external_cause(day):
    activity, _, outputs, _ = day
    rows = activity.rows()
    principal = {d["inpatient_no"]: d["icd_code"] for d in rows["mr_diagnosis"] if d["seq"] == 0}
    archived = [hp for hp in rows["mr_homepage"] if hp["archive_time"] is not None]
    kinds = {(generate.is_neoplasm(principal[hp["inpatient_no"]] or ""),
              generate.is_injury(principal[hp["inpatient_no"]] or "")) for hp in archived}
    assert (True, False) in kinds and (False, True) in kinds   # the day has both, and they reach core
    assert not any(r == "required_when" for o in outputs if isinstance(o, QuarantineEntry) for r in o.rules)


@pytest.mark.parametrize("batch", [7, 500])
def test_records_finished_in_batches_are_exactly_the_records_finished_one_by_one(day, batch, monkeypatch):
    """The worker's path (transform(defer=True) + finish_outputs per batch) against transform per change:
    the same CoreRecords (bytes, keys, batches, headers) and quarantine entries, in the same order — and
    the CoreRecords did take the batch path (a record alone in its group takes the per-record one)."""
    activity, mapping, outputs, retried = day
    fast = []
    original = transform_module._clean_record
    monkeypatch.setattr(transform_module, "_clean_record", lambda *a: fast.append(original(*a)) or fast[-1])
    batched, retried_batched = run_chain(day_changes(activity), load_catalog(), mapping, batch=batch)
    assert retried_batched == retried
    assert batched == outputs
    core = sum(isinstance(o, CoreRecord) for o in batched)
    print(f"batch {batch}: {len(fast)} of {core} CoreRecords by the batch path")
    assert None not in fast and len(fast) >= core * (0.5 if batch < 50 else 0.95)
