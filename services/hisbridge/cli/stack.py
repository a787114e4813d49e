"""`hisbridge stack up|down|status|rss`: the local PostgreSQL / Kafka / Connect stack."""
from __future__ import annotations

import time
from datetime import datetime, timezone

import click
import devstack
from devstack import procs
from hisbridge.cli.common import group, pass_settings
from hisbridge.clock import local_text
from hisbridge.messages import OperatorError, text
from hisbridge.settings import Settings

NAMES = click.argument("components", nargs=-1)


def _fail(exc: Exception) -> None:
    raise OperatorError("stack.failed", detail=str(exc).strip().splitlines()[0] if str(exc).strip() else
                        type(exc).__name__) from None


@group("stack", help="stack.help")
def cli() -> None:
    pass


@cli.command(help="stack.up")
@NAMES
@pass_settings
def up(settings: Settings, components: tuple[str, ...]) -> None:
    t0 = time.monotonic()
    try:
        started = devstack.up(settings, list(components) or None, report=click.echo)
    except devstack.StackError as exc:
        _fail(exc)
    click.echo(text("stack.started", count=len(started), seconds=f"{time.monotonic() - t0:.1f}")
               if started else text("stack.already"))


@cli.command(help="stack.down")
@NAMES
@pass_settings
def down(settings: Settings, components: tuple[str, ...]) -> None:
    try:
        devstack.down(settings, list(components) or None, report=click.echo)
    except devstack.StackError as exc:
        _fail(exc)


@cli.command(help="stack.status")
@click.option("--rss", is_flag=True, help="stack.rss")
@pass_settings
def status(settings: Settings, rss: bool) -> None:
    click.echo(f"{'component':<12} {'state':<8} {'port':>6} {'pid':>8}  {'since':<25}" + ("        rss" if rss else ""))
    all_up = True
    for comp, state in devstack.status(settings):
        since = local_text(datetime.fromtimestamp(state.since, timezone.utc)) if state.since else "-"
        line = (f"{state.name:<12} {'running' if state.running else 'stopped':<8} {state.port:>6} "
                f"{state.pid or '-':>8}  {since:<25}")
        if rss and state.pid:
            line += f"  {tree_rss_kib(state.pid) / 1024:7.0f} MiB"
        click.echo(line)
        all_up &= state.running or not comp.in_stack
    raise SystemExit(0 if all_up else 1)


def tree_rss_kib(pid: int) -> int:
    """RSS of a process and its children (PostgreSQL forks a backend per job)."""
    from pathlib import Path
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += procs.rss_kib(current) or 0
        todo.extend(children.get(current, []))
    return total
