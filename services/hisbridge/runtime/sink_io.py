"""The sink's database adapter: delivery.timer's SinkIO over the staging and front-end PostgreSQL databases."""
from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable, Mapping

import psycopg2
from hisbridge.catalog.model import Table
from hisbridge.delivery import staging
from hisbridge.delivery.flush import (FlushResult, PlannedFlush,
                                      ensure_frontend, flush_batch, recover)
from hisbridge.delivery.schedule import Schedule
from hisbridge.delivery.timer import FlushFailed, FrontendUnavailable
from hisbridge.runtime.watermark import (Partition, connector_progress,
                                         table_watermarks)

log = logging.getLogger(__name__)


def _refused(exc: "psycopg2.Error") -> str:
    """A statement error in one line: its class, SQLSTATE and the server's first line."""
    return f"{type(exc).__name__} ({exc.pgcode}): {(str(exc).strip().splitlines() or [''])[0]}"


def _closed(conn) -> None:
    """Close a connection we are giving up on (an error closing it is no news); returns None to store."""
    if conn is not None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 — it is being dropped either way
            pass
    return None


class PgSinkIO:
    """SinkIO over the staging and front-end PostgreSQL databases (connections opened lazily, reopened
    after a failure). `expected` gives the core partitions every connector must have marked."""

    def __init__(self, tables: Mapping[str, Table], topics: Iterable[str], schedule: Schedule,
                 staging_dsn: str, frontend_dsn: str, frontend_sql: Path, app: str,
                 expected: Callable[[], Iterable[Partition]] = tuple,
                 on_flush: Callable[[str, str, int, float], None] | None = None,
                 on_failed: Callable[[str], None] | None = None) -> None:
        self.tables, self.topics, self.schedule, self.expected = dict(tables), list(topics), schedule, expected
        self.on_flush = on_flush    # (table, kind, rows, seconds): the flush metrics
        self.on_failed = on_failed  # (table): a flush refused (FlushFailed)
        self.app = app
        self.staging_dsn, self.frontend_dsn, self.frontend_sql = staging_dsn, frontend_dsn, frontend_sql
        self._stage = None
        self._front = None
        self._ddl_refused: str | None = None

    def _staging(self):
        if self._stage is None or self._stage.closed:
            self._stage = psycopg2.connect(self.staging_dsn, connect_timeout=10)
            staging.ensure_schema(self._stage)
        return self._stage

    def _frontend(self):
        if self._front is None or self._front.closed:
            try:
                self._front = psycopg2.connect(self.frontend_dsn, connect_timeout=5)
                self._ensure_frontend()
            except psycopg2.OperationalError as exc:
                self._front = None
                raise FrontendUnavailable(str(exc).strip()) from None
        return self._front

    def _ensure_frontend(self) -> None:
        """The front-end's tables and ledger. A statement of it refused (a column a table lacks, which a
        comment names, after a catalog revision nobody migrated) leaves the tables as they are: the flushes it
        touches fail on their own and are alerted (FlushFailed), the others go on."""
        try:
            ensure_frontend(self._front, self.frontend_sql)
        except psycopg2.Error as exc:
            if exc.pgcode is None:
                raise
            refused = _refused(exc)
            if refused != self._ddl_refused:          # once, not at every reconnect
                log.error("front-end DDL %s refused, tables left as they are: %s", self.frontend_sql, refused)
            self._ddl_refused = refused
        else:
            self._ddl_refused = None

    def _on_frontend(self, action):
        front = self._frontend()
        try:
            return action(front)
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            if front.closed or getattr(exc, "pgcode", None) is None:
                self.close_frontend()
                raise FrontendUnavailable(str(exc).strip()) from None
            raise

    def close_frontend(self) -> None:
        self._front = _closed(self._front)

    def close(self) -> None:
        """Both connections (a caller done with this I/O: a test's steered run, a one-off tool)."""
        self.close_frontend()
        self._stage = _closed(self._stage)

    def recover(self) -> list[FlushResult]:
        return self._on_frontend(lambda front: recover(self._staging(), front))

    def staged_batches(self) -> list[staging.StagedBatch]:
        return [b for b in staging.staged_batches(self._staging()) if b.table in self.tables]

    def watermarks(self) -> dict[str, datetime | None]:
        conn = self._staging()
        with conn, conn.cursor() as cur:
            cur.execute("SELECT connector, topic, part, commit_ms FROM hisbridge.progress WHERE topic = ANY(%s)",
                        (self.topics,))
            rows = cur.fetchall()
        return table_watermarks(connector_progress(rows, self.expected()), self.tables)

    def flush(self, plan: PlannedFlush, now: datetime) -> FlushResult:
        table = self.tables[plan.table]
        started = time.monotonic()
        try:
            result = self._on_frontend(lambda front: flush_batch(self._staging(), front, table, plan.batch, now,
                                                                 self.schedule))
        except psycopg2.Error as exc:
            if exc.pgcode is None:          # a connection lost, not a statement refused: the step's own path
                raise
            self.reset_staging()            # both sessions fresh for the next table (the attempt rolled back)
            self.close_frontend()
            if self.on_failed is not None:
                self.on_failed(plan.table)
            raise FlushFailed(_refused(exc)) from None
        if self.on_flush is not None and result.outcome == "flushed":
            self.on_flush(result.table, result.kind or "first", result.row_count, time.monotonic() - started)
        return result

    def record_tick(self, now: datetime) -> None:
        staging.record_tick(self._staging(), self.app, now)

    def reset_staging(self) -> None:
        self._stage = _closed(self._stage)
