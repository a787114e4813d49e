"""Reconciliation: HIS ↔ staging ↔ ledger ↔ front-end ↔ quarantine, per table and batch (DESIGN invariant 3).

Pure comparison first (plain sets and counts in, a verdict out), thin readers after it.

  expected     what the HIS says must arrive. From the HIS itself (`compare_with_source`): the business keys
               of the batch that ops.source_keys derives from the mapping's driver tables; each must be
               staged, delivered or quarantined somewhere downstream, else it is `missing`. From the
               simulator (`compare`, the demo and the end-to-end test): keys to deliver and (key, rule)
               pairs to quarantine (sim.expectations, the manifest's planted defects) — stricter, as it
               knows which defect each record carries.
  staged       distinct keys held in staging for the batch (pending + flushed)
  delivered    distinct keys of the front-end table whose batch-time field falls in the batch
  ledger       the flushes of the batch (first, resubmission, forced): row counts and key checksums
  quarantined  distinct (key, rule) pairs of the table's OPEN quarantine entries (delivery.quarantine: a
               released, replayed, superseded or dismissed entry no longer counts)

A batch is OK when delivered + quarantined == expected (as key sets: nothing missing, nothing extra, no key
both delivered and quarantined) and the front-end agrees with the ledger. The ledger check knows two facts
of life: a resubmitted row moves to the resubmission's report_datetime, so an older flush may count more
rows than the front-end still shows under its report_datetime (never fewer than zero, never more); and two
batches flushed in one tick share a report_datetime, so front-end rows are attributed to a batch by their
batch-time field, never by report_datetime alone.

Keys are the transform's business keys ("|"-joined, dates ISO-8601), the same text as on core topics and
in quarantine entries.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable, Mapping

from hisbridge.catalog.model import Catalog, Table
from hisbridge.clock import SHANGHAI, wall_text
from hisbridge.contract import (QuarantineEntry, QuarantineFormatError,
                                parse_entry)
from hisbridge.delivery import quarantine as quarantine_state
from hisbridge.delivery import staging
from hisbridge.delivery.ledger import LedgerRow, key_checksum_sql
from hisbridge.delivery.schedule import batch_by_name
from hisbridge.ops.source_keys import SourceKeys

# --- pure: the verdict ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Expected:
    delivered: frozenset[str] = frozenset()
    quarantined: frozenset[tuple[str, str]] = frozenset()     # (key, rule)


@dataclass(frozen=True)
class FlushCheck:
    """One ledger row against the front-end rows of its batch that still carry its report_datetime."""
    report_datetime: datetime
    kind: str
    ledger_count: int
    frontend_count: int
    checksum_ok: bool | None      # None: not comparable (some rows moved on to a later resubmission)
    ok: bool


@dataclass(frozen=True)
class TableReport:
    table: str
    batch: str
    expected: int
    staged: int
    pending: int
    delivered: int
    quarantined: dict[str, int]                  # rule → distinct keys
    flushes: list[FlushCheck]
    missing: list[str] = field(default_factory=list)       # expected keys neither delivered nor quarantined
    unexpected: list[str] = field(default_factory=list)    # delivered or quarantined but not expected
    wrong_rule: list[str] = field(default_factory=list)    # quarantined for another reason than expected
    both: list[str] = field(default_factory=list)          # delivered AND quarantined
    orphans: int = 0                                       # front-end rows whose report_datetime has no ledger row
    duplicated: list[str] = field(default_factory=list)    # keys on more than one front-end row of the batch
    quarantined_by_key: dict[str, list[str]] = field(default_factory=dict)   # rule → the keys it holds
    unkeyed: int = 0                                       # HIS records of the batch without a business key

    @property
    def ok(self) -> bool:
        return (not (self.missing or self.unexpected or self.wrong_rule or self.both or self.orphans
                     or self.duplicated) and all(f.ok for f in self.flushes))

    @property
    def quarantined_keys(self) -> int:
        return sum(self.quarantined.values())


def check_flushes(ledger_rows: Iterable[LedgerRow], frontend_by_rdt: Mapping[datetime, tuple[int, str]]
                  ) -> tuple[list[FlushCheck], int]:
    """Ledger rows of one (table, batch) in report_datetime order against front-end (count, checksum) per
    report_datetime. The latest flush must match exactly; an earlier one may have lost rows to later ones.
    Returns the checks and the number of front-end rows under a report_datetime the ledger does not know."""
    rows = sorted(ledger_rows, key=lambda r: r.report_datetime)
    checks = []
    for i, row in enumerate(rows):
        count, checksum = frontend_by_rdt.get(row.report_datetime, (0, None))
        last = i == len(rows) - 1
        if count == row.row_count:
            same = checksum == row.checksum
            checks.append(FlushCheck(row.report_datetime, row.kind, row.row_count, count, same, same))
        else:
            checks.append(FlushCheck(row.report_datetime, row.kind, row.row_count, count, None,
                                     not last and count < row.row_count))
    known = {r.report_datetime for r in rows}
    orphans = sum(n for rdt, (n, _) in frontend_by_rdt.items() if rdt not in known)
    return checks, orphans


def compare(table: str, batch: str, expected: Expected, delivered: Iterable[str],
            quarantined: Iterable[tuple[str, str]], staged: int = 0, pending: int = 0,
            flushes: list[FlushCheck] = (), orphans: int = 0) -> TableReport:
    """Expected keys against what was delivered and quarantined (quarantine as distinct (key, rule))."""
    delivered = set(delivered)
    quarantined = set(quarantined)
    q_keys = {k for k, _ in quarantined}
    want_q_keys = {k for k, _ in expected.quarantined}
    want = set(expected.delivered) | want_q_keys
    missing = sorted(want - delivered - q_keys)
    unexpected = sorted((delivered | q_keys) - want)
    wrong_rule = sorted({k for k, r in quarantined ^ set(expected.quarantined) if k in want and k in q_keys})
    both = sorted(delivered & q_keys)
    # a key expected in quarantine but delivered is "both" when also quarantined, else unexpected delivery
    unexpected += sorted((delivered & want_q_keys) - q_keys)
    by_rule: dict[str, int] = defaultdict(int)
    for _, rule in quarantined:
        by_rule[rule] += 1
    return TableReport(table, batch, len(want), staged, pending, len(delivered), dict(sorted(by_rule.items())),
                       list(flushes), missing, unexpected, wrong_rule, both, orphans,
                       quarantined_by_key=quarantine_state.keys_by_rule(quarantined))


def compare_with_source(table: str, batch: str, source: SourceKeys, staged_keys: Iterable[str],
                        delivered: Iterable[str], quarantined: Iterable[tuple[str, str, str | None]],
                        staged: int = 0, pending: int = 0, flushes: list[FlushCheck] = (), orphans: int = 0,
                        duplicated: Iterable[str] = ()) -> TableReport:
    """The HIS's keys of a batch against every place downstream a key can be: staged (not yet or already
    flushed), delivered (front-end, not revoked) or quarantined — a quarantine entry of the table counts
    whatever batch it carries (an entry the worker could not place has batch null). A HIS key in none of
    them is missing; a live staged or delivered key the HIS no longer has is unexpected."""
    want = set(source.keys)
    live = set(staged_keys) | set(delivered)
    pairs = {(k, r) for k, r, b in quarantined if k in want or b == batch}
    q_keys = {k for k, _ in pairs}
    delivered = set(delivered)
    by_rule: dict[str, int] = defaultdict(int)
    for _, rule in pairs:
        by_rule[rule] += 1
    return TableReport(table, batch, len(want), staged, pending, len(delivered), dict(sorted(by_rule.items())),
                       list(flushes), sorted(want - live - q_keys), sorted(live - want), [],
                       sorted(delivered & q_keys), orphans, sorted(set(duplicated)),
                       quarantined_by_key=quarantine_state.keys_by_rule(pairs), unkeyed=source.unkeyed)


# --- thin readers --------------------------------------------------------------------------------------------

def _naive_local(moment: datetime) -> datetime:
    return moment.astimezone(SHANGHAI).replace(tzinfo=None)


def batch_range(table: Table, batch: str) -> tuple[datetime, datetime]:
    """[start, end) of a batch as front-end wall-clock values of the table's batch-time field."""
    b = batch_by_name(table.cadence, batch)
    return _naive_local(b.start), _naive_local(b.end)


def _key_exprs(table: Table) -> list[str]:
    return [f'"{k}"::text' if not _is_date(table, k) else f'to_char("{k}", \'YYYY-MM-DD\')' for k in table.key]


def _is_date(table: Table, name: str) -> bool:
    return table.field(name).type.split("(")[0].strip().lower() == "date"


def key_sql(table: Table) -> str:
    """SQL over a front-end table: the business key text of a row (hisbridge.contract's, "|"-joined)."""
    return " || '|' || ".join(_key_exprs(table))


def frontend_keys(conn, table: Table, batch: str) -> dict[str, datetime]:
    """Business key → report_datetime of the front-end rows whose batch-time field is in the batch."""
    start, end = batch_range(table, batch)
    key = key_sql(table)
    with conn, conn.cursor() as cur:
        cur.execute(f'SELECT {key}, report_datetime FROM "{table.name}" WHERE "{table.batch_time}" >= %s '
                    f'AND "{table.batch_time}" < %s', (start, end))
        return dict(cur.fetchall())


def frontend_live_keys(conn, table: Table, batch: str) -> tuple[set[str], list[str]]:
    """(keys of the batch's front-end rows that are not revoked, keys found on more than one row)."""
    start, end = batch_range(table, batch)
    key = key_sql(table)
    with conn, conn.cursor() as cur:
        cur.execute(f'SELECT {key}, count(*), bool_or(xgbz <> \'1\') FROM "{table.name}" '
                    f'WHERE "{table.batch_time}" >= %s AND "{table.batch_time}" < %s GROUP BY 1', (start, end))
        rows = cur.fetchall()
    return {k for k, _, live in rows if live}, [k for k, n, _ in rows if n > 1]


def staged_live_keys(conn, table: str, batch: str) -> set[str]:
    """Keys staged for (table, batch) that still stand (not revoked, not superseded)."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT bkey FROM hisbridge.staged WHERE tbl = %s AND batch = %s AND NOT revoked "
                    "AND status <> 'superseded'", (table, batch))
        return {k for (k,) in cur.fetchall()}


def frontend_by_report_datetime(conn, table: Table, batch: str) -> dict[datetime, tuple[int, str]]:
    """(count, ledger-style key checksum) per report_datetime of the batch's front-end rows."""
    start, end = batch_range(table, batch)
    checksum = key_checksum_sql('"yljgdm"::text', key_sql(table))
    with conn, conn.cursor() as cur:
        cur.execute(f'SELECT report_datetime, count(*), {checksum} FROM "{table.name}" '
                    f'WHERE "{table.batch_time}" >= %s AND "{table.batch_time}" < %s GROUP BY report_datetime',
                    (start, end))
        return {rdt: (n, c) for rdt, n, c in cur.fetchall()}


def frontend_batches(conn, table: Table) -> list[str]:
    """Batches present in a front-end table (by the batch-time field), oldest first."""
    from hisbridge.chain.batch import period_for as batch_for
    with conn, conn.cursor() as cur:
        cur.execute(f'SELECT DISTINCT "{table.batch_time}" FROM "{table.name}"')
        values = [v for (v,) in cur.fetchall() if v is not None]
    return sorted({batch_for(table.cadence, v).name for v in values})


def staged_counts(conn, table: str, batch: str) -> tuple[int, int]:
    """(distinct keys staged, of which pending — not yet carried by any flush) for a (table, batch)."""
    counts = staging.batch_counts(conn, table, batch)
    return (counts[0].staged, counts[0].pending) if counts else (0, 0)


def open_entries(staging_conn) -> list[QuarantineEntry]:
    """The open quarantine entries (delivery.quarantine), as the entries the transform wrote: what reconcile
    counts (released, replayed, superseded and dismissed ones no longer do)."""
    if not quarantine_state.exists(staging_conn):
        return []
    out = []
    for e in quarantine_state.entries(staging_conn, state="open"):
        try:
            out.append(parse_entry(json.dumps(e.entry)))
        except QuarantineFormatError:
            continue
    return out


def open_quarantine(staging_conn, table: str, batch: str) -> set[tuple[str, str]]:
    """Distinct (key, rule) of the table's open entries in the batch: what reconcile counts."""
    if not quarantine_state.exists(staging_conn):
        return set()
    return quarantine_state.open_pairs(staging_conn, table, batch)


def quarantine_pairs(entries: Iterable, table: str, batches: set[str] | None = None) -> set[tuple[str, str]]:
    """Distinct (key, rule) of a table's entries (optionally only those assigned to `batches`)."""
    return {(e.key, rule) for e in entries if e.table == table and (batches is None or e.batch in batches)
            for rule in e.rules}


def quarantine_triples(entries: Iterable, table: str) -> set[tuple[str, str, str | None]]:
    """Distinct (key, rule, batch) of a table's entries that carry a key, whatever their batch."""
    return {(e.key, rule, e.batch) for e in entries if e.table == table and e.key for rule in e.rules}


def unmatched_entries(entries: Iterable, tables: Iterable[str]) -> list:
    """Entries no key comparison can account for: no key, or a table outside `tables` (e.g. _unknown)."""
    names = set(tables)
    return [e for e in entries if not e.key or e.table not in names]


def reconcile_with_source(table: Table, batch: str, source: SourceKeys, frontend_conn, staging_conn,
                          ledger_rows: list[LedgerRow], quarantine: set[tuple[str, str, str | None]]) -> TableReport:
    delivered, duplicated = frontend_live_keys(frontend_conn, table, batch)
    checks, orphans = check_flushes(ledger_rows, frontend_by_report_datetime(frontend_conn, table, batch))
    staged, pending = staged_counts(staging_conn, table.name, batch)
    return compare_with_source(table.name, batch, source, staged_live_keys(staging_conn, table.name, batch),
                               delivered, quarantine, staged, pending, checks, orphans, duplicated)


def reconcile_table(table: Table, batch: str, expected: Expected, frontend_conn, staging_conn,
                    ledger_rows: list[LedgerRow], quarantine: set[tuple[str, str]]) -> TableReport:
    delivered = frontend_keys(frontend_conn, table, batch)
    checks, orphans = check_flushes(ledger_rows, frontend_by_report_datetime(frontend_conn, table, batch))
    staged, pending = staged_counts(staging_conn, table.name, batch)
    return compare(table.name, batch, expected, delivered, quarantine, staged, pending, checks, orphans)


def format_report(reports: Iterable[TableReport], catalog: Catalog | None = None, show: int = 3) -> list[str]:
    """A fixed-width table for operators (no identity values: keys only in the problem lines)."""
    lines = [f"{'table':<10} {'batch':<10} {'expected':>8} {'staged':>6} {'pending':>7} {'delivered':>9} "
             f"{'quarant.':>8}  {'flushes':<22} result"]
    problems = []
    for r in reports:
        resub = [f for f in r.flushes if f.kind != "first"]
        flushes = ", ".join([f"first {f.ledger_count}" for f in r.flushes if f.kind == "first"]
                            + ([f"{len(resub)} resub {sum(f.ledger_count for f in resub)}"] if resub else [])) or "-"
        lines.append(f"{r.table:<10} {r.batch:<10} {r.expected:>8} {r.staged:>6} {r.pending:>7} {r.delivered:>9} "
                     f"{r.quarantined_keys:>8}  {flushes:<22} {'OK' if r.ok else 'MISMATCH'}")
        for rule, keys in r.quarantined_by_key.items():
            problems.append(f"  {r.table} {r.batch}: quarantined {rule}: {', '.join(keys[:show])}"
                            + (f" … ({len(keys)})" if len(keys) > show else ""))
        for name in ("missing", "unexpected", "wrong_rule", "both", "duplicated"):
            keys = getattr(r, name)
            if keys:
                problems.append(f"  {r.table} {r.batch}: {len(keys)} {name.replace('_', ' ')} e.g. {keys[:show]}")
        if r.unkeyed:
            problems.append(f"  {r.table} {r.batch}: note: {r.unkeyed} HIS record(s) without a business key "
                            f"(cannot be matched key by key)")
        if r.orphans:
            problems.append(f"  {r.table} {r.batch}: {r.orphans} front-end rows under a report_datetime without ledger row")
        for f in r.flushes:
            if not f.ok:
                problems.append(f"  {r.table} {r.batch}: ledger {wall_text(f.report_datetime, 'microseconds')} "
                                f"{f.kind} counts {f.ledger_count}, "
                                f"front-end shows {f.frontend_count}")
    return lines + problems
