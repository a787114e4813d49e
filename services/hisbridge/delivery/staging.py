"""Staging database (hospital side): one row per (table, organisation, business key), newest source
version wins by source order (LSN, then commit time) — never by arrival.

Row status: pending (to be sent), flushed (sent, with the report_datetime of that flush), superseded (a
revoke of a record never sent: nothing to tell the province). A newer version of a flushed row becomes
pending again and goes out as a resubmission. Every write takes a new `seq`; a planned flush stores the
cut (the highest seq committed when it was planned) and sends only rows above the batch's previous cut and
at or below its own — a row written later (a newer version) stays pending for the next window (see
flush.flush_batch). Writers hold a shared advisory lock that the planner takes exclusively, so the cut is
clean.

Marking a flush is one row in `hisbridge.flushed` (table, batch, cut, report_datetime), not an UPDATE of
every row it carried (rewriting a million wide rows cost more than the flush itself). "Flushed" is thus
derived: a row stored as pending whose seq is at or below a completed cut of its batch went out with the
earliest such flush. Since any write gives a row a new seq above every existing cut, the derivation is
exact; an upsert over such a row first materialises that report_datetime (so "was ever delivered", which
decides whether a revoke must be sent, survives the new version).
Each row also keeps its front-end columns as one COPY text line (`copy_line`), so a flush streams a column
instead of taking every jsonb payload apart; the payload stays for everything that reads fields. Beside the
line, the layout it was made under (`Table.carried_layout`: the table's carried fields, in order): a line staged
before a catalog revision changed them is made again from its payload when its batch is flushed — streamed
as it was, its values would land in other columns, or in none.
Consumer progress per partition is stored in the same transaction as the rows it covers, so a restart
resumes the watermark from durable state and Kafka offsets may be committed after `upsert_rows` returns.
"""
from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Iterable, Mapping

import psycopg2
import psycopg2.extras
from hisbridge.catalog.model import Table
from hisbridge.catalog.records import to_json
from hisbridge.contract import QuarantineEntry, business_key
from hisbridge.delivery import ddl, quarantine, replay
from hisbridge.delivery.ledger import key_checksum_sql

WRITE_LOCK = 0x4B15_0001  # shared by writers, exclusive for the flush planner

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS hisbridge;
CREATE SEQUENCE IF NOT EXISTS hisbridge.staged_seq;
CREATE TABLE IF NOT EXISTS hisbridge.staged (
    tbl text NOT NULL, org text NOT NULL, bkey text NOT NULL,
    cadence text NOT NULL, batch text NOT NULL,
    payload jsonb NOT NULL, revoked boolean NOT NULL,
    lsn bigint NOT NULL, commit_ms bigint NOT NULL,
    status text NOT NULL CHECK (status IN ('pending', 'flushed', 'superseded')),
    report_datetime timestamp,          -- of the last flush that carried this row
    seq bigint NOT NULL DEFAULT nextval('hisbridge.staged_seq'),  -- staging write order (flush cut)
    PRIMARY KEY (tbl, org, bkey));
-- the payload's front-end columns as one COPY text line (copy_line): a flush reads it instead of taking
-- the jsonb apart field by field, 4-5x less staging CPU. NULL only on rows an older version staged.
ALTER TABLE hisbridge.staged ADD COLUMN IF NOT EXISTS line text;
-- the carried fields the line was made of (Table.carried_layout); NULL with the line, or made before it was kept
ALTER TABLE hisbridge.staged ADD COLUMN IF NOT EXISTS line_of text;
-- fill_lines: pending rows of a batch whose line_of is NULL, below or above the current one (three ranges)
CREATE INDEX IF NOT EXISTS staged_line_of ON hisbridge.staged (tbl, batch, line_of) WHERE status = 'pending';
DROP INDEX IF EXISTS hisbridge.staged_no_line;
-- (tbl, batch, seq): "pending above the last cut" is an index range; staged_batches skips along it
CREATE INDEX IF NOT EXISTS staged_pending_seq ON hisbridge.staged (tbl, batch, seq) WHERE status = 'pending';
DROP INDEX IF EXISTS hisbridge.staged_pending;
CREATE TABLE IF NOT EXISTS hisbridge.flushed (
    tbl text NOT NULL, batch text NOT NULL, cut bigint NOT NULL, report_datetime timestamp NOT NULL,
    PRIMARY KEY (tbl, batch, cut));
CREATE TABLE IF NOT EXISTS hisbridge.flush_plan (
    tbl text NOT NULL, batch text NOT NULL, report_datetime timestamp NOT NULL, kind text NOT NULL,
    cut bigint NOT NULL, window_batch text, operator text, reason text, planned_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tbl, batch));
CREATE TABLE IF NOT EXISTS hisbridge.ledger (
    tbl text NOT NULL, batch text NOT NULL, report_datetime timestamp NOT NULL,
    row_count bigint NOT NULL, checksum text NOT NULL, kind text NOT NULL,
    operator text, reason text, PRIMARY KEY (tbl, batch, report_datetime));
CREATE TABLE IF NOT EXISTS hisbridge.progress (
    connector text NOT NULL, topic text NOT NULL, part integer NOT NULL, commit_ms bigint NOT NULL,
    PRIMARY KEY (connector, topic, part));
-- the flush timer's last step per sink (app id): its clock then, and how many steps it has taken
CREATE TABLE IF NOT EXISTS hisbridge.sink_ticks (
    app text PRIMARY KEY, ticks bigint NOT NULL, clock timestamptz NOT NULL, at timestamptz NOT NULL);
"""


@dataclass(frozen=True)
class StagedBatch:
    table: str
    cadence: str
    batch: str
    pending: int            # rows waiting (new, changed, late)
    flushed_before: bool    # the batch has a ledger row already → what goes now is a resubmission


@dataclass(frozen=True)
class StagedRow:
    table: str
    cadence: str
    org: str
    bkey: str          # the business key (hisbridge.contract: the core record's Kafka key)
    batch: str
    payload: Mapping[str, Any]   # JSON-ready record (identity fields already SM4 ciphertext)
    revoked: bool
    lsn: int
    commit_ms: int
    replay: str | None = None    # the replay that staged it (None: live traffic)
    line: str | None = None      # copy_line of the payload (None: built when flushed, see fill_lines)
    line_of: str | None = None   # carried_layout of the table it was made for (None with the line)


def staged_row(table: Table, record: Mapping[str, Any], batch: str, lsn: int | None, commit_ms: int) -> StagedRow:
    """A final catalog record (decoded, encrypted) with its batch and source position → a staging row."""
    payload = to_json(dict(record))
    key = business_key(table.key, record)
    if key is None:
        raise ValueError(f"a business key field of {table.name} ({', '.join(table.key)}) is empty")
    return StagedRow(table.name, table.cadence, str(record["yljgdm"]), key, batch,
                     payload, str(payload.get("xgbz", "0")) == "1", lsn if lsn is not None else 0, commit_ms,
                     line=copy_line(table, payload), line_of=table.carried_layout)


def ensure_schema(conn) -> None:
    """Staging's tables, with those of replays and the quarantine (applied once per version: delivery.ddl)."""
    ddl.apply_once(conn, "staging", SCHEMA_SQL + replay.SCHEMA_SQL + quarantine.SCHEMA_SQL)


def copy_text(value: Any) -> str:
    """One field in COPY text format."""
    if value is None:
        return r"\N"
    text = value if isinstance(value, str) else str(value)
    return (text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r"))


_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_NEEDS_ESCAPE = re.compile(r"[\x00-\x1f\\]")


def _escape(match: re.Match) -> str:
    char = match.group()
    return _ESCAPES.get(char) or f"\\x{ord(char):02x}"


def _scalar_text(value: Any) -> str:
    """A JSON scalar other than a string as COPY text, as `payload->>'field'` renders it."""
    if value is None:
        return r"\N"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, float):   # jsonb keeps a number as numeric: 1e+16 reads back 10000000000000000
        return format(Decimal(repr(value)), "f")
    return str(value)


def copy_line(table: Table, payload: Mapping[str, Any]) -> str:
    """The payload's carried fields (catalog order) as one COPY text line: field for field what the
    front-end would get from `payload->>'field'`. Every control character is escaped (\\xNN beyond tab,
    newline and return), so the line is also one verbatim CSV field: the flush's way out of staging."""
    values = [payload.get(name) for name in table.carried_names]
    texts = [v if v.__class__ is str else r"\N" if v is None else _scalar_text(v) for v in values]
    # one check of all the strings instead of a regex per field: almost no value needs escaping
    # (isprintable is False for every control character, and for a few Unicode ones that need none)
    strings = "".join([v for v in values if v.__class__ is str])
    if not strings.isprintable() or "\\" in strings:
        texts = [_NEEDS_ESCAPE.sub(_escape, v) if v.__class__ is str else t for v, t in zip(values, texts)]
    return "\t".join(texts)


def _copy_buffer(rows: Iterable[StagedRow]) -> io.StringIO:
    out = io.StringIO()
    for r in rows:
        payload = json.dumps(r.payload, ensure_ascii=False, separators=(",", ":"))
        out.write("\t".join((copy_text(r.table), copy_text(r.cadence), copy_text(r.org), copy_text(r.bkey),
                             copy_text(r.batch), copy_text(payload), "t" if r.revoked else "f",
                             str(r.lsn), str(r.commit_ms), copy_text(r.replay), copy_text(r.line),
                             copy_text(r.line_of))) + "\n")
    out.seek(0)
    return out


# report_datetime of the flush that carried the stored version `s` (NULL: not sent, or not pending)
CARRIED = _CARRIED = """(CASE WHEN s.status = 'pending' THEN (
    SELECT min(f.report_datetime) FROM hisbridge.flushed f
    WHERE f.tbl = s.tbl AND f.batch = s.batch AND f.cut >= s.seq) END)"""

_UPSERT = """
INSERT INTO hisbridge.staged AS s (tbl, cadence, org, bkey, batch, payload, revoked, lsn, commit_ms, status, replay,
                                   line, line_of)
SELECT DISTINCT ON (tbl, org, bkey) tbl, cadence, org, bkey, batch, payload, revoked, lsn, commit_ms,
       CASE WHEN revoked THEN 'superseded' ELSE 'pending' END, replay, line, line_of
FROM staged_in ORDER BY tbl, org, bkey, lsn DESC, commit_ms DESC
ON CONFLICT (tbl, org, bkey) DO UPDATE SET
    cadence = excluded.cadence, batch = excluded.batch, payload = excluded.payload, line = excluded.line,
    line_of = excluded.line_of,
    revoked = excluded.revoked, lsn = excluded.lsn, commit_ms = excluded.commit_ms,
    -- a revoke of a row the province never saw (and no in-flight flush of its batch carries) needs no delivery
    status = CASE WHEN excluded.revoked AND COALESCE(""" + _CARRIED + """, s.report_datetime) IS NULL
                       AND NOT EXISTS (SELECT 1 FROM hisbridge.flush_plan p
                                       WHERE p.tbl = s.tbl AND p.batch = s.batch AND s.seq <= p.cut)
                  THEN 'superseded' ELSE 'pending' END,
    report_datetime = COALESCE(""" + _CARRIED + """, s.report_datetime),
    seq = nextval('hisbridge.staged_seq'), replay = excluded.replay
-- a replay of the same version goes out only when it changed (a mapping or value-map fix): exactly once
WHERE (excluded.lsn, excluded.commit_ms) > (s.lsn, s.commit_ms)
   OR (excluded.replay IS NOT NULL AND (excluded.lsn, excluded.commit_ms) = (s.lsn, s.commit_ms)
       AND excluded.payload IS DISTINCT FROM s.payload)
"""


def upsert_rows(conn, rows: Iterable[StagedRow],
                progress: Mapping[tuple[str, str, int], int] | None = None,
                entries: Iterable[QuarantineEntry] = (), replays: Iterable[tuple[str, str, str]] = (),
                hold: Callable[[Any, list[StagedRow]], tuple[list[StagedRow], list[QuarantineEntry]]] | None = None) -> int:
    """Stage rows in one transaction with the consumer progress they cover, the quarantine entries they
    resolve or that arrived with them, and replay batch requests; returns rows changed. `hold` (the sink's
    cross-checks, e.g. hisbridge.indicators.crosscheck) decides inside the transaction which rows are held
    instead, as quarantine entries."""
    rows = list(rows)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock_shared(%s)", (WRITE_LOCK,))
        if hold is not None:
            rows, held = hold(cur, list(rows))
            entries = [*entries, *held]
        cur.execute("""CREATE TEMP TABLE IF NOT EXISTS staged_in (
                           tbl text, cadence text, org text, bkey text, batch text, payload jsonb,
                           revoked boolean, lsn bigint, commit_ms bigint, replay text, line text,
                           line_of text)
                       ON COMMIT DELETE ROWS""")
        cur.copy_expert("COPY staged_in FROM STDIN", _copy_buffer(rows))
        cur.execute(_UPSERT)
        changed = cur.rowcount
        quarantine.resolve_staged(cur)
        quarantine.record_entries(cur, entries)
        changed += replay.apply_batch_requests(cur, replays)
        handled = _replayed(rows)
        replay.record_handled(cur, handled)
        if handled or replays:
            replay.mark_delivered(cur)
        if progress:
            record_progress(cur, progress)
    return changed


def _replayed(rows: Iterable[StagedRow]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in rows:
        if r.replay is not None:
            counts[r.replay] = counts.get(r.replay, 0) + 1
    return counts


def record_progress(cur, progress: Mapping[tuple[str, str, int], int]) -> None:
    """(connector, topic, partition) → latest consumed source commit ms; never moves backwards."""
    psycopg2.extras.execute_values(cur, """
        INSERT INTO hisbridge.progress AS p (connector, topic, part, commit_ms) VALUES %s
        ON CONFLICT (connector, topic, part) DO UPDATE SET commit_ms = GREATEST(p.commit_ms, excluded.commit_ms)""",
        [(c, t, p, ms) for (c, t, p), ms in progress.items()])


def record_tick(conn, app: str, clock) -> None:
    """One flush-timer step done with `clock` as its now (status shows the sink's clock; tests wait on it)."""
    with conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO hisbridge.sink_ticks AS t (app, ticks, clock, at) VALUES (%s, 1, %s, now())
                       ON CONFLICT (app) DO UPDATE SET ticks = t.ticks + 1, clock = excluded.clock, at = now()""",
                    (app, clock))


def staged_batches(conn) -> list[StagedBatch]:
    """Batches with pending rows, and whether each has been delivered before (→ resubmission).

    Skips along the pending index batch by batch (rows marked by a cut stay in it), then counts only
    the rows above each batch's last cut."""
    with conn, conn.cursor() as cur:
        cur.execute("""
            WITH RECURSIVE b (tbl, batch) AS (
                (SELECT tbl, batch FROM hisbridge.staged WHERE status = 'pending' ORDER BY tbl, batch LIMIT 1)
                UNION ALL
                SELECT n.tbl, n.batch FROM b CROSS JOIN LATERAL (
                    SELECT s.tbl, s.batch FROM hisbridge.staged s
                    WHERE s.status = 'pending' AND (s.tbl, s.batch) > (b.tbl, b.batch)
                    ORDER BY s.tbl, s.batch LIMIT 1) n)
            SELECT b.tbl, p.cadence, b.batch, p.n,
                   EXISTS (SELECT 1 FROM hisbridge.ledger l WHERE l.tbl = b.tbl AND l.batch = b.batch)
            FROM b CROSS JOIN LATERAL (
                SELECT min(s.cadence) AS cadence, count(*) AS n FROM hisbridge.staged s
                WHERE s.status = 'pending' AND s.tbl = b.tbl AND s.batch = b.batch
                  AND s.seq > """ + LAST_CUT.format(tbl="b.tbl", batch="b.batch") + """) p
            WHERE p.n > 0 ORDER BY b.tbl, b.batch""")
        return [StagedBatch(t, c, b, n, before) for t, c, b, n, before in cur.fetchall()]


@dataclass(frozen=True)
class BatchCounts:
    table: str
    batch: str
    staged: int       # distinct keys staged
    pending: int      # of which not carried by any flush yet
    flushed: int
    revoked: int


def batch_counts(conn, table: str | None = None, batch: str | None = None, org: str | None = None,
                 cadence: str | None = None, up_to: str | None = None, limit: int | None = None) -> list[BatchCounts]:
    """Staged / pending / flushed / revoked rows per (table, batch), newest batches first, optionally only
    one table, batch, organisation, cadence, or batches up to `up_to` (status, reconcile, the demo)."""
    with conn, conn.cursor() as cur:
        cur.execute("""
            SELECT s.tbl, s.batch, count(*),
                   count(*) FILTER (WHERE s.status = 'pending' AND s.seq > COALESCE(c.cut, 0)),
                   count(*) FILTER (WHERE s.status = 'flushed' OR (s.status = 'pending' AND s.seq <= COALESCE(c.cut, 0))),
                   count(*) FILTER (WHERE s.revoked)
            FROM hisbridge.staged s
            LEFT JOIN (SELECT tbl, batch, max(cut) AS cut FROM hisbridge.flushed GROUP BY tbl, batch) c
                   ON c.tbl = s.tbl AND c.batch = s.batch
            WHERE (%(tbl)s::text IS NULL OR s.tbl = %(tbl)s) AND (%(batch)s::text IS NULL OR s.batch = %(batch)s)
              AND (%(org)s::text IS NULL OR s.org = %(org)s) AND (%(cadence)s::text IS NULL OR s.cadence = %(cadence)s)
              AND (%(up_to)s::text IS NULL OR s.batch <= %(up_to)s)
            GROUP BY s.tbl, s.batch ORDER BY s.batch DESC, s.tbl LIMIT %(limit)s""",
                    {"tbl": table, "batch": batch, "org": org, "cadence": cadence, "up_to": up_to, "limit": limit})
        return [BatchCounts(*row) for row in cur.fetchall()]


def org_counts(conn, batch: str, cadence: str) -> dict[str, int]:
    """Rows of a batch staged (not revoked) per organisation, over every table of the cadence."""
    with conn, conn.cursor() as cur:
        cur.execute("""SELECT org, count(*) FROM hisbridge.staged WHERE batch = %s AND cadence = %s AND NOT revoked
                       GROUP BY org""", (batch, cadence))
        return dict(cur.fetchall())


# the highest cut already flushed for a (table, batch): rows at or below it have gone out
LAST_CUT = ("(SELECT COALESCE(max(f.cut), 0) FROM hisbridge.flushed f "
            "WHERE f.tbl = {tbl} AND f.batch = {batch})")


PENDING_READS = ("hisbridge.staged", "hisbridge.flushed")   # the tables pending_predicate reads


def pending_predicate() -> str:
    """SQL over `hisbridge.staged s`: the rows a flush of (%(tbl)s, %(batch)s) with cut %(cut)s carries —
    the same set at claim, send and mark (any write moves a row above every existing cut)."""
    return ("s.tbl = %(tbl)s AND s.batch = %(batch)s AND s.status = 'pending' AND s.seq <= %(cut)s"
            " AND s.seq > " + LAST_CUT.format(tbl="%(tbl)s", batch="%(batch)s"))


def key_checksum(cur, table: str, batch: str, cut: int) -> tuple[int, str]:
    """(row count, ledger checksum) of the rows a flush carries: org + business key, as staged."""
    cur.execute("SET LOCAL work_mem = '256MB'")   # sort a million keys in memory
    cur.execute("SELECT count(*), " + key_checksum_sql("s.org", "s.bkey") + " FROM hisbridge.staged s WHERE "
                + pending_predicate(), {"tbl": table, "batch": batch, "cut": cut})
    count, checksum = cur.fetchone()
    return count, checksum


def fill_lines(conn, table: Table, batch: str) -> int:
    """Pending rows of (table, batch) whose line is missing (an older version staged them) or made of other
    fields (staged before a catalog revision): the line built from their payload. The seq guard leaves alone
    a row a writer replaced meanwhile (its new version has its own line)."""
    of = table.carried_layout
    with conn, conn.cursor() as cur:
        cur.execute("""SELECT org, bkey, seq, payload FROM hisbridge.staged
                       WHERE tbl = %(tbl)s AND batch = %(batch)s AND status = 'pending'
                         AND (line_of IS NULL OR line_of < %(of)s OR line_of > %(of)s)""",
                    {"tbl": table.name, "batch": batch, "of": of})
        lines = [(table.name, org, bkey, seq, copy_line(table, payload), of) for org, bkey, seq, payload in cur]
        if lines:
            psycopg2.extras.execute_values(cur, """
                UPDATE hisbridge.staged s SET line = v.line, line_of = v.line_of
                FROM (VALUES %s) AS v (tbl, org, bkey, seq, line, line_of)
                WHERE s.tbl = v.tbl AND s.org = v.org AND s.bkey = v.bkey AND s.seq = v.seq""", lines)
    return len(lines)


def mark_flushed(cur, table: str, batch: str, cut: int, report_datetime) -> None:
    """Every row the flush carried is now flushed (see the module docstring): one row, idempotent."""
    cur.execute("""INSERT INTO hisbridge.flushed (tbl, batch, cut, report_datetime) VALUES (%s, %s, %s, %s)
                   ON CONFLICT DO NOTHING""", (table, batch, cut, report_datetime))


def row_states(conn, table: str, batch: str | None = None) -> dict[tuple[str, str], tuple[str, Any, int]]:
    """(org, bkey) → (status, report_datetime, lsn): for inspection and tests (flushed derived from cuts)."""
    with conn, conn.cursor() as cur:
        cur.execute("""SELECT s.org, s.bkey, CASE WHEN c.rdt IS NOT NULL THEN 'flushed' ELSE s.status END,
                              COALESCE(c.rdt, s.report_datetime), s.lsn
                       FROM hisbridge.staged s CROSS JOIN LATERAL (SELECT """ + _CARRIED + """ AS rdt) c
                       WHERE s.tbl = %s AND (%s::text IS NULL OR s.batch = %s)""", (table, batch, batch))
        return {(o, k): (s, r, lsn) for o, k, s, r, lsn in cur.fetchall()}
