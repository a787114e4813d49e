"""The local MariaDB HIS (`mariadb-his`): a private mariadbd for the binlog-based Debezium connector.

Everything lives under `<var>/mariadb/<name>/` — my.cnf, data/, binlog/, run/ (socket, pid) — and every
MariaDB program gets `--defaults-file=` that my.cnf, so /etc/mysql is never read and Debian's own service
(not installed: `deploy/install-mariadb.sh` takes mariadb-server-core + mariadb-client only) is never involved.
As root the server runs as the `mysql` user (mariadbd refuses root too) and the folders belong to it.

What Debezium needs of the server (connectors/README.md says why): binlog in ROW format with FULL row
images, a unique server_id, GTIDs (always on in MariaDB; strict mode on), the server time zone
Asia/Shanghai (TIMESTAMP columns then stream as the HIS meant them; the tz tables are loaded once), loopback
only. First start: mariadb-install-db (root logs in over the private socket by unix_socket auth, so there
is no administrator password anywhere), the time-zone tables, then connectors/mariadb-setup.sql (heartbeat
table, the CDC user with the generated password). Idempotent; `stop` is a clean SIGTERM shutdown.
"""
from __future__ import annotations

import getpass
import os
import pwd
import shutil
import string
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devstack import procs
from devstack.postgres import ensure_cdc_password
from devstack.procs import Procs, StackError
from hisbridge.settings import Settings

OS_USER = "mysql"
TIME_ZONE = "Asia/Shanghai"
INSTALL_HINT = "run `make mariadb` (deploy/install-mariadb.sh: apt-get install mariadb-server-core mariadb-client)"


@dataclass(frozen=True)
class Layout:
    """One server's files (`home` = <var>/mariadb/<name> for the stack's, a test's own folder otherwise)."""
    home: Path

    @property
    def cnf(self) -> Path:
        return self.home / "my.cnf"

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def binlog(self) -> Path:
        return self.home / "binlog"

    @property
    def run(self) -> Path:
        return self.home / "run"

    @property
    def socket(self) -> Path:
        return self.run / "mariadbd.sock"

    @property
    def pid_file(self) -> Path:
        return self.run / "mariadbd.pid"

    def stamp(self, step: str) -> Path:
        return self.home / f".{step}.done"


def server_cnf(layout: Layout, port: int, time_zone: str | None, as_root: bool) -> str:
    """my.cnf: [client] for the tools, [mysqld] for mariadbd and mariadb-install-db."""
    lines = ["[client]", f"socket = {layout.socket}", f"port = {port}", "default-character-set = utf8mb4", "",
             "[mysqld]"]
    lines += [f"user = {OS_USER}"] if as_root else []
    lines += [f"datadir = {layout.data}", f"socket = {layout.socket}", f"pid-file = {layout.pid_file}",
              f"port = {port}", "bind-address = 127.0.0.1", "skip-name-resolve",
              "character-set-server = utf8mb4", "collation-server = utf8mb4_unicode_ci",
              # the binlog Debezium reads: every row change with its full before and after image
              f"server_id = {port}", f"log_bin = {layout.binlog / 'mariadb-bin'}",
              f"log_bin_index = {layout.binlog / 'mariadb-bin.index'}", "binlog_format = ROW",
              "binlog_row_image = FULL", "binlog_row_metadata = FULL", "gtid_strict_mode = ON",
              "log_slave_updates = ON", "binlog_expire_logs_seconds = 604800",
              # small: a development HIS on a shared 2-core machine
              "innodb_buffer_pool_size = 64M", "innodb_log_file_size = 48M", "performance_schema = OFF",
              "max_connections = 60"]
    lines += [f"default_time_zone = {time_zone}"] if time_zone else []
    return "\n".join(lines) + "\n"


def sql_literal(text: str) -> str:
    """A MariaDB string literal (backslash and quote escaped: the default sql_mode reads backslashes)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class MariaDb:
    """A private mariadbd as a stack component (the stack's `mariadb-his`, or a test's own server)."""
    in_stack = True

    def __init__(self, settings: Settings, name: str = "mariadb-his", port: int | None = None,
                 home: Path | None = None) -> None:
        self.settings, self.name = settings, name
        self.port = port if port is not None else settings.stack.his_mariadb_port
        self.layout = Layout(home if home is not None else settings.paths.var / "mariadb" / name)
        self.procs = Procs(settings.paths.var)
        self.as_root = os.geteuid() == 0

    # --- tools ------------------------------------------------------------------------------------------
    @property
    def admin_user(self) -> str:
        """Who logs in over the socket by unix_socket auth: the OS user that ran mariadb-install-db."""
        return "root" if self.as_root else getpass.getuser()

    def admin_dsn(self, dbname: str = "his") -> str:
        """The keyword DSN of this server's administrator (connections.his_mariadb_dsn's form)."""
        return f"unix_socket={self.layout.socket} user={self.admin_user} dbname={dbname}"

    def tool(self, name: str) -> str:
        """mariadb-install-db, mariadb, … beside the server binary (/usr/sbin/mariadbd → /usr/bin/<name>)."""
        mariadbd = self.settings.stack.mariadbd
        for folder in (mariadbd.parent.parent / "bin", mariadbd.parent):
            if (folder / name).exists():
                return str(folder / name)
        raise StackError(f"{self.name}: {name} not found beside {mariadbd}; {INSTALL_HINT}")

    def sql(self, statement: str | None = None, stdin: str | None = None, database: str = "") -> str:
        """Run SQL as the administrator over the private socket (stdin keeps secrets off the command line)."""
        argv = [self.tool("mariadb"), f"--defaults-file={self.layout.cnf}", "-u", self.admin_user, "-N", "-B"]
        argv += ["-e", statement] if statement is not None else []
        argv += [database] if database else []
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True)
        if proc.returncode != 0:
            raise StackError(f"{self.name}: SQL failed: {proc.stderr.strip()[:500]}")
        return proc.stdout

    # --- state ------------------------------------------------------------------------------------------
    def pid(self) -> int | None:
        return procs.read_pid(self.layout.pid_file) or self.procs.pid(self.name)

    def is_running(self) -> bool:
        return procs.is_alive(self.pid(), str(self.layout.cnf))

    def ready(self) -> bool:
        if not self.layout.socket.exists() or not procs.port_open(self.port):
            return False
        argv = [self.tool("mariadb-admin"), f"--defaults-file={self.layout.cnf}", "-u", self.admin_user,
                "--connect-timeout=2", "status"]
        return subprocess.run(argv, capture_output=True).returncode == 0

    # --- life cycle -------------------------------------------------------------------------------------
    def _own(self, *paths: Path) -> None:
        if self.as_root:
            entry = pwd.getpwnam(OS_USER)
            for path in paths:
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def _check_installed(self) -> None:
        if not self.settings.stack.mariadbd.exists():
            raise StackError(f"{self.name}: MariaDB is not installed ({self.settings.stack.mariadbd} missing); "
                             f"{INSTALL_HINT}")
        if self.as_root:
            try:
                pwd.getpwnam(OS_USER)
            except KeyError:
                raise StackError(f"{self.name}: the `{OS_USER}` system user is missing; {INSTALL_HINT}") from None

    def _write_cnf(self) -> None:
        tz = TIME_ZONE if self.layout.stamp("timezones").exists() else None
        self.layout.cnf.write_text(server_cnf(self.layout, self.port, tz, self.as_root))

    def _initialise(self) -> None:
        """mariadb-install-db once (data/mysql is its mark)."""
        layout = self.layout
        for folder in (layout.home, layout.data, layout.binlog, layout.run):
            folder.mkdir(parents=True, exist_ok=True)
        self._own(layout.data, layout.binlog, layout.run)
        layout.data.chmod(0o750)
        self._write_cnf()
        if (layout.data / "mysql").exists():
            return
        argv = [self.tool("mariadb-install-db"), f"--defaults-file={layout.cnf}", "--skip-test-db",
                "--auth-root-authentication-method=socket"] + ([f"--user={OS_USER}"] if self.as_root else [])
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            raise StackError(f"{self.name}: mariadb-install-db failed: {(proc.stderr or proc.stdout).strip()[-800:]}")

    def start(self) -> bool:
        """Start (initialising and bootstrapping on first use); False when it was already running."""
        if self.is_running() and self.ready():
            return False
        self._check_installed()
        if not procs.port_bindable(self.port):
            raise StackError(f"{self.name}: port {self.port} is taken by another process")
        self._initialise()
        new_pid = self.procs.spawn(self.name, [str(self.settings.stack.mariadbd), f"--defaults-file={self.layout.cnf}"])
        procs.wait_until(self.ready, 60, f"{self.name} readiness", self.procs.log_file(self.name),
                         alive=lambda: procs.is_running_pid(new_pid))
        self._load_time_zones()
        self._bootstrap()
        return True

    def _load_time_zones(self) -> None:
        """Named time zones once (mariadb-tzinfo-to-sql, kept out of the binlog), then Asia/Shanghai from now on."""
        stamp = self.layout.stamp("timezones")
        if stamp.exists():
            return
        tz_sql = subprocess.run([self.tool("mariadb-tzinfo-to-sql"), "--skip-write-binlog", "/usr/share/zoneinfo"],
                                capture_output=True, text=True)
        if tz_sql.returncode != 0 or not tz_sql.stdout:
            raise StackError(f"{self.name}: mariadb-tzinfo-to-sql failed: {tz_sql.stderr.strip()[-300:]}")
        self.sql(stdin=tz_sql.stdout, database="mysql")
        self.sql(f"SET GLOBAL time_zone = '{TIME_ZONE}'")
        stamp.write_text("ok\n")
        self._write_cnf()                 # default_time_zone for every later start

    def _bootstrap(self) -> None:
        """connectors/mariadb-setup.sql once: heartbeat table, the CDC user and its server-wide grants."""
        stamp = self.layout.stamp("bootstrap")
        if stamp.exists():
            return
        template = (self.settings.paths.connectors / "mariadb-setup.sql").read_text(encoding="utf-8")
        script = string.Template(template).substitute(
            cdc_user=sql_literal(self.settings.source.user), cdc_host=sql_literal("127.0.0.1"),
            cdc_password=sql_literal(ensure_cdc_password(self.settings)))
        self.sql(stdin=script)
        stamp.write_text("ok\n")

    def stop(self) -> bool:
        """Clean shutdown (SIGTERM); False when it was not running."""
        pid = self.pid()
        if not procs.is_alive(pid, str(self.layout.cnf)):
            self.procs.pid_file(self.name).unlink(missing_ok=True)
            return False
        procs.terminate(pid, str(self.layout.cnf), timeout=60)
        self.procs.pid_file(self.name).unlink(missing_ok=True)
        return True

    def destroy(self) -> None:
        """Remove every file of this server (tests' own servers); it must be stopped."""
        if self.is_running():
            raise StackError(f"{self.name} is running; stop it first")
        shutil.rmtree(self.layout.home, ignore_errors=True)


def his(settings: Settings) -> MariaDb:
    return MariaDb(settings)
