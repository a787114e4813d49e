"""One consumed batch of raw messages (or one expiry pass), planned: pure, over plain values and the state
objects, no Kafka. The transform worker produces what the plan says, then releases and commits.

  plan_batch   decode every message in order; reference rows go into the lookups BEFORE the change runs
               through the chain (the chain's wiring contract); records held for a row that just arrived are
               retried right after it; Waiting outputs are held; tombstones skipped, heartbeats move the mark
  plan_expiry  held records whose batch closed without them (or whose operator bound is over): run with
               give_up=True → quarantine with the missing key; they stay held (released when the row comes)
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping, MutableMapping

from hisbridge.chain.batch import BatchError, assign_batch
from hisbridge.chain.chain import Waiting, finish_outputs
from hisbridge.chain.decode import DecodeError, Heartbeat, decode_message
from hisbridge.chain.mapping import SourceMapping, lookup_updates
from hisbridge.runtime.ordering import Partition, RawEvent
from hisbridge.state.codec import text
from hisbridge.state.held import Held, HeldRecords
from hisbridge.state.lookups import apply_updates, lookup_store_key


@dataclass
class BatchPlan:
    """What a batch (or an expiry pass) produces, and what may be forgotten once that is acknowledged."""
    outputs: list[Any]                                   # CoreRecord | QuarantineEntry, in order
    release: list[str]                                   # held records (entries) to forget after the acks
    commits: dict[Partition, int]                        # latest source commit / heartbeat ms per partition
    offsets: dict[Partition, int]                        # last offset handled per partition
    heartbeats: dict[str, int]                           # topic prefix → latest heartbeat ts
    parked: int = 0
    given_up: list[str] = field(default_factory=list)     # held records quarantined, still held


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


def _held_for(event: RawEvent, table: str, now_ms: int, commit_ms: int | None, since_ms: int | None = None) -> Held:
    return Held(event.topic, event.partition, event.offset, text(event.key), text(event.value) or "",
                since_ms if since_ms is not None else now_ms, commit_ms, table)


def _route(plan: BatchPlan, pending: HeldRecords, outputs: list[Any], make_held: Callable[[str], Held],
           only_table: str | None = None, close_of: CloseOf | None = None) -> None:
    for out in outputs:
        if only_table is not None and getattr(out, "table", None) != only_table:
            continue    # a retried change re-derives every table it feeds: keep the one that waited
        if isinstance(out, Waiting):
            held = make_held(out.table)
            if close_of is not None and held.close_ms is None:
                held = replace(held, close_ms=close_of(out))
            plan.parked += pending.park(out.missing.lookup, out.missing.key, held) is not None
        else:
            plan.outputs.append(out)


def _retry(plan: BatchPlan, pending: HeldRecords, run: Run, lookup: str, key: str,
           close_of: CloseOf | None = None) -> None:
    arrived = lookup_store_key(lookup, key)
    for skey, h in pending.at(lookup, key):
        outputs = run(decode_message(h.topic, h.key, h.value), False)
        # still waiting (for another row now): held again under that key, its wait still counted from since_ms
        _route(plan, pending, outputs, lambda table, h=h: replace(h, table=table), only_table=h.table,
               close_of=close_of)
        if not any(isinstance(o, Waiting) and o.table == h.table
                   and lookup_store_key(o.missing.lookup, o.missing.key) == arrived for o in outputs):
            plan.release.append(skey)


def plan_batch(events: Iterable[RawEvent], *, mapping: SourceMapping, lookups: MutableMapping[str, Any],
               pending: HeldRecords, run: Run, now_ms: int, close_of: CloseOf | None = None) -> BatchPlan:
    """Decode every event in order; reference rows go into `lookups` BEFORE the change is transformed
    (transform's wiring contract), and records held for a row that just arrived are retried right after
    it. Waiting outputs are parked in `pending`. Tombstones are skipped, heartbeats only move the mark."""
    plan = BatchPlan([], [], {}, {}, {})
    for event in events:
        part = (event.topic, event.partition)
        plan.offsets[part] = event.offset
        message = decode_message(event.topic, event.key, event.value)
        if message is None:
            continue
        if isinstance(message, Heartbeat):
            plan.heartbeats[message.prefix] = max(message.ts_ms, plan.heartbeats.get(message.prefix, 0))
            plan.commits[part] = max(message.ts_ms, plan.commits.get(part, 0))
            continue
        if isinstance(message, DecodeError):
            _route(plan, pending, run(message, False), lambda table: _held_for(event, table, now_ms, None))
            continue
        commit_ms = message.source.commit_time_ms
        if commit_ms is not None:
            plan.commits[part] = max(commit_ms, plan.commits.get(part, 0))
        for lookup, key in apply_updates(lookups, lookup_updates(mapping, message)):
            _retry(plan, pending, run, lookup, key, close_of)
        _route(plan, pending, run(message, False),
               lambda table, event=event, commit_ms=commit_ms: _held_for(event, table, now_ms, commit_ms),
               close_of=close_of)
    plan.outputs = finish_outputs(plan.outputs)
    return plan


def plan_expiry(*, pending: HeldRecords, run: Run, now_ms: int, wait_ms: int,
                free_mark_ms: int | None = None) -> BatchPlan:
    """Held records given up on (HeldRecords.expired): transformed with give_up=True — quarantined with the
    missing key and kept held for the row's late arrival, or released should the record now be complete
    (the row arrived by another path)."""
    plan = BatchPlan([], [], {}, {}, {})
    for skey, h in pending.expired(now_ms, wait_ms, free_mark_ms):
        outputs = [o for o in run(decode_message(h.topic, h.key, h.value), True)
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
