"""The Faust worker as a background process (`hisbridge worker --background`, `make demo`); `hisbridge worker`
runs it in the foreground. `stack down` stops a background worker too, so `down` leaves nothing behind."""
from __future__ import annotations

import sys
from typing import Mapping

from devstack import procs
from devstack.procs import Procs, StackError
from hisbridge.settings import Settings

MARKER = "hisbridge.cli.worker"


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

    def start_background(self, env: Mapping[str, str] | None = None, restart: bool = False) -> bool:
        """Spawn the worker with this process's environment plus `env`; False when it already ran (unless
        `restart`, which stops it first so it runs with the new environment)."""
        if self.is_running():
            if not restart:
                return False
            self.stop()
        self.procs.spawn(self.name, [sys.executable, "-m", MARKER], env=dict(env or {}))
        return True

    def start(self) -> bool:
        raise StackError("the worker is not part of `stack up`: run `hisbridge worker` (or --background)")

    def stop(self) -> bool:
        return self.procs.stop_component(self.name, MARKER, timeout=30)
