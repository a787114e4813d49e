"""The README's operations section runs as shown: each ```sh block, line by line in one bash (`set -e`,
pipefail), from the checkout, against the local stack — with a HIS, staging and front-end database of this
test's own, so `sim init` and the reads touch nothing else. Every line must succeed, print no traceback, and
every time it prints must be Asia/Shanghai with its offset."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[2]
# a date and a time of day: what a person reads as a moment
MOMENT = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?P<zone>[+-]\d\d:\d\d|Z)?")


def operations_blocks(readme: str) -> list[str]:
    section = readme.split("\n## Operations\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def foreign_times(text: str) -> list[str]:
    """Moments without the +08:00 offset (UTC, another zone, or none)."""
    return [m.group(0) for m in MOMENT.finditer(text) if m.group("zone") != "+08:00"]


def test_the_operations_section_has_a_block_to_run():
    blocks = operations_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    assert blocks and all("hisbridge" in b for b in blocks)


def test_every_operations_command_runs_as_shown(settings, resources):
    _, his_dsn, prefix = resources.cdc_his("his_readme")
    env = {**os.environ, "HISBRIDGE_LANG": "both", "HISBRIDGE_HIS_DSN": his_dsn, "HISBRIDGE_TOPIC_PREFIX": prefix,
           "HISBRIDGE_CONNECTOR_NAME": resources.connector(f"readme-{resources.id}"),
           "HISBRIDGE_STAGING_DSN": resources.database("frontend", f"staging_readme_{resources.id}"),
           "HISBRIDGE_FRONTEND_DSN": resources.database("frontend", f"frontend_readme_{resources.id}"),
           "HISBRIDGE_CORE_PREFIX": resources.topics(f"corereadme{resources.id}")}
    env.pop("HISBRIDGE_CAPTURE_TABLES", None)
    for block in operations_blocks((ROOT / "README.md").read_text(encoding="utf-8")):
        script = "set -e -o pipefail\n" + "".join(
            f"echo '$ {line}' >&2\n{line}\n" for line in block.splitlines() if line.strip())
        done = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        shown = done.stdout + done.stderr
        assert done.returncode == 0, shown[-4000:]
        assert "Traceback" not in shown, shown[-4000:]
        assert foreign_times(shown) == [], shown[-4000:]
