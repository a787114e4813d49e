"""How a spawned process ended stays known after it is reaped (what a dead worker's empty log cannot say)."""
from __future__ import annotations

import contextlib
import os
import signal

from devstack import procs
from devstack.procs import Procs
from support import wait_for


def _ended(tmp_path, name: str, script: str) -> str:
    pid = Procs(tmp_path).spawn(name, ["sh", "-c", script])
    wait_for(f"{name} ended", lambda: procs.gone(pid), timeout=10, every=0.05)
    return procs.exit_status(pid)


def test_a_killed_process_names_its_signal_and_an_exited_one_its_code(tmp_path):
    assert _ended(tmp_path, "termed", "kill -TERM $$") == "signal SIGTERM"
    assert _ended(tmp_path, "failed", "exit 3") == "exit code 3"


def test_a_running_process_and_a_stranger_have_no_status(tmp_path):
    pid = Procs(tmp_path).spawn("sleeper", ["sleep", "30"])
    try:
        assert procs.exit_status(pid) == "" and procs.is_running_pid(pid)
    finally:
        procs.terminate(pid, "sleep", timeout=5)
    assert procs.exit_status(pid) == "signal SIGTERM"
    assert procs.exit_status(1) == ""             # init: not spawned here


def _trapping(tmp_path, name: str, on_term: str) -> int:
    """A shell whose TERM handler is set before this returns (a signal before `trap` would just kill it)."""
    armed = tmp_path / f"{name}.armed"
    pid = Procs(tmp_path).spawn(name, ["sh", "-c", f"trap '{on_term}' TERM; : > {armed}; "
                                                   "while :; do sleep 0.05; done"])
    wait_for(f"{name}'s TERM handler set", armed.exists, timeout=10, every=0.01)
    return pid


def _cmdline_after_the_first_read(monkeypatch, later: str) -> None:
    """The real command line for terminate's marker check, `later` from the read after its signal on."""
    real, reads = procs.cmdline, [0]

    def shown(pid: int) -> str:
        reads[0] += 1
        return real(pid) if reads[0] == 1 else later
    monkeypatch.setattr(procs, "cmdline", shown)


def test_terminate_returns_only_once_the_process_has_ended(tmp_path, monkeypatch):
    # An exiting process's command line reads empty before it is a zombie; terminate took that for "ended"
    # and returned while the process still ran (its ports held, its status unknown). Here the command line
    # is empty from the first read after the signal, and the TERM handler takes 0.3 s to exit.
    pid = _trapping(tmp_path, "slow", "sleep 0.3; exit 7")
    _cmdline_after_the_first_read(monkeypatch, "")
    procs.terminate(pid, "exit 7", timeout=10)
    assert not procs.is_running_pid(pid) and procs.exit_status(pid) == "exit code 7"


def test_terminate_never_signals_a_pid_that_became_another_program(tmp_path, monkeypatch):
    # A pid reused while terminate waits belongs to a stranger: no SIGKILL for it. Here the process ignores
    # TERM and, from the first read after the signal, shows another program's command line.
    pid = _trapping(tmp_path, "deaf", "")
    _cmdline_after_the_first_read(monkeypatch, "/usr/sbin/someone-else")
    try:
        procs.terminate(pid, "while :", timeout=10)
        assert procs.is_running_pid(pid) and procs.exit_status(pid) == ""
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_for("the deaf process gone", lambda: procs.gone(pid), timeout=10, every=0.05)


def test_spawn_returns_once_the_new_program_shows_its_command_line(tmp_path, monkeypatch):
    # Popen returns while the kernel still lays out the new program's arguments: /proc/<pid>/cmdline is
    # empty for a few microseconds (36–57 of 1,000 `sleep` spawns read it so here), so a liveness check at
    # once found no marker and took a starting worker for a dead one. The window, made as long as 3 reads:
    real, empty_reads = procs.cmdline, [3]

    def in_exec(pid: int) -> str:
        if empty_reads[0]:
            empty_reads[0] -= 1
            return ""
        return real(pid)
    monkeypatch.setattr(procs, "cmdline", in_exec)
    pid = Procs(tmp_path).spawn("sleeper", ["sleep", "30"])
    try:
        assert procs.is_alive(pid, "sleep") and empty_reads == [0]
        assert procs.read_pid(tmp_path / "run" / "sleeper.pid") == pid
    finally:
        procs.terminate(pid, "sleep", timeout=5)
