"""The local stack: two PostgreSQL instances, a KRaft broker, a Kafka Connect worker (+ the Faust worker
when `make demo` runs it in the background). Components start in order and stop in reverse order."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from hisbridge import config
from hisbridge.stack import connect, kafka, postgres, procs, worker
from hisbridge.stack.procs import ProcState, StackError

__all__ = ["Component", "components", "up", "down", "status", "StackError", "ProcState"]


@dataclass(frozen=True)
class Component:
    name: str
    port: Callable[[], int]
    start: Callable[[], bool]   # True when it was started now, False when it already ran
    stop: Callable[[], bool]    # True when it was stopped now, False when it was not running
    pid: Callable[[], int | None]
    is_running: Callable[[], bool]
    in_stack: bool = True       # False: managed by its own command, only stopped by `down`


def _pg(inst_factory) -> Component:
    return Component(inst_factory().name, lambda: inst_factory().port,
                     lambda: postgres.start(inst_factory()), lambda: postgres.stop(inst_factory()),
                     lambda: postgres.pid(inst_factory()), lambda: postgres.is_running(inst_factory()))


def components() -> list[Component]:
    return [
        _pg(postgres.his),
        _pg(postgres.frontend),
        Component(kafka.NAME, config.kafka_port, kafka.start, kafka.stop, kafka.pid, kafka.is_running),
        Component(connect.NAME, config.connect_port, connect.start, connect.stop, connect.pid,
                  connect.is_running),
        Component(worker.NAME, worker.web_port, worker.start_unsupported, worker.stop, worker.pid,
                  worker.is_running, in_stack=False),
    ]


def select(names: list[str] | None) -> list[Component]:
    known = {c.name: c for c in components()}
    if not names:
        return list(known.values())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise StackError(f"unknown component(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in known if n in names]


def up(names: list[str] | None = None, report: Callable[[str], None] = lambda _: None) -> list[str]:
    """Start what is not running (in dependency order); returns the names started now."""
    started = []
    for comp in select(names):
        if not comp.in_stack:
            continue
        t0 = time.monotonic()
        if comp.start():
            started.append(comp.name)
            report(f"{comp.name}: started on port {comp.port()} in {time.monotonic() - t0:.1f}s")
        else:
            report(f"{comp.name}: already running on port {comp.port()}")
    return started


def down(names: list[str] | None = None, report: Callable[[str], None] = lambda _: None) -> list[str]:
    """Stop in reverse order; returns the names stopped now."""
    stopped = []
    for comp in reversed(select(names)):
        if comp.stop():
            stopped.append(comp.name)
            report(f"{comp.name}: stopped")
        else:
            report(f"{comp.name}: not running")
    return stopped


def status() -> list[ProcState]:
    states = []
    for comp in components():
        pid = comp.pid()
        running = comp.is_running()
        states.append(ProcState(comp.name, running, pid if running else None, comp.port(),
                                procs.started_at(pid) if running and pid else None))
    return states
