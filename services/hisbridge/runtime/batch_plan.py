"""One consumed batch of raw messages (or one expiry pass), planned: pure, over plain values and the state
objects, no Kafka. The transform worker produces what the plan says, then releases and commits.

  plan_batch       decode every message in order; a change that passes the screen goes into the reference
                   store (when its table is a lookup) BEFORE it runs through the chain (the chain's wiring
                   contract); records held for a row that just arrived are retried right after it; Waiting
                   outputs are held
  plan_references  the reference topics' messages (every partition, read outside the group): rows into the
                   store, held records retried — no other output (the group's owner of that partition
                   quarantines what is bad); what it read is noted in a FeedCoverage, and plan_batch then
                   passes a change that only feeds lookups without decoding it again
  plan_present     held records whose row is in the store already (a partition taken over from another worker)
  plan_expiry      held records whose batch closed without them (or whose operator bound is over): run with
                   give_up=True → quarantine with the missing key; they stay held (released when the row comes)

No silent drop: every message of plan_batch ends with a fate (BatchPlan.fates): what it produced — `core`,
`quarantine`, `held` — or, producing nothing, `lookup` (a reference row kept), or a counted skip:
`skip:tombstone`, `skip:heartbeat`, `skip:older_version` (a reference row older than the one kept),
`skip:same_version` (the reference reader kept it first), `skip:not_reportable` (outside every driver's
`when`, or not reportable yet). Quarantine entries name the raw message: partition, offset and key.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping

from hisbridge.chain.batch import BatchError, assign_batch
from hisbridge.chain.chain import Unfinished, Waiting, finish_outputs
from hisbridge.chain.decode import Change, DecodeError, Heartbeat, decode_message
from hisbridge.chain.mapping import SourceMapping, lookup_updates, source_name
from hisbridge.chain.screen import SchemaWatch, screen
from hisbridge.contract import SOURCE_MESSAGE_FIELDS, QuarantineEntry
from hisbridge.runtime.coverage import FeedCoverage
from hisbridge.runtime.ordering import Partition, RawEvent
from hisbridge.state.codec import text
from hisbridge.state.held import Held, HeldRecords
from hisbridge.state.lookups import ReferenceStore, lookup_store_key

FATES = frozenset({"core", "quarantine", "held", "lookup", "skip:tombstone", "skip:heartbeat", "skip:older_version",
                   "skip:same_version", "skip:not_reportable"})


@dataclass
class BatchPlan:
    """What a batch (or an expiry pass) produces, and what may be forgotten once that is acknowledged."""
    outputs: list[Any]                                   # CoreRecord | QuarantineEntry, in order
    release: list[str]                                   # held records (entries) to forget after the acks
    commits: dict[Partition, int]                        # latest source commit / heartbeat ms per partition
    offsets: dict[Partition, int]                        # last offset handled per partition
    heartbeats: dict[str, int]                           # topic prefix → latest heartbeat ts
    parked: int = 0
    fates: dict[tuple[str, int, int], tuple[str, ...]] = field(default_factory=dict)   # (topic, part, offset) →
    counts: Counter = field(default_factory=Counter)     # fate → messages
    given_up: list[str] = field(default_factory=list)     # held records quarantined, still held
    close_of: "CloseOf | None" = None                    # when a parked record's batch closes

    def fate(self, event: RawEvent, *kinds: str) -> None:
        self.fates[(event.topic, event.partition, event.offset)] = kinds
        self.counts.update(kinds)


# (Change | DecodeError, give_up) → transform outputs; Unfinished ones (transform's defer=True) are finished
# together at the end of the batch
Run = Callable[[Any, bool], list[Any]]
# a Waiting output → when its batch closes (ms), or None when its batch cannot be told yet
CloseOf = Callable[[Waiting], "int | None"]


def batch_close_ms(tables: Mapping[str, Any], grace_ms: int, waiting: Waiting) -> int | None:
    """The close (period end + grace) of the batch the waiting record belongs to, from its partial record."""
    try:
        period = assign_batch(tables[waiting.table], waiting.missing.partial)
    except (BatchError, KeyError):
        return None
    return int(period.end.timestamp() * 1000) + grace_ms


def _empty(close_of: CloseOf | None = None) -> BatchPlan:
    return BatchPlan([], [], {}, {}, {}, close_of=close_of)


def _held_for(event: RawEvent, table: str, now_ms: int, commit_ms: int | None, since_ms: int | None = None) -> Held:
    return Held(event.topic, event.partition, event.offset, text(event.key), text(event.value) or "",
                since_ms if since_ms is not None else now_ms, commit_ms, table)


def located(outputs: list[Any], topic: str, partition: int, offset: int, key: str | None) -> list[Any]:
    """Quarantine entries (and records still to finish, which may become one) with the raw message they came
    from (topic, partition, offset, key) in their source."""
    where = dict(zip(SOURCE_MESSAGE_FIELDS, (topic, partition, offset, key)))
    return [replace(o, source={**o.source, **where}) if isinstance(o, (QuarantineEntry, Unfinished)) else o
            for o in outputs]


def _kind(out: Any) -> str:
    return "held" if isinstance(out, Waiting) else "quarantine" if isinstance(out, QuarantineEntry) else "core"


def _route(plan: BatchPlan, pending: HeldRecords, outputs: list[Any], make_held: Callable[[str], Held],
           only_table: str | None = None) -> list[str]:
    kinds = []
    for out in outputs:
        if only_table is not None and getattr(out, "table", None) != only_table:
            continue    # a retried change re-derives every table it feeds: keep the one that waited
        kinds.append(_kind(out))
        if isinstance(out, Waiting):
            held = make_held(out.table)
            if plan.close_of is not None and held.close_ms is None:
                held = replace(held, close_ms=plan.close_of(out))
            plan.parked += pending.park(out.missing.lookup, out.missing.key, held) is not None
        else:
            plan.outputs.append(out)
    return kinds


def _retry(plan: BatchPlan, pending: HeldRecords, run: Run, lookup: str, key: str) -> None:
    arrived = lookup_store_key(lookup, key)
    for skey, h in pending.at(lookup, key):
        outputs = located(run(decode_message(h.topic, h.key, h.value), False), h.topic, h.partition, h.offset, h.key)
        # still waiting (for another row now): held again under that key, its wait still counted from since_ms
        _route(plan, pending, outputs, lambda table, h=h: replace(h, table=table), only_table=h.table)
        if not any(isinstance(o, Waiting) and o.table == h.table
                   and lookup_store_key(o.missing.lookup, o.missing.key) == arrived for o in outputs):
            plan.release.append(skey)


def _keep_reference(plan: BatchPlan, mapping: SourceMapping, store: ReferenceStore, pending: HeldRecords, run: Run,
                    change: Change) -> str | None:
    """The change's reference rows into the store, held records for them retried; the fate when it is a
    reference table's change (None: it feeds no lookup)."""
    updates = lookup_updates(mapping, change)
    if not updates:
        return None
    done = store.apply(updates)
    for lookup, key in dict.fromkeys(done.arrived):
        _retry(plan, pending, run, lookup, key)
    return "lookup" if done.applied else "skip:older_version" if done.older else "skip:same_version"


def plan_batch(events: Iterable[RawEvent], *, mapping: SourceMapping, lookups: ReferenceStore,
               pending: HeldRecords, run: Run, now_ms: int, watch: SchemaWatch | None = None,
               close_of: CloseOf | None = None, coverage: FeedCoverage | None = None) -> BatchPlan:
    """Decode every event in order; reference rows go into `lookups` BEFORE the change is transformed
    (transform's wiring contract), and records held for a row that just arrived are retried right after
    it. Waiting outputs are parked in `pending`, with their batch's close (`close_of`). Every event gets its
    fate (module docstring). What `coverage` says the reference feed read and applied already is not
    applied again, and a change that only feeds lookups is not even decoded (its fate: skip:same_version)."""
    plan = _empty(close_of)
    for event in events:
        part = (event.topic, event.partition)
        plan.offsets[part] = event.offset
        covered = coverage is not None and event.value is not None and coverage.covers(part, event.offset)
        if covered:
            passed, commit_ms = coverage.skippable(part, event.offset)
            if passed:
                if commit_ms is not None:
                    plan.commits[part] = max(commit_ms, plan.commits.get(part, 0))
                plan.fate(event, "skip:same_version")
                continue
        message = decode_message(event.topic, event.key, event.value)
        if message is None:
            plan.fate(event, "skip:tombstone")
            continue
        if isinstance(message, Heartbeat):
            plan.heartbeats[message.prefix] = max(message.ts_ms, plan.heartbeats.get(message.prefix, 0))
            plan.commits[part] = max(message.ts_ms, plan.commits.get(part, 0))
            plan.fate(event, "skip:heartbeat")
            continue
        where = (event.topic, event.partition, event.offset, text(event.key))
        if isinstance(message, DecodeError):
            outputs = located(run(message, False), *where)
            plan.fate(event, *_route(plan, pending, outputs, lambda table: _held_for(event, table, now_ms, None)))
            continue
        commit_ms = message.source.commit_time_ms
        if commit_ms is not None:
            plan.commits[part] = max(commit_ms, plan.commits.get(part, 0))
        if screen(mapping, message, watch):
            reference = None
        elif covered:     # the feed applied its rows (and retried what waited for them) already
            reference = "skip:same_version" if _updates_rows(mapping, message) else None
        else:
            reference = _keep_reference(plan, mapping, lookups, pending, run, message)
        outputs = located(run(message, False), *where)
        kinds = _route(plan, pending, outputs,
                       lambda table, event=event, commit_ms=commit_ms: _held_for(event, table, now_ms, commit_ms))
        plan.fate(event, *(kinds or [reference or "skip:not_reportable"]))
    plan.outputs = finish_outputs(plan.outputs)
    return plan


def plan_references(events: Iterable[RawEvent], *, mapping: SourceMapping, lookups: ReferenceStore,
                    pending: HeldRecords, run: Run, close_of: CloseOf | None = None,
                    watch: SchemaWatch | None = None, coverage: FeedCoverage | None = None) -> BatchPlan:
    """The reference topics' messages as every worker reads them: rows into the store (what passes the
    screen but for schema drift, which the group's owner of the partition quarantines), records this worker
    holds for them retried; each message noted in `coverage`, passable by the group when its change only
    feeds lookups and passes the whole screen. Offsets are the store's, not the group's."""
    plan = _empty(close_of)
    for event in events:
        part = (event.topic, event.partition)
        plan.offsets[part] = event.offset
        message = decode_message(event.topic, event.key, event.value)
        passable, commit_ms = False, None
        if isinstance(message, Change):
            reasons = screen(mapping, message, watch)
            kept = None
            if all(r["rule"] == "schema_drift" for r in reasons):
                kept = _keep_reference(plan, mapping, lookups, pending, run, message)
            passable = not reasons and kept is not None and _feeds_lookups_only(mapping, message)
            commit_ms = message.source.commit_time_ms
        if coverage is not None:
            coverage.read(part, event.offset, commit_ms, passable)
    plan.outputs = finish_outputs(plan.outputs)
    return plan


def _updates_rows(mapping: SourceMapping, change: Change) -> bool:
    """Whether lookup_updates gives the change any update, without building them: a reference table's
    change but a truncate (decode guarantees the row an op reads: `after`, or `before` for a delete)."""
    return change.op != "t" and source_name(change) in mapping.lookup_sources


def _feeds_lookups_only(mapping: SourceMapping, change: Change) -> bool:
    """A change the group's pass would only find kept (a reference-only table the mapping knows)."""
    name = source_name(change)
    return name in mapping.lookup_sources and name not in mapping.by_source


def plan_present(*, lookups: ReferenceStore, pending: HeldRecords, run: Run,
                 close_of: CloseOf | None = None) -> BatchPlan:
    """Held records whose reference row the store holds already: retried now (rows that arrived while
    another worker owned their partition, or before a restart finished what it started)."""
    plan = _empty(close_of)
    for lookup, key in pending.missing_keys():
        if lookups.get(lookup_store_key(lookup, key)) is not None:
            _retry(plan, pending, run, lookup, key)
    plan.outputs = finish_outputs(plan.outputs)
    return plan


def plan_expiry(*, pending: HeldRecords, run: Run, now_ms: int, wait_ms: int,
                free_mark_ms: int | None = None) -> BatchPlan:
    """Held records given up on (HeldRecords.expired): transformed with give_up=True — quarantined with the
    missing key and kept held for the row's late arrival, or released should the record now be complete
    (the row arrived by another path)."""
    plan = _empty()
    for skey, h in pending.expired(now_ms, wait_ms, free_mark_ms):
        outputs = [o for o in located(run(decode_message(h.topic, h.key, h.value), True), h.topic, h.partition,
                                      h.offset, h.key)
                   if getattr(o, "table", None) == h.table and not isinstance(o, Waiting)]
        plan.outputs += outputs
        missing = any("missing_lookup" in getattr(o, "rules", ()) for o in outputs)
        (plan.given_up if missing else plan.release).append(skey)
    plan.outputs = finish_outputs(plan.outputs)
    return plan


def release_all(pending: HeldRecords, plan: BatchPlan) -> None:
    """What the worker does once a plan's outputs are acknowledged: forget what went out, and keep the
    records given up on as quarantined (only now: a crash before the acks gives up on them again)."""
    pending.release(plan.release)
    pending.give_up(plan.given_up)
