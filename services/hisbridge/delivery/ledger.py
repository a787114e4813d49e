"""Ledger: one row per flush (table, batch, report_datetime, row count, checksum over the keys, kind).

The authoritative ledger lives on the front-end database in schema `hisbridge`, written in the same
transaction as the rows it describes — so "did this flush commit?" has one answer that cannot disagree
with the front-end content. The hospital-side copy in staging is reconciled from it (`reconcile`).
report_datetime is Asia/Shanghai wall-clock (the front-end columns are `timestamp without time zone`).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from hisbridge.clock import SHANGHAI
from hisbridge.delivery import ddl

KINDS = ("first", "resubmission", "forced", "replay")

FRONTEND_SQL = """
CREATE SCHEMA IF NOT EXISTS hisbridge;
CREATE TABLE IF NOT EXISTS hisbridge.ledger (
    tbl text NOT NULL, batch text NOT NULL, report_datetime timestamp NOT NULL,
    row_count bigint NOT NULL, checksum text NOT NULL,
    kind text NOT NULL CONSTRAINT ledger_kind_check CHECK (kind IN ('first', 'resubmission', 'forced', 'replay')),
    operator text, reason text, written_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tbl, batch, report_datetime));
-- a ledger created before replays existed: its kind check gains 'replay'
ALTER TABLE hisbridge.ledger DROP CONSTRAINT IF EXISTS ledger_kind_check;
ALTER TABLE hisbridge.ledger ADD CONSTRAINT ledger_kind_check
    CHECK (kind IN ('first', 'resubmission', 'forced', 'replay'));
"""


@dataclass(frozen=True)
class LedgerRow:
    table: str
    batch: str
    report_datetime: datetime   # naive Asia/Shanghai wall-clock
    row_count: int
    checksum: str
    kind: str
    operator: str | None = None
    reason: str | None = None


def ensure_frontend_ledger(conn) -> None:
    """The front-end's ledger (applied once per version: delivery.ddl)."""
    ddl.apply_once(conn, "frontend-ledger", FRONTEND_SQL)


def local_report_datetime(now: datetime, after: datetime | None = None) -> datetime:
    """`now` as Asia/Shanghai wall-clock to the second, strictly later than the batch's last flush
    (a frozen test clock must still give each flush its own ledger key)."""
    if now.tzinfo is None:
        raise ValueError("report_datetime needs an aware moment from the clock")
    moment = now.astimezone(SHANGHAI).replace(tzinfo=None, microsecond=0)
    if after is not None and moment <= after:
        moment = after + timedelta(seconds=1)
    return moment


def find(cur, table: str, batch: str, report_datetime: datetime) -> LedgerRow | None:
    cur.execute("""SELECT tbl, batch, report_datetime, row_count, checksum, kind, operator, reason
                   FROM hisbridge.ledger WHERE tbl = %s AND batch = %s AND report_datetime = %s""",
                (table, batch, report_datetime))
    row = cur.fetchone()
    return LedgerRow(*row) if row else None


def insert(cur, row: LedgerRow) -> None:
    cur.execute("""INSERT INTO hisbridge.ledger (tbl, batch, report_datetime, row_count, checksum, kind,
                                                 operator, reason) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
                (row.table, row.batch, row.report_datetime, row.row_count, row.checksum, row.kind,
                 row.operator, row.reason))


def copy_to_staging(cur, row: LedgerRow) -> None:
    cur.execute("""INSERT INTO hisbridge.ledger (tbl, batch, report_datetime, row_count, checksum, kind,
                                                 operator, reason) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT DO NOTHING""",
                (row.table, row.batch, row.report_datetime, row.row_count, row.checksum, row.kind,
                 row.operator, row.reason))


def last_report_datetime(cur, table: str, batch: str) -> datetime | None:
    cur.execute("SELECT max(report_datetime) FROM hisbridge.ledger WHERE tbl = %s AND batch = %s",
                (table, batch))
    return cur.fetchone()[0]


def last_report_datetimes(cur) -> dict[str, datetime]:
    """Table → report_datetime of its last flush (wall clock, as stored)."""
    cur.execute("SELECT tbl, max(report_datetime) FROM hisbridge.ledger GROUP BY tbl")
    return dict(cur.fetchall())


def rows(conn, table: str | None = None, batch: str | None = None) -> list[LedgerRow]:
    with conn, conn.cursor() as cur:
        cur.execute("""SELECT tbl, batch, report_datetime, row_count, checksum, kind, operator, reason
                       FROM hisbridge.ledger WHERE (%s::text IS NULL OR tbl = %s) AND (%s::text IS NULL OR batch = %s)
                       ORDER BY tbl, batch, report_datetime""", (table, table, batch, batch))
        return [LedgerRow(*r) for r in cur.fetchall()]


def key_checksum_sql(org_expr: str, key_expr: str) -> str:
    """SQL: md5 over the flushed rows' keys (org \\x1f business key), sorted bytewise, \\x1e-joined."""
    joined = f"{org_expr} || chr(31) || {key_expr}"
    return f"md5(coalesce(string_agg({joined}, chr(30) ORDER BY {joined} COLLATE \"C\"), ''))"


def as_dict(row: LedgerRow) -> dict[str, Any]:
    return {"table": row.table, "batch": row.batch, "report_datetime": row.report_datetime.isoformat(),
            "row_count": row.row_count, "checksum": row.checksum, "kind": row.kind,
            "operator": row.operator, "reason": row.reason}
