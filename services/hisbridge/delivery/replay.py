"""Replays on the staging side: who asked for what and why (hisbridge.replays), a batch request applied once,
and what a flush carrying replayed rows is ledgered as (kind `replay`, with the operator and reason).

A replay is written here by the operator's command BEFORE anything goes to the replay topic
(hisbridge.contract), so every replayed row the sink stages can be traced to its request. Staged rows
carry the id of the replay that last wrote them (`staged.replay`); a flush carrying any such row is a
`replay` flush. A replay is in flight from its request until the sink has handled every record it sent
(`handled` counts them in the staging transaction, staged or found unchanged) and every row it staged has
gone out: a replay whose records all turn out unchanged is done when the sink has seen them all.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping

SCHEMA_SQL = """
ALTER TABLE hisbridge.staged ADD COLUMN IF NOT EXISTS replay text;
CREATE TABLE IF NOT EXISTS hisbridge.replays (
    id text PRIMARY KEY, kind text NOT NULL CHECK (kind IN ('quarantine', 'batch', 'raw')),
    operator text NOT NULL, reason text NOT NULL, args jsonb NOT NULL, sent bigint NOT NULL DEFAULT 0,
    requested_at timestamptz NOT NULL DEFAULT now(), applied_at timestamptz, delivered_at timestamptz);
ALTER TABLE hisbridge.replays ADD COLUMN IF NOT EXISTS handled bigint NOT NULL DEFAULT 0;
"""


@dataclass(frozen=True)
class Replay:
    id: str
    kind: str
    operator: str
    reason: str
    args: Mapping[str, Any]
    sent: int
    requested_at: datetime
    applied_at: datetime | None
    delivered_at: datetime | None


def new_id() -> str:
    return uuid.uuid4().hex[:16]


def request(conn, kind: str, operator: str, reason: str, args: Mapping[str, Any]) -> str:
    """A new replay (before anything is sent); returns its id."""
    rid = new_id()
    with conn, conn.cursor() as cur:
        cur.execute("INSERT INTO hisbridge.replays (id, kind, operator, reason, args) VALUES (%s, %s, %s, %s, %s)",
                    (rid, kind, operator, reason, json.dumps(args, ensure_ascii=False)))
    return rid


def record_sent(conn, rid: str, sent: int) -> None:
    """How many messages the replay sent; one that sent nothing is done at once, and so is one the sink
    has already handled whole (it may run ahead of this call)."""
    with conn, conn.cursor() as cur:
        cur.execute("""UPDATE hisbridge.replays SET sent = %s, delivered_at = CASE WHEN %s = 0 THEN now() END
                       WHERE id = %s""", (sent, sent, rid))
        mark_delivered(cur)


def record_handled(cur, handled: Mapping[str, int]) -> None:
    """Records of each replay the sink took in this staging transaction (staged or unchanged). A batch the
    sink reads again after a crash counts twice; that can only end a replay's "in flight" early, never
    change what is delivered."""
    for rid, n in handled.items():
        cur.execute("UPDATE hisbridge.replays SET handled = handled + %s WHERE id = %s", (n, rid))


def apply_batch_requests(cur, requests: Iterable[tuple[str, str, str]]) -> int:
    """(replay id, table, batch) from the replay topic: every delivered or pending row of the batch gets a
    new write (so the next flush carries it, with a new report_datetime) — once per replay id, whatever
    Kafka redelivers. Superseded rows (revokes the province never saw) stay as they are."""
    touched = 0
    for rid, table, batch in requests:
        cur.execute("""UPDATE hisbridge.replays SET applied_at = now()
                       WHERE id = %s AND kind = 'batch' AND applied_at IS NULL RETURNING id""", (rid,))
        if cur.fetchone() is None:
            continue
        from hisbridge.delivery.staging import CARRIED
        cur.execute("""UPDATE hisbridge.staged s SET replay = %s, status = 'pending',
                              report_datetime = COALESCE(""" + CARRIED + """, s.report_datetime),
                              seq = nextval('hisbridge.staged_seq')
                       WHERE s.tbl = %s AND s.batch = %s AND s.status <> 'superseded'""", (rid, table, batch))
        touched += cur.rowcount
    return touched


def flush_replay(cur, pending_sql: str, params: Mapping[str, Any]) -> Replay | None:
    """The replay a flush of these carried rows belongs to (the newest, when several are), or None.
    Asked replay by replay (EXISTS stops at the first carried row): with no replay recorded, the carried
    rows are not read at all (a DISTINCT over them read every one before each ordinary flush)."""
    cur.execute("""SELECT r.id, r.kind, r.operator, r.reason, r.args, r.sent, r.requested_at, r.applied_at,
                          r.delivered_at FROM hisbridge.replays r
                   WHERE EXISTS (SELECT 1 FROM hisbridge.staged s WHERE s.replay = r.id AND """ + pending_sql + """)
                   ORDER BY r.requested_at DESC LIMIT 1""", params)
    row = cur.fetchone()
    return Replay(*row) if row else None


def mark_delivered(cur) -> None:
    """Replays the sink has taken whole (a batch request applied; every record sent handled — `sent` is 0
    until the command has recorded it) none of whose rows wait any more: after a flush is marked, after
    the sink handled replayed records, and once a replay's sent count is known."""
    from hisbridge.delivery.staging import LAST_CUT
    cur.execute("""UPDATE hisbridge.replays r SET delivered_at = now()
                   WHERE delivered_at IS NULL
                     AND (kind = 'batch' AND applied_at IS NOT NULL OR kind <> 'batch' AND sent > 0 AND handled >= sent)
                     AND NOT EXISTS (SELECT 1 FROM hisbridge.staged s WHERE s.replay = r.id AND s.status = 'pending'
                                     AND s.seq > """ + LAST_CUT.format(tbl="s.tbl", batch="s.batch") + ")")


def in_flight(conn) -> list[Replay]:
    """Replays requested and not yet delivered whole (newest first)."""
    with conn, conn.cursor() as cur:
        cur.execute("""SELECT id, kind, operator, reason, args, sent, requested_at, applied_at, delivered_at
                       FROM hisbridge.replays WHERE delivered_at IS NULL ORDER BY requested_at DESC""")
        return [Replay(*row) for row in cur.fetchall()]
