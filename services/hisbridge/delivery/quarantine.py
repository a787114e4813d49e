"""The quarantine's life cycle: one entry per (table, business key, record version), open → resolved | dismissed.

Why a table in the staging database rather than a compacted topic: the sink writes entries in the same
transaction as the staged rows that resolve them (a clean version of the key staged → the entry is resolved,
never a window where both count), reconcile and `hisbridge quarantine` query it by table, batch, rule and
state, and an operator's dismissal is one durable UPDATE. The quarantine topic stays the transport from the
transform; this table is its state (the sink consumes the topic under its own group, offsets after commit).

Record version: the source position of the change (`<lsn>:<commit_ms>`; the raw position for an envelope
that could not be decoded). A key is (table, organisation, business key): a city platform's two hospitals
may upload one business key, and each upload's fate is its own ('' when the record has no organisation: an
envelope that could not be decoded). A key has at most one open entry: the same fact quarantined twice (a batch
re-read after a crash, the same record from two driver tables — a visit and its diagnosis — a replay that
still fails) is that entry, taking the newest version and reasons; an older version arriving late changes
nothing. Resolved and dismissed entries are history and stay as they are.
Resolved: `released` (the reference row arrived, same version staged), `replayed` (staged by a replay),
`superseded` (a newer clean version of the key staged). Dismissed: an operator, with who and why.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping

import psycopg2.extras
from hisbridge.contract import QuarantineEntry, entry_dict

STATES = ("open", "resolved", "dismissed")

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS hisbridge.quarantine (
    id bigserial PRIMARY KEY,
    tbl text NOT NULL, org text NOT NULL DEFAULT '',
    bkey text NOT NULL,                             -- '' when the business key could not be computed
    version text NOT NULL, lsn bigint, commit_ms bigint,
    batch text, rules text[] NOT NULL, entry jsonb NOT NULL,
    state text NOT NULL CHECK (state IN ('open', 'resolved', 'dismissed')),
    first_seen timestamptz NOT NULL DEFAULT now(), changed_at timestamptz NOT NULL DEFAULT now(),
    actor text, note text);                         -- resolved: how; dismissed: the operator and why
-- a staging database from before the organisation was part of the key: the column, filled from the entries
ALTER TABLE hisbridge.quarantine ADD COLUMN IF NOT EXISTS org text NOT NULL DEFAULT '';
UPDATE hisbridge.quarantine SET org = entry->'record'->>'yljgdm'
    WHERE org = '' AND entry->'record'->>'yljgdm' IS NOT NULL;
ALTER TABLE hisbridge.quarantine DROP CONSTRAINT IF EXISTS quarantine_tbl_bkey_version_key;
DROP INDEX IF EXISTS hisbridge.quarantine_one_open;
CREATE UNIQUE INDEX IF NOT EXISTS quarantine_version ON hisbridge.quarantine (tbl, org, bkey, version);
CREATE UNIQUE INDEX IF NOT EXISTS quarantine_open_key ON hisbridge.quarantine (tbl, org, bkey)
    WHERE state = 'open' AND bkey <> '';
"""


@dataclass(frozen=True)
class Entry:
    id: int
    table: str
    key: str
    version: str
    batch: str | None
    rules: list[str]
    entry: Mapping[str, Any]       # the quarantine entry document (identity fields ciphertext)
    state: str
    first_seen: datetime
    changed_at: datetime
    actor: str | None
    note: str | None


# --- pure ------------------------------------------------------------------------------------------------

def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def entry_version(entry: QuarantineEntry) -> str:
    """The record version an entry is about: source lsn and commit time, else the raw position."""
    s = entry.source or {}
    if s.get("lsn") is not None or s.get("commit_time_ms") is not None:
        return f"{s.get('lsn')}:{s.get('commit_time_ms')}"
    return f"{s.get('topic')}@{s.get('position')}"


def entry_org(entry: QuarantineEntry) -> str:
    """The organisation whose record the entry is about ('' when there is no record to tell)."""
    return str((entry.record or {}).get("yljgdm") or "")


def entry_row(entry: QuarantineEntry) -> tuple:
    """(tbl, org, bkey, version, lsn, commit_ms, batch, rules, entry json) for record_entries."""
    s = entry.source or {}
    doc = json.dumps(entry_dict(entry), ensure_ascii=False, sort_keys=True)
    return (entry.table, entry_org(entry), entry.key or "", entry_version(entry), _int_or_none(s.get("lsn")),
            _int_or_none(s.get("commit_time_ms")), entry.batch, sorted(set(entry.rules)), doc)


def _order(row: tuple) -> tuple[int, int]:
    return (row[4] or 0, row[5] or 0)


def distinct_rows(entries: Iterable[QuarantineEntry]) -> list[tuple]:
    """One row per (table, organisation, key) — per version when there is no key — the newest version
    winning (the later entry among equal ones: its reasons are newest)."""
    rows: dict[tuple, tuple] = {}
    for entry in entries:
        row = entry_row(entry)
        slot = row[:3] if row[2] else row[:4]
        if slot not in rows or _order(row) >= _order(rows[slot]):
            rows[slot] = row
    return list(rows.values())


# --- writes (inside the sink's staging transaction) -------------------------------------------------------

# a clean row of the key at this version ({op} "=") or a later one (">") is staged already
# a staged row resolves an entry only for its own organisation (a city: two hospitals may upload one key)
_STAGED_CLEAN = """EXISTS (SELECT 1 FROM hisbridge.staged s WHERE s.tbl = v.tbl AND s.bkey = v.bkey AND v.bkey <> ''
                          AND v.org IN ('', s.org)
                          AND (s.lsn, s.commit_ms) {op} (COALESCE(v.lsn, 0), COALESCE(v.commit_ms, 0)))"""
_VERSION = "(COALESCE({t}.lsn, 0), COALESCE({t}.commit_ms, 0))"


def record_entries(cur, entries: Iterable[QuarantineEntry]) -> int:
    """Entries from the quarantine topic: the key's open entry takes a version at least as new (and its
    reasons); otherwise a new entry, open — or resolved at once when a clean version is staged already —
    unless the key has an entry of that version or a newer one (a late or redelivered fact)."""
    rows = distinct_rows(entries)
    if not rows:
        return 0
    cur.execute("""CREATE TEMP TABLE IF NOT EXISTS quarantine_in (tbl text, org text, bkey text, version text,
                       lsn bigint, commit_ms bigint, batch text, rules text[], entry jsonb) ON COMMIT DELETE ROWS""")
    psycopg2.extras.execute_values(cur, "INSERT INTO quarantine_in VALUES %s", rows,
                                   template="(%s, %s, %s, %s, %s::bigint, %s::bigint, %s, %s::text[], %s::jsonb)")
    cur.execute("""
        UPDATE hisbridge.quarantine q SET version = v.version, lsn = v.lsn, commit_ms = v.commit_ms, batch = v.batch,
               rules = v.rules, entry = v.entry, changed_at = now()
        FROM quarantine_in v
        WHERE q.state = 'open' AND q.bkey <> '' AND q.tbl = v.tbl AND q.org = v.org AND q.bkey = v.bkey
          AND """ + _VERSION.format(t="v") + " >= " + _VERSION.format(t="q") + """
          AND NOT EXISTS (SELECT 1 FROM hisbridge.quarantine d WHERE d.tbl = v.tbl AND d.org = v.org
                          AND d.bkey = v.bkey AND d.version = v.version AND d.id <> q.id)""")
    updated = cur.rowcount
    cur.execute("""
        INSERT INTO hisbridge.quarantine (tbl, org, bkey, version, lsn, commit_ms, batch, rules, entry, state, note)
        SELECT v.tbl, v.org, v.bkey, v.version, v.lsn, v.commit_ms, v.batch, v.rules, v.entry,
               CASE WHEN """ + _STAGED_CLEAN.format(op=">=") + """ THEN 'resolved' ELSE 'open' END,
               CASE WHEN """ + _STAGED_CLEAN.format(op="=") + """ THEN 'released'
                    WHEN """ + _STAGED_CLEAN.format(op=">") + """ THEN 'superseded' END
        FROM quarantine_in v
        WHERE NOT EXISTS (SELECT 1 FROM hisbridge.quarantine q WHERE q.tbl = v.tbl AND q.org = v.org
                          AND q.bkey = v.bkey AND (
                  q.version = v.version OR (v.bkey <> '' AND (q.state = 'open' OR """
                  + _VERSION.format(t="q") + " >= " + _VERSION.format(t="v") + """))))
        ON CONFLICT DO NOTHING""")
    return updated + cur.rowcount


def resolve_staged(cur) -> int:
    """Open entries resolved by the rows just staged (temp table staged_in of staging.upsert_rows): the same
    version (released, or replayed) or a newer one of the key (superseded). An entry without a key is
    matched by its exact source version. Only a row of the entry's own organisation resolves it (a city:
    another hospital's row of the same key is no fix for this one's upload)."""
    cur.execute("""
        UPDATE hisbridge.quarantine q SET state = 'resolved', changed_at = now(),
               note = CASE WHEN i.replay IS NOT NULL THEN 'replayed'
                           WHEN (q.lsn, q.commit_ms) = (i.lsn, i.commit_ms) THEN 'released'
                           ELSE 'superseded' END,
               actor = i.replay
        FROM staged_in i
        WHERE q.state = 'open' AND q.tbl = i.tbl
          AND q.org IN ('', i.org)
          AND ((q.bkey = i.bkey AND (COALESCE(q.lsn, 0), COALESCE(q.commit_ms, 0)) <= (i.lsn, i.commit_ms))
               OR (q.bkey = '' AND (q.lsn, q.commit_ms) = (i.lsn, i.commit_ms)))""")
    return cur.rowcount


class NotDismissable(LookupError):
    """No entry with that id, or it is not open."""


def dismiss(conn, entry_id: int, operator: str, reason: str) -> Entry:
    """An operator's decision: the open entry no longer counts (who and why kept)."""
    with conn, conn.cursor() as cur:
        cur.execute("""UPDATE hisbridge.quarantine SET state = 'dismissed', actor = %s, note = %s, changed_at = now()
                       WHERE id = %s AND state = 'open' RETURNING id""", (operator, reason, entry_id))
        if cur.fetchone() is None:
            raise NotDismissable(entry_id)
    return get(conn, entry_id)  # type: ignore[return-value]


# --- reads -----------------------------------------------------------------------------------------------

_COLUMNS = "id, tbl, bkey, version, batch, rules, entry, state, first_seen, changed_at, actor, note"


def _filters(table: str | None, batch: str | None, rule: str | None, state: str | None) -> tuple[str, dict]:
    return ("""(%(tbl)s::text IS NULL OR tbl = %(tbl)s) AND (%(batch)s::text IS NULL OR batch = %(batch)s)
               AND (%(rule)s::text IS NULL OR %(rule)s = ANY (rules)) AND (%(state)s::text IS NULL OR state = %(state)s)""",
            {"tbl": table, "batch": batch, "rule": rule, "state": state})


def entries(conn, table: str | None = None, batch: str | None = None, rule: str | None = None,
            state: str | None = None, limit: int | None = None) -> list[Entry]:
    where, params = _filters(table, batch, rule, state)
    with conn, conn.cursor() as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM hisbridge.quarantine WHERE {where} ORDER BY id LIMIT %(limit)s",
                    {**params, "limit": limit})
        return [Entry(*row) for row in cur.fetchall()]


def get(conn, entry_id: int) -> Entry | None:
    with conn, conn.cursor() as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM hisbridge.quarantine WHERE id = %s", (entry_id,))
        row = cur.fetchone()
    return Entry(*row) if row else None


def counts(conn, table: str | None = None, batch: str | None = None, rule: str | None = None,
           state: str | None = "open") -> list[tuple[str, str, str, int]]:
    """(rule, table, state, entries) — an entry with two rules counts under each."""
    where, params = _filters(table, batch, rule, state)
    with conn, conn.cursor() as cur:
        cur.execute(f"""SELECT r, tbl, state, count(*) FROM hisbridge.quarantine, unnest(rules) AS r
                        WHERE {where} AND (%(rule)s::text IS NULL OR r = %(rule)s)
                        GROUP BY r, tbl, state ORDER BY r, tbl, state""", params)
        return cur.fetchall()


def open_pairs(conn, table: str, batch: str | None = None) -> set[tuple[str, str]]:
    """Distinct (business key, rule) of a table's open entries (of one batch): what reconcile counts."""
    with conn, conn.cursor() as cur:
        cur.execute("""SELECT DISTINCT bkey, r FROM hisbridge.quarantine, unnest(rules) AS r
                       WHERE state = 'open' AND tbl = %s AND (%s::text IS NULL OR batch = %s)""",
                    (table, batch, batch))
        return {(k or None, r) for k, r in cur.fetchall()}


def keys_by_rule(pairs: Iterable[tuple[str | None, str]]) -> dict[str, list[str]]:
    """rule → sorted business keys (reconcile's listing)."""
    out: dict[str, set[str]] = {}
    for key, rule in pairs:
        out.setdefault(rule, set()).add(key or "(no key)")
    return {rule: sorted(keys) for rule, keys in sorted(out.items())}


def exists(conn) -> bool:
    with conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('hisbridge.quarantine') IS NOT NULL")
        return cur.fetchone()[0]
