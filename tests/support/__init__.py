"""What the stack tests share (not a test module): waiting on a condition with a deadline, and `Resources`,
the register of everything a test creates on the shared stack — databases, connectors with their
replication slots, topics, consumer groups, background workers — removed at teardown, also after a failure.

Every name a test creates carries a run id (`Resources.id`), so tests never see each other's state nor what
an earlier run left; `make demo` after `make test` shows nothing of them.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

import psycopg2
from hisbridge.settings import Settings

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]          # the checkout
FIXTURES = ROOT / "tests" / "fixtures"


def end_process(proc: subprocess.Popen | None, graceful: bool = True, timeout: float = 20.0) -> None:
    """End a worker started in its own session (start_new_session): SIGTERM to its group, as an operator
    stops it — it leaves its consumer group on the way out, so the group can be deleted at once, where a
    killed member holds it for the session timeout — and SIGKILL if it does not exit in `timeout`;
    `graceful=False`: kill -9 at once (no shutdown hook runs, no offset is committed on the way out)."""
    if proc is None or proc.poll() is not None:
        return
    if graceful:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            pass
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def wait_for(what: str, check: Callable[[], T], timeout: float = 60.0, every: float = 0.2) -> T:
    """Poll `check` until it returns something truthy (returned); AssertionError naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dsn(port: int, dbname: str) -> str:
    return f"host=127.0.0.1 port={port} dbname={dbname} user=postgres"


def admin_statement(port: int, statement: str, params: tuple = ()) -> list[tuple]:
    """A statement outside a transaction (CREATE / DROP DATABASE, slot management) as the superuser."""
    conn = psycopg2.connect(dsn(port, "postgres"), connect_timeout=5)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


@dataclass
class Resources:
    """What one test (or module) created on the stack; `cleanup()` removes all of it, in dependency order."""
    settings: Settings
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    connectors: list[str] = field(default_factory=list)
    databases: list[tuple[int, str]] = field(default_factory=list)
    topic_prefixes: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    finalizers: list[Callable[[], None]] = field(default_factory=list)

    # --- registering -------------------------------------------------------------------------------------
    def database(self, server: str, name: str, create: bool = True) -> str:
        """Database `name` on the stack's "his" or "frontend" server (created now, or by the code under test
        when `create` is false); returns its DSN."""
        port = self.settings.stack.his_pg_port if server == "his" else self.settings.stack.frontend_pg_port
        if create:
            admin_statement(port, f'CREATE DATABASE "{name}"')
        self.databases.append((port, name))
        return dsn(port, name)

    def cdc_his(self, tag: str, ddl: str | None = None) -> tuple[str, str, str]:
        """A HIS database of this test's own on the stack's PostgreSQL HIS, prepared for capture (role,
        publication rights), with `ddl` run in it; its topic prefix and heartbeat topic registered.
        Returns (database, DSN, topic prefix)."""
        import devstack
        from hisbridge.contract import heartbeat_topic
        db = f"{tag}_{self.id}"
        his_dsn = self.database("his", db)
        devstack.postgres.his(self.settings).prepare_cdc(db)
        if ddl:
            conn = psycopg2.connect(his_dsn)
            conn.autocommit = True
            try:
                with conn.cursor() as cur:
                    cur.execute(ddl)
            finally:
                conn.close()
        prefix = self.topics(f"{tag.replace('_', '')}{self.id}")
        self.topics(heartbeat_topic(prefix))
        return db, his_dsn, prefix

    def connector(self, name: str) -> str:
        self.connectors.append(name)
        return name

    def topics(self, prefix: str) -> str:
        """Every topic whose name starts with `prefix` is removed at cleanup."""
        self.topic_prefixes.append(prefix)
        return prefix

    def groups_starting(self, prefix: str) -> str:
        """Every consumer group whose id starts with `prefix` (an app id and its `.transform`) goes at cleanup."""
        self.groups.append(prefix)
        return prefix

    def finally_(self, action: Callable[[], None]) -> None:
        """Run `action` first at cleanup (stop a worker before its topics go)."""
        self.finalizers.append(action)

    # --- removing ----------------------------------------------------------------------------------------
    def cleanup(self) -> list[str]:
        """Remove everything; returns what could not be removed (the fixture fails the test on it)."""
        problems: list[str] = []
        for step in [*reversed(self.finalizers), self._drop_connectors, self._drop_databases,
                     self._drop_topics_and_groups]:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 — every step runs; all problems are reported
                problems.append(f"{getattr(step, '__name__', step)}: {type(exc).__name__}: {exc}")
        return problems

    def _drop_connectors(self) -> None:
        from hisbridge.ops import connectors
        for name in self.connectors:
            connectors.delete(self.settings, name)
            slot = connectors.slot_name(name)
            port = self.settings.stack.his_pg_port
            # the task releases its slot a moment after the delete; an active slot cannot be dropped
            wait_for(f"replication slot {slot} released", lambda: not admin_statement(
                port, "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND active", (slot,)), 60, 0.5)
            admin_statement(port, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                                  "WHERE slot_name = %s", (slot,))

    def _drop_databases(self) -> None:
        for port, name in reversed(self.databases):
            admin_statement(port, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _drop_topics_and_groups(self) -> None:
        """Until none of our topics and groups is left: a killed worker stays a group member until its session
        times out (the delete is refused meanwhile), and a topic deleted while a client still asks for its
        metadata may be created again (auto.create.topics.enable)."""
        from kafka.admin import KafkaAdminClient
        admin = KafkaAdminClient(bootstrap_servers=self.settings.connections.kafka_bootstrap,
                                 client_id=f"test-cleanup-{self.id}")
        topic_prefixes, group_prefixes = tuple(self.topic_prefixes), tuple(self.groups)

        def ours() -> tuple[list[str], list[str]]:
            topics = [t for t in admin.list_topics() if topic_prefixes and t.startswith(topic_prefixes)]
            groups = [g["group_id"] for g in admin.list_groups() if group_prefixes and g["group_id"].startswith(group_prefixes)]
            return topics, groups

        def removed() -> bool:
            topics, groups = ours()
            if topics:
                admin.delete_topics(topics, raise_errors=False)
            if groups:
                admin.delete_groups(groups)
            return not any(ours())

        try:
            wait_for(f"topics {topic_prefixes} and groups {group_prefixes} removed", removed, timeout=90, every=2)
        finally:
            admin.close()
