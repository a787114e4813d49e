"""How a spawned process ended stays known after it is reaped (what a dead worker's empty log cannot say)."""
from __future__ import annotations

from devstack import procs
from devstack.procs import Procs
from support import wait_for


def _ended(tmp_path, name: str, script: str) -> str:
    pid = Procs(tmp_path).spawn(name, ["sh", "-c", script])
    wait_for(f"{name} ended", lambda: procs.reap(pid) or not procs.is_running_pid(pid), timeout=10, every=0.05)
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
