"""`hisbridge stack`: a second up changes nothing; down leaves no process and no bound port."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from hisbridge import config, stack
from hisbridge.cli import main as cli_main
from hisbridge.stack import procs

pytestmark = pytest.mark.stack


def stack_states() -> dict[str, tuple[bool, int | None]]:
    return {s.name: (s.running, s.pid) for s in stack.status()}


def in_stack() -> list[stack.Component]:
    return [c for c in stack.components() if c.in_stack]


def test_second_up_is_a_noop():
    before = stack_states()
    assert stack.up() == []
    assert stack_states() == before
    assert all(before[c.name][0] for c in in_stack())


def test_status_shows_each_component_running_with_port_and_pid():
    result = CliRunner().invoke(cli_main, ["stack", "status"])
    assert result.exit_code == 0, result.output
    for state in stack.status():
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
def test_down_leaves_no_process_and_no_bound_port_then_up_restores():
    ports = [c.port() for c in in_stack()] + [config.kafka_controller_port()]
    stack.down()
    assert not any(s.running for s in stack.status())
    assert [p for p in ports if not procs.port_bindable(p)] == []
    assert processes_using([config.var_dir(), config.jars_dir()]) == []
    assert stack.down() == []  # a second down is a no-op too
    stack.up()
    assert all(s.running for s in stack.status() if s.name in {c.name for c in in_stack()})
