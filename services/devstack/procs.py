"""Process supervision for the local stack: pid files, liveness, ports, start-up and shutdown.

Every component is a detached process (its own session, so it outlives the CLI) with a log file and a
pid file under var/. Liveness checks the pid AND a marker in its command line, so a recycled pid never
passes for a running component.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hisbridge.settings import \
    child_environment  # noqa: F401 — re-exported for the components

# the processes this process spawned, by pid: how one ended (its exit code or signal) stays known after it
# was reaped, where /proc forgets it
_SPAWNED: dict[int, subprocess.Popen] = {}


class StackError(RuntimeError):
    """An operator must act: a component failed to start or stop (the message says which and why)."""


@dataclass(frozen=True)
class ProcState:
    name: str
    running: bool
    pid: int | None
    port: int
    since: float | None  # epoch seconds the process started


@dataclass(frozen=True)
class Procs:
    """The pid and log files of the stack's processes, under one var folder (paths.var)."""
    var: Path

    @property
    def run_dir(self) -> Path:
        return self.var / "run"

    @property
    def log_dir(self) -> Path:
        return self.var / "log"

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def pid(self, name: str) -> int | None:
        return read_pid(self.pid_file(name))

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
        """Start a detached process logging to log/<name>.log; record its pid in run/<name>.pid."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file(name), "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env=child_environment(env), cwd=cwd, start_new_session=True)
        _SPAWNED[proc.pid] = proc
        _wait_exec(proc)
        self.pid_file(name).write_text(f"{proc.pid}\n")
        return proc.pid

    def stop_component(self, name: str, marker: str, timeout: float) -> bool:
        """Stop the component behind run/<name>.pid; False when it was not running (a stale pid file goes)."""
        current = self.pid(name)
        if not is_alive(current, marker):
            self.pid_file(name).unlink(missing_ok=True)
            return False
        terminate(current, marker, timeout)
        self.pid_file(name).unlink(missing_ok=True)
        return True


def _wait_exec(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Until the kernel shows the new program's command line. Popen returns once the exec is past its point
    of no return, while /proc/<pid>/cmdline stays empty until the new program's arguments are laid out: a
    liveness check in between (its marker not found) took a starting worker for a dead one."""
    deadline = time.monotonic() + timeout
    while not cmdline(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def is_running_pid(pid: int | None) -> bool:
    """The process exists and is not a zombie (a zombie holds no port and does no work)."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def is_alive(pid: int | None, marker: str) -> bool:
    """`pid` runs and is ours (its command line carries the marker, so a recycled pid is not taken)."""
    return is_running_pid(pid) and marker in cmdline(pid)


def started_at(pid: int) -> float | None:
    """Process start time from /proc (field 22 = start ticks after boot)."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime"))
    except (OSError, ValueError, StopIteration, IndexError):
        return None
    return btime + ticks / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def port_bindable(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on the port (we could bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_until(check: Callable[[], bool], timeout: float, what: str, log: Path | None = None,
               alive: Callable[[], bool] | None = None) -> None:
    """Poll `check` until true; fail early (with the log's tail) when the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if alive is not None and not alive():
            raise StackError(f"{what}: process exited during start-up{log_tail(log)}")
        time.sleep(0.3)
    raise StackError(f"{what}: not ready after {timeout:.0f}s{log_tail(log)}")


def log_tail(log: Path | None, lines: int = 15) -> str:
    if log is None or not log.exists():
        return ""
    tail = log.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last lines of {log} ---\n" + "\n".join(tail)


def terminate(pid: int, marker: str, timeout: float = 60.0) -> None:
    """SIGTERM, wait until the process is gone, SIGKILL as the last resort. The marker is checked before
    the first signal (a recycled pid is never signalled); after it, only the process's end counts: an
    exiting process's command line is empty before it is a zombie, so "marker gone" returned while it
    still held its ports and its exit status was not yet known."""
    if not is_alive(pid, marker):
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if _ends_within(pid, marker, wait):
            return
    raise StackError(f"process {pid} ({marker}) did not stop")


def _ends_within(pid: int, marker: str, wait: float) -> bool:
    deadline = time.monotonic() + wait
    while True:
        shown = cmdline(pid)
        if gone(pid) or (shown and marker not in shown):    # ended, or its pid already another program's
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def exit_status(pid: int | None) -> str:
    """How a process this one spawned ended ("exit code 2", "signal SIGKILL"); "" while it runs or when it
    was not spawned here."""
    proc = _SPAWNED.get(pid or 0)
    code = proc.poll() if proc is not None else None
    if code is None:
        return ""
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


def gone(pid: int | None) -> bool:
    """The process has ended (reaped, or a zombie): unlike "its marker gone", which an exiting process
    already shows while it still holds its ports."""
    if pid:
        reap(pid)
    return not is_running_pid(pid)


def reap(pid: int) -> None:
    """Collect an exited child of this process (only relevant when it was started by us)."""
    if pid in _SPAWNED:         # through its Popen, which keeps the status for exit_status
        _SPAWNED[pid].poll()
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
