"""The two local PostgreSQL 15 instances: "his" (wal_level=logical, read by Debezium) and "frontend"
(databases frontend and staging). Two instances so the front-end can be stopped alone in failure tests.
PostgreSQL refuses to run as root, so as root every server command goes through `runuser -u postgres`
and the data directory belongs to postgres.
"""
from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devstack import procs
from devstack.procs import Procs, StackError
from hisbridge.settings import Settings

PG_USER = "postgres"


@dataclass(frozen=True)
class Instance:
    name: str           # component name: pg-his / pg-frontend
    port: int
    databases: tuple[str, ...]
    logical: bool       # wal_level=logical for change data capture
    data_dir: Path
    log: Path
    pg_bin: Path
    # given at every start (`-c name=value`), so a cluster created before a setting existed gets it too
    options: tuple[tuple[str, str], ...] = ()

    def tool(self, name: str) -> str:
        return str(self.pg_bin / name)


def as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", PG_USER, "--", *argv] if os.geteuid() == 0 else argv


def server_settings(inst: Instance) -> str:
    """Appended to postgresql.conf at initdb; loopback only, socket inside the data dir."""
    lines = [f"port = {inst.port}", "listen_addresses = '127.0.0.1'",
             f"unix_socket_directories = '{inst.data_dir}'", "password_encryption = 'scram-sha-256'",
             "shared_buffers = '256MB'", "max_connections = 100",
             # a 1,000,000-row flush writes ~470 MiB of WAL (a staging load about as much again): with the
             # default 1GB a checkpoint is forced in mid-delivery and full-page images swell the WAL after it
             "max_wal_size = '4GB'"]
    if inst.logical:
        lines += ["wal_level = logical", "max_replication_slots = 8", "max_wal_senders = 8"]
    return "\n# hisbridge local stack\n" + "\n".join(lines) + "\n"


# postgres itself is trusted on loopback (local dev stack; the default HIS DSN has no password); every
# other role, notably the Debezium replication role, must authenticate with SCRAM over TCP.
HBA = """# hisbridge local stack
local   all          postgres                  trust
host    all          postgres  127.0.0.1/32    trust
host    all          all       127.0.0.1/32    scram-sha-256
host    replication  all       127.0.0.1/32    scram-sha-256
"""


def chown_to_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(PG_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def run(argv: list[str], what: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, env=procs.child_environment(env))
    if proc.returncode != 0:
        raise StackError(f"{what} failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def initdb(inst: Instance) -> bool:
    """Create the cluster once; returns True when it was created now."""
    if (inst.data_dir / "PG_VERSION").exists():
        return False
    inst.data_dir.mkdir(parents=True, exist_ok=True)
    inst.data_dir.chmod(0o700)
    chown_to_postgres(inst.data_dir)
    run(as_postgres([inst.tool("initdb"), "-D", str(inst.data_dir), "-A", "trust", "-U", PG_USER,
                     "-E", "UTF8", "--locale=C.UTF-8"]), f"initdb {inst.name}")
    with open(inst.data_dir / "postgresql.conf", "a", encoding="utf-8") as conf:
        conf.write(server_settings(inst))
    (inst.data_dir / "pg_hba.conf").write_text(HBA)
    return True


def ctl(inst: Instance, *args: str) -> None:
    """pg_ctl on the instance as the postgres user (start, stop, status…)."""
    run(as_postgres([inst.tool("pg_ctl"), "-D", str(inst.data_dir), *args]), f"pg_ctl {' '.join(args)} {inst.name}")


def start_options(inst: Instance) -> list[str]:
    """pg_ctl's -o with the instance's server options (values must not contain spaces or quotes)."""
    return ["-o", " ".join(f"-c {name}={value}" for name, value in inst.options)] if inst.options else []


def ready(inst: Instance) -> bool:
    return subprocess.run([inst.tool("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(inst.port)],
                          capture_output=True).returncode == 0


def psql(inst: Instance, dbname: str, sql: str | None = None, file: Path | None = None,
         variables: dict[str, str] | None = None, env: dict[str, str] | None = None) -> str:
    argv = [inst.tool("psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
            "-p", str(inst.port), "-U", PG_USER, "-d", dbname]
    for key, value in (variables or {}).items():
        argv += ["-v", f"{key}={value}"]
    argv += ["-c", sql] if sql is not None else ["-f", str(file)]
    return run(argv, f"psql on {inst.name}/{dbname}", env)


def ensure_cdc_password(settings: Settings) -> str:
    """source.password, else a random secret generated once into paths.secrets (mode 0600)."""
    if settings.source.password is not None:
        return settings.source.password.reveal()
    path = settings.paths.his_cdc_password_file
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(24) + "\n")
    return path.read_text(encoding="utf-8").strip()


class Postgres:
    """One of the stack's PostgreSQL servers as a stack component."""
    in_stack = True

    def __init__(self, settings: Settings, inst: Instance) -> None:
        self.settings, self.inst, self.name, self.port = settings, inst, inst.name, inst.port

    def pid(self) -> int | None:
        return procs.read_pid(self.inst.data_dir / "postmaster.pid")

    def is_running(self) -> bool:
        return procs.is_alive(self.pid(), str(self.inst.data_dir))

    def start(self) -> bool:
        """Start (creating and bootstrapping on first use); False when it was already running."""
        inst = self.inst
        if self.is_running() and ready(inst):
            return False
        if not procs.port_bindable(inst.port):
            raise StackError(f"{inst.name}: port {inst.port} is taken by another process")
        created = initdb(inst)
        inst.log.parent.mkdir(parents=True, exist_ok=True)
        inst.log.touch()
        chown_to_postgres(inst.log)
        ctl(inst, "-l", str(inst.log), "-w", "-t", "90", *start_options(inst), "start")
        procs.wait_until(lambda: ready(inst), 60, f"{inst.name} readiness", inst.log)
        stamp = inst.data_dir.parent / f"{inst.name}.bootstrapped"
        if created or not stamp.exists():
            self.bootstrap()
            stamp.write_text("ok\n")
        return True

    def bootstrap(self) -> None:
        """Databases, and on the HIS the CDC role, its capture group and the heartbeat table."""
        for db in self.inst.databases:
            self.create_database(db)
        if self.inst.logical:
            self.prepare_cdc(self.inst.databases[0])

    def create_database(self, db: str) -> bool:
        """CREATE DATABASE unless it exists; True when it was created now."""
        if psql(self.inst, "postgres", f"SELECT 1 FROM pg_database WHERE datname = '{db}'").strip():
            return False
        psql(self.inst, "postgres", f'CREATE DATABASE "{db}"')
        return True

    def prepare_cdc(self, db: str) -> None:
        """connectors/postgres-setup.sql in `db`: the CDC role, its capture group, the heartbeat table."""
        psql(self.inst, db, file=self.settings.paths.connectors / "postgres-setup.sql",
             variables={"cdc_user": self.settings.source.user},
             env={"HISBRIDGE_HIS_PASSWORD": ensure_cdc_password(self.settings)})

    def stop(self) -> bool:
        """Fast shutdown; False when it was not running."""
        if not self.is_running():
            return False
        ctl(self.inst, "-m", "fast", "-w", "-t", "60", "stop")
        return True

    def destroy(self) -> None:
        """Remove the data directory (used by `make clean`); the instance must be stopped."""
        if self.is_running():
            raise StackError(f"{self.name} is running; stop it first")
        shutil.rmtree(self.inst.data_dir, ignore_errors=True)


def _instance(settings: Settings, name: str, port: int, databases: tuple[str, ...], logical: bool,
              options: tuple[tuple[str, str], ...] = ()) -> Instance:
    return Instance(name, port, databases, logical, settings.paths.var / "pg" / name.removeprefix("pg-"),
                    Procs(settings.paths.var).log_file(name), settings.stack.pg_bin, options)


def his(settings: Settings) -> Postgres:
    """The HIS: a replication slot whose connector is failed or paused keeps WAL only up to
    max_slot_wal_keep_size; past it PostgreSQL invalidates the slot (wal_status 'lost') instead of filling the
    disk — connectors/README.md says how that is detected and re-snapshotted."""
    options = (("max_slot_wal_keep_size", settings.stack.his_slot_wal_keep),)
    return Postgres(settings, _instance(settings, "pg-his", settings.stack.his_pg_port, ("his",), True, options))


def frontend(settings: Settings) -> Postgres:
    return Postgres(settings, _instance(settings, "pg-frontend", settings.stack.frontend_pg_port,
                                        ("frontend", "staging"), False))
