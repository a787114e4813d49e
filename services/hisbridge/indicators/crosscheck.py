"""The cross-check before submission: evaluation rows about to be staged, compared with the figures derived
from the staged detail of their month; a row beyond tolerance is held — not staged, a quarantine entry
`indicator_mismatch` instead, carrying both values — like a row failing any other rule.

Its life cycle is the quarantine's (delivery.quarantine): the operator corrects the value in the HIS → a new
version arrives, is checked again and, now matching, is staged (the entry resolves as superseded); or the
operator dismisses the entry with a reason, accepting the reported value: a version whose indicator_mismatch
entry was dismissed is never held again (a replay or the next change of that version goes out as reported).

`hold` is handed to staging.upsert_rows by the sink (runtime.sink_worker), which runs it inside the staging
transaction; `split` is the plain decision."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable, Iterable, Mapping

from hisbridge.contract import QuarantineEntry
from hisbridge.indicators import compare, evaluate, source
from hisbridge.indicators.definitions import Definitions

def _month(row, defs: Definitions) -> str | None:
    period = defs.periods.get(row.table)
    value = row.payload.get(period) if period else None
    return str(value)[:7] if value else None


def split(rows: list, defs: Definitions, derived_by_month: Mapping[str, list[evaluate.Derived]],
          dismissed: set[tuple[str, str, str]], now: str) -> tuple[list, list[QuarantineEntry]]:
    """(rows to stage, entries for the held ones). A revoke is never held (there is nothing to compare)."""
    kept, held = [], []
    for row in rows:
        month = _month(row, defs)
        if month is None or row.revoked or month not in derived_by_month \
                or (row.table, row.bkey, f"{row.lsn}:{row.commit_ms}") in dismissed:
            kept.append(row)
            continue
        (found,) = compare.compare(row.table, [row.payload], defs, derived_by_month[month])
        reason = found.reason()
        if reason is None:
            kept.append(row)
            continue
        held.append(QuarantineEntry(
            row.table, ({"rule": reason["rule"], "field": reason["field"], "message": reason["message"]},),
            {"lsn": row.lsn, "commit_time_ms": row.commit_ms, "table": row.table, "check": "indicators"},
            row.batch, dict(row.payload), None, now, row.bkey))
    return kept, held


def _dismissed(cur, rows: list) -> set[tuple[str, str, str]]:
    keys = sorted({(r.table, r.bkey) for r in rows})
    if not keys:
        return set()
    cur.execute("""SELECT tbl, bkey, version FROM hisbridge.quarantine
                   WHERE state = 'dismissed' AND 'indicator_mismatch' = ANY(rules) AND (tbl, bkey) IN %s""",
                (tuple(keys),))
    return {tuple(r) for r in cur.fetchall()}


def hold_for(defs: Definitions) -> Callable:
    """The hook for staging.upsert_rows: (cursor, rows) → (rows to stage, entries to record)."""
    def hold(cur, rows: Iterable) -> tuple[list, list[QuarantineEntry]]:
        rows = list(rows)
        checked = [r for r in rows if _month(r, defs) is not None and not r.revoked]
        if not checked:
            return rows, []
        months = sorted({_month(r, defs) for r in checked})
        derived = {m: evaluate.derive_all(defs.indicators, m, source.detail_rows(cur, defs.indicators, m, "staged"))
                   for m in months}
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return split(rows, defs, derived, _dismissed(cur, checked), now)
    return hold
