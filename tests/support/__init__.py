"""What the stack tests share (not a test module): waiting on a condition with a deadline, and `Resources`,
the register of everything a test creates on the shared stack — databases, connectors with their
replication slots, topics, consumer groups, background workers — removed at teardown, also after a failure.

Every name a test creates carries a run id (`Resources.id`), so tests never see each other's state nor what
an earlier run left; `make demo` after `make test` shows nothing of them. A register is also written down
(var/test-runs/<id>.json, gone once its cleanup removed everything), so what a killed test run left on the
stack — its workers still running, its connector streaming from its replication slot — is removed when the
next session starts (`sweep_dead_runs`).
"""
from __future__ import annotations

import json
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
from devstack import procs
from hisbridge.settings import Settings

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]          # the checkout
FIXTURES = ROOT / "tests" / "fixtures"
DEMO_MAPPING = ROOT / "schemas" / "mapping" / "demo_hospital.yaml"     # the simulated hospital's own mapping


def mapping_without_work_unit(folder: Path, mapping: Path = DEMO_MAPPING) -> Path:
    """`mapping` less every read of the patient's 工作单位 (patient.work_unit, left empty instead), written in
    `folder` with its value maps still `mapping`'s: a mapping whose patient lookup keeps one column fewer."""
    text = mapping.read_text(encoding="utf-8")
    assert "patient.work_unit" in text and "valuemaps_dir: valuemaps\n" in text
    path = folder / "without_work_unit.yaml"
    path.write_text(text.replace("patient.work_unit", "{const: null}").replace(
        "valuemaps_dir: valuemaps\n", f"valuemaps_dir: {mapping.parent / 'valuemaps'}\n"), encoding="utf-8")
    return path


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


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def sweep_dead_runs(settings: Settings) -> list[str]:
    """What test runs killed before their cleanup left on the stack, removed: their workers stopped, then
    their registers' connectors, slots, databases, topics and groups. A run whose process still runs (a
    session beside this one) is left alone; a register whose cleanup fails again stays for the next sweep.
    Returns one line per register swept."""
    out = []
    for journal in sorted((settings.paths.var / "test-runs").glob("*.json")):
        res = Resources.written_down(settings, journal)
        if res.owner_alive():
            continue
        problems = res.cleanup()
        out.append(f"swept test run {res.id} (pid {res.owner[0]}): {len(res.connectors)} connectors, "
                   f"{len(res.databases)} databases, topics {res.topic_prefixes}, groups {res.groups}"
                   + (f"; left: {'; '.join(problems)}" if problems else ""))
    return out


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
    owner: tuple[int, float | None] = field(default_factory=lambda: (os.getpid(), procs.started_at(os.getpid())))

    # --- registering -------------------------------------------------------------------------------------
    def database(self, server: str, name: str, create: bool = True) -> str:
        """Database `name` on the stack's "his" or "frontend" server (created now, or by the code under test
        when `create` is false); returns its DSN."""
        port = self.settings.stack.his_pg_port if server == "his" else self.settings.stack.frontend_pg_port
        if create:
            admin_statement(port, f'CREATE DATABASE "{name}"')
        self.databases.append((port, name))
        self._write_down()
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
        self._write_down()
        return name

    def topics(self, prefix: str) -> str:
        """Every topic whose name starts with `prefix` is removed at cleanup."""
        self.topic_prefixes.append(prefix)
        self._write_down()
        return prefix

    def groups_starting(self, prefix: str) -> str:
        """Every consumer group whose id starts with `prefix` (an app id and its `.transform`) goes at cleanup."""
        self.groups.append(prefix)
        self._write_down()
        return prefix

    def finally_(self, action: Callable[[], None]) -> None:
        """Run `action` first at cleanup (stop a worker before its topics go)."""
        self.finalizers.append(action)

    # --- written down for a sweep after a killed run ------------------------------------------------------
    @property
    def journal(self) -> Path:
        return self.settings.paths.var / "test-runs" / f"{self.id}.json"

    def _write_down(self) -> None:
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        draft = self.journal.with_suffix(".tmp")
        draft.write_text(json.dumps({"owner": list(self.owner), "connectors": self.connectors,
                                     "databases": self.databases, "topics": self.topic_prefixes,
                                     "groups": self.groups}), encoding="utf-8")
        draft.replace(self.journal)

    @classmethod
    def written_down(cls, settings: Settings, journal: Path) -> "Resources":
        """A register read back. Its workers are not its finalizers (those died with its run): they are
        found by their app id and stopped first."""
        data = json.loads(journal.read_text(encoding="utf-8"))
        res = cls(settings, id=journal.stem, connectors=data["connectors"],
                  databases=[tuple(d) for d in data["databases"]], topic_prefixes=data["topics"],
                  groups=data["groups"], owner=tuple(data["owner"]))
        res.finalizers.append(res._stop_workers)
        return res

    def owner_alive(self) -> bool:
        """The test process that registered these still runs (the same process: its start time too)."""
        pid, started = self.owner
        now = procs.started_at(pid)
        return now is not None and now == started

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
        if not problems:
            self.journal.unlink(missing_ok=True)
        return problems

    def _stop_workers(self) -> None:
        """Workers a killed run left running: processes whose app id (HISBRIDGE_WORKER_APP_ID) is one of its
        groups' (a worker holds its group, which cannot be deleted while it runs)."""
        prefixes = tuple(self.groups)
        for pid in (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()):
            app = _environ(pid).get("HISBRIDGE_WORKER_APP_ID", "")
            if prefixes and app.startswith(prefixes):
                procs.terminate(pid, "hisbridge", timeout=20)

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
