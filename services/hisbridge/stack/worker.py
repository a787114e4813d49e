"""The Faust worker as a background process (used by `make demo`); `hisbridge worker` runs it in the
foreground. `stack down` stops a background worker too, so `down` leaves nothing behind."""
from __future__ import annotations

import sys

from hisbridge import config
from hisbridge.stack import procs
from hisbridge.stack.procs import StackError

NAME = "worker"
MARKER = "hisbridge.cli.worker"


def web_port() -> int:
    return config.env_int("HISBRIDGE_WORKER_WEB_PORT", 56066)


def pid() -> int | None:
    return procs.read_pid(procs.pid_file(NAME))


def is_running() -> bool:
    return procs.is_alive(pid(), MARKER)


def start_background() -> bool:
    if is_running():
        return False
    procs.spawn(NAME, [sys.executable, "-c", f"from {MARKER} import run_foreground; run_foreground('info')"])
    return True


def start_unsupported() -> bool:
    raise StackError("the worker is not part of `stack up`: run `hisbridge worker` (or --background)")


def stop() -> bool:
    return procs.stop_component(NAME, MARKER, timeout=30)
