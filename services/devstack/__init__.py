"""The local stack (development, tests, the demo): two PostgreSQL instances, a MariaDB HIS, a KRaft broker, a
Kafka Connect worker, a Prometheus scraping the worker, and the Faust worker when it runs in the background.
Components start in order and stop in reverse order. Outside the hisbridge runtime: the pipeline never imports this package; the CLI does.

May import: hisbridge.settings (ports, folders) and nothing else of hisbridge.
"""
from __future__ import annotations

import time
from typing import Callable, Protocol

from devstack import mariadb, postgres, procs
from devstack.connect import Connect
from devstack.kafka import Kafka
from devstack.procs import ProcState, StackError
from devstack.prometheus import Prometheus
from devstack.worker import Worker
from hisbridge.settings import Settings

__all__ = ["Component", "components", "up", "down", "status", "StackError", "ProcState"]


class Component(Protocol):
    name: str
    in_stack: bool          # False: managed by its own command, only stopped by `down`

    @property
    def port(self) -> int: ...
    def start(self) -> bool: ...      # True when it was started now, False when it already ran
    def stop(self) -> bool: ...       # True when it was stopped now, False when it was not running
    def pid(self) -> int | None: ...
    def is_running(self) -> bool: ...


def components(settings: Settings) -> list[Component]:
    return [postgres.his(settings), mariadb.his(settings), postgres.frontend(settings), Kafka(settings),
            Connect(settings), Prometheus(settings), Worker(settings)]


def select(settings: Settings, names: list[str] | None) -> list[Component]:
    known = {c.name: c for c in components(settings)}
    if not names:
        return list(known.values())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise StackError(f"unknown component(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in known if n in names]


def up(settings: Settings, names: list[str] | None = None, report: Callable[[str], None] = lambda _: None) -> list[str]:
    """Start what is not running (in dependency order); returns the names started now."""
    started = []
    for comp in select(settings, names):
        if not comp.in_stack:
            continue
        t0 = time.monotonic()
        if comp.start():
            started.append(comp.name)
            report(f"{comp.name}: started on port {comp.port} in {time.monotonic() - t0:.1f}s")
        else:
            report(f"{comp.name}: already running on port {comp.port}")
    return started


def down(settings: Settings, names: list[str] | None = None, report: Callable[[str], None] = lambda _: None) -> list[str]:
    """Stop in reverse order; returns the names stopped now."""
    stopped = []
    for comp in reversed(select(settings, names)):
        if comp.stop():
            stopped.append(comp.name)
            report(f"{comp.name}: stopped")
        else:
            report(f"{comp.name}: not running")
    return stopped


def status(settings: Settings) -> list[tuple[Component, ProcState]]:
    states = []
    for comp in components(settings):
        pid = comp.pid()
        running = comp.is_running()
        states.append((comp, ProcState(comp.name, running, pid if running else None, comp.port,
                                       procs.started_at(pid) if running and pid else None)))
    return states
