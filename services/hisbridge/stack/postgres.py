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

from hisbridge import config
from hisbridge.stack import procs
from hisbridge.stack.procs import StackError

PG_USER = "postgres"


@dataclass(frozen=True)
class Instance:
    name: str           # component name: pg-his / pg-frontend
    port: int
    databases: tuple[str, ...]
    logical: bool       # wal_level=logical for change data capture

    @property
    def data_dir(self) -> Path:
        return config.var_dir() / "pg" / self.name.removeprefix("pg-")


def his() -> Instance:
    return Instance("pg-his", config.his_pg_port(), ("his",), logical=True)


def frontend() -> Instance:
    return Instance("pg-frontend", config.frontend_pg_port(), ("frontend", "staging"), logical=False)


def pg_bin(tool: str) -> str:
    return str(Path(config.env_str("HISBRIDGE_PG_BIN", "/usr/lib/postgresql/15/bin")) / tool)


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


# postgres itself is trusted on loopback (local dev stack; config.his_dsn() has no password); every
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


def initdb(inst: Instance) -> bool:
    """Create the cluster once; returns True when it was created now."""
    if (inst.data_dir / "PG_VERSION").exists():
        return False
    inst.data_dir.mkdir(parents=True, exist_ok=True)
    inst.data_dir.chmod(0o700)
    chown_to_postgres(inst.data_dir)
    run(as_postgres([pg_bin("initdb"), "-D", str(inst.data_dir), "-A", "trust", "-U", PG_USER,
                     "-E", "UTF8", "--locale=C.UTF-8"]), f"initdb {inst.name}")
    with open(inst.data_dir / "postgresql.conf", "a", encoding="utf-8") as conf:
        conf.write(server_settings(inst))
    (inst.data_dir / "pg_hba.conf").write_text(HBA)
    return True


def run(argv: list[str], what: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise StackError(f"{what} failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def pid(inst: Instance) -> int | None:
    return procs.read_pid(inst.data_dir / "postmaster.pid")


def marker(inst: Instance) -> str:
    return str(inst.data_dir)


def is_running(inst: Instance) -> bool:
    return procs.is_alive(pid(inst), marker(inst))


def ready(inst: Instance) -> bool:
    return subprocess.run([pg_bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(inst.port)],
                          capture_output=True).returncode == 0


def start(inst: Instance) -> bool:
    """Start (creating and bootstrapping on first use); False when it was already running."""
    if is_running(inst) and ready(inst):
        return False
    if not procs.port_bindable(inst.port):
        raise StackError(f"{inst.name}: port {inst.port} is taken by another process")
    created = initdb(inst)
    log = procs.log_file(inst.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch()
    chown_to_postgres(log)
    run(as_postgres([pg_bin("pg_ctl"), "-D", str(inst.data_dir), "-l", str(log), "-w", "-t", "90",
                     "start"]), f"starting {inst.name}")
    procs.wait_until(lambda: ready(inst), 60, f"{inst.name} readiness", log)
    stamp = inst.data_dir.parent / f"{inst.name}.bootstrapped"
    if created or not stamp.exists():
        bootstrap(inst)
        stamp.write_text("ok\n")
    return True


def psql(inst: Instance, dbname: str, sql: str | None = None, file: Path | None = None,
         variables: dict[str, str] | None = None, env: dict[str, str] | None = None) -> str:
    argv = [pg_bin("psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
            "-p", str(inst.port), "-U", PG_USER, "-d", dbname]
    for key, value in (variables or {}).items():
        argv += ["-v", f"{key}={value}"]
    argv += ["-c", sql] if sql is not None else ["-f", str(file)]
    return run(argv, f"psql on {inst.name}/{dbname}", env)


def bootstrap(inst: Instance) -> None:
    """Databases, and on the HIS the CDC role, its capture group and the heartbeat table."""
    for db in inst.databases:
        exists = psql(inst, "postgres", f"SELECT 1 FROM pg_database WHERE datname = '{db}'").strip()
        if not exists:
            psql(inst, "postgres", f'CREATE DATABASE "{db}"')
    if inst.logical:
        psql(inst, inst.databases[0], file=config.connectors_dir() / "postgres-setup.sql",
             variables={"cdc_user": config.his_cdc_user()},
             env={"HISBRIDGE_HIS_PASSWORD": ensure_cdc_password()})


def ensure_cdc_password() -> str:
    """HISBRIDGE_HIS_PASSWORD, else a random secret generated once into var/secrets/ (mode 0600)."""
    if os.environ.get("HISBRIDGE_HIS_PASSWORD"):
        return os.environ["HISBRIDGE_HIS_PASSWORD"]
    path = config.his_cdc_password_file()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(24) + "\n")
    return config.his_cdc_password()


def stop(inst: Instance) -> bool:
    """Fast shutdown; False when it was not running."""
    if not is_running(inst):
        return False
    run(as_postgres([pg_bin("pg_ctl"), "-D", str(inst.data_dir), "-m", "fast", "-w", "-t", "60", "stop"]),
        f"stopping {inst.name}")
    return True


def destroy(inst: Instance) -> None:
    """Remove the data directory (used by `make clean`); the instance must be stopped."""
    if is_running(inst):
        raise StackError(f"{inst.name} is running; stop it first")
    shutil.rmtree(inst.data_dir, ignore_errors=True)
