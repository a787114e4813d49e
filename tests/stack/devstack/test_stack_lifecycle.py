"""`hisbridge stack`: a second up changes nothing; down leaves no process and no bound port."""
from __future__ import annotations

from pathlib import Path

import devstack
import pytest
from click.testing import CliRunner
from devstack import procs
from hisbridge.cli import main as cli_main

pytestmark = pytest.mark.stack


def stack_states(settings) -> dict[str, tuple[bool, int | None]]:
    return {s.name: (s.running, s.pid) for _, s in devstack.status(settings)}


def in_stack(settings) -> list[devstack.Component]:
    return [c for c in devstack.components(settings) if c.in_stack]


def test_second_up_is_a_noop(settings):
    before = stack_states(settings)
    assert devstack.up(settings) == []
    assert stack_states(settings) == before
    assert all(before[c.name][0] for c in in_stack(settings))


def test_status_shows_each_component_running_with_port_and_pid(settings):
    result = CliRunner().invoke(cli_main, ["stack", "status"])
    assert result.exit_code == 0, result.output
    for _, state in devstack.status(settings):
        if state.running:
            line = next(line for line in result.output.splitlines() if line.startswith(state.name + " "))
            assert "running" in line and str(state.port) in line and str(state.pid) in line


def processes_using(paths: list[Path]) -> list[str]:
    """Command lines of live processes that mention the stack's state or jar folders."""
    found = []
    for cmd in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmd.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(str(p) in text for p in paths) and int(cmd.parent.name) != __import__("os").getpid():
            found.append(f"{cmd.parent.name}: {text[:160]}")
    return found


@pytest.mark.stack_restart
def test_down_leaves_no_process_and_no_bound_port_then_up_restores(settings):
    ports = [c.port for c in in_stack(settings)] + [settings.stack.kafka_controller_port]
    devstack.down(settings)
    assert not any(s.running for _, s in devstack.status(settings))
    assert [p for p in ports if not procs.port_bindable(p)] == []
    assert processes_using([settings.paths.var, settings.paths.jars]) == []
    assert devstack.down(settings) == []  # a second down is a no-op too
    devstack.up(settings)
    names = {c.name for c in in_stack(settings)}
    assert all(s.running for _, s in devstack.status(settings) if s.name in names)
