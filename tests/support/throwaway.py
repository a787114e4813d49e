"""A throwaway PostgreSQL instance of a test's own (a temporary directory, a free port): stopping or crashing it
never disturbs the shared stack (the sink failure tests, the fault suite's front-end-down scenario)."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from devstack import postgres
from support import free_port


class ThrowawayPostgres:
    """initdb + pg_ctl (as the postgres user, through the stack's helpers) in a temporary directory."""

    def __init__(self, settings) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="hisbridge-pgtmp-"))
        postgres.chown_to_postgres(self.root)     # mkdtemp makes it 0700 root: postgres must enter it
        self.inst = postgres.Instance("pg-throwaway", free_port(), (), False, self.root / "data",
                                      self.root / "postgres.log", settings.stack.pg_bin)
        postgres.initdb(self.inst)

    def start(self) -> None:
        postgres.ctl(self.inst, "-l", str(self.inst.log), "-w", "-t", "60", "start")

    def crash(self) -> None:
        """pg_ctl stop -m immediate: every backend dies at once, as when the server goes away."""
        postgres.ctl(self.inst, "-m", "immediate", "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return subprocess.run(postgres.as_postgres([self.inst.tool("pg_ctl"), "-D", str(self.inst.data_dir),
                                                    "status"]), capture_output=True).returncode == 0

    def remove(self) -> None:
        try:
            if self.running():
                self.crash()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
