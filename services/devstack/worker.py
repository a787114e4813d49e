"""The Faust worker as a background process (`hisbridge worker --background`, `make demo`); `hisbridge worker`
runs it in the foreground. `stack down` stops a background worker too, so `down` leaves nothing behind."""
from __future__ import annotations

import json
import re
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Mapping

from devstack import procs
from devstack.procs import Procs, StackError
from hisbridge.settings import Settings

MARKER = "hisbridge.cli.worker"
# the log keeps what a worker said before it died: every line at once (stdout to a file is block-buffered
# otherwise), and the Python stack of a fatal signal (a crash in a native library)
DIAGNOSTICS = {"PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"}


class Worker:
    """A background worker named `name` (its pid and log files are run/<name>.pid, log/<name>.log)."""
    in_stack = False   # managed by its own command, only stopped by `down`

    def __init__(self, settings: Settings, name: str = "worker") -> None:
        self.settings, self.name, self.procs = settings, name, Procs(settings.paths.var)

    @property
    def port(self) -> int:
        return self.settings.worker.web_port

    @property
    def log(self):
        return self.procs.log_file(self.name)

    def pid(self) -> int | None:
        return self.procs.pid(self.name)

    def is_running(self) -> bool:
        return procs.is_alive(self.pid(), MARKER)

    def exit_status(self) -> str:
        """How the worker this process started ended ("signal SIGTERM", "exit code 2"); "" while it runs."""
        return procs.exit_status(self.pid())

    def start_background(self, env: Mapping[str, str] | None = None, restart: bool = False) -> bool:
        """Spawn the worker with this process's environment plus `env`; False when it already ran (unless
        `restart`, which stops it first so it runs with the new environment)."""
        if self.is_running():
            if not restart:
                return False
            self.stop()
        self.procs.spawn(self.name, [sys.executable, "-m", MARKER], env={**DIAGNOSTICS, **(env or {})})
        return True

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def healthy(self) -> bool:
        """The worker's /health answers (its web server runs only once the app has started)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as resp:
                doc = json.loads(resp.read())
            return resp.status == 200 and doc.get("status") == "ok" and doc.get("app") == self.settings.worker.app_id
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def wait_healthy(self, timeout: float, since: int = 0) -> None:
        """Until /health answers; StackError with the reason from the log (what it wrote after byte `since`)
        when the process exits first or does not answer in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy():
                return
            if procs.gone(self.pid()):
                raise StackError(f"exited during start-up ({self.exit_status() or 'not started here'}): "
                                 f"{failure_reason(self.log, since)}")
            time.sleep(0.5)
        raise StackError(f"no answer on /health (port {self.port}) within {timeout:.0f}s: "
                         f"{failure_reason(self.log, since) or 'see the log'}")

    def start(self) -> bool:
        raise StackError("the worker is not part of `stack up`: run `hisbridge worker` (or --background)")

    def stop(self) -> bool:
        return self.procs.stop_component(self.name, MARKER, timeout=30)


_EXCEPTION = re.compile(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception|Exit)\w*): (.+)$")


def failure_reason(log: Path, since: int = 0) -> str:
    """The last exception line (type and message) the worker logged after byte `since`, else its last line."""
    if not log.exists():
        return ""
    with open(log, "rb") as fh:
        fh.seek(since)
        lines = [line.strip() for line in fh.read().decode(errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        found = _EXCEPTION.match(line)
        if found:
            return f"{found.group(1)}: {found.group(2)}"[:300]
    return lines[-1][:300] if lines else ""
