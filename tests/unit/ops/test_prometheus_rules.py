"""The alert rules as promtool sees them: valid (check rules) and each alert unit-tested with input series
(deploy/prometheus/tests.yml), with Debian's promtool that `make prometheus` installs."""
from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from hisbridge.settings import defaults

RULES_DIR = defaults().paths.deploy / "prometheus"
PROMTOOL = defaults().stack.prometheus.parent / "promtool"


def _promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(PROMTOOL), *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=120)


def test_rules_are_valid():
    proc = _promtool("check", "rules", "hisbridge.rules.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_passes_its_unit_tests():
    proc = _promtool("test", "rules", "tests.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_has_a_unit_test():
    alerts = {r["alert"] for g in yaml.safe_load((RULES_DIR / "hisbridge.rules.yml").read_text())["groups"]
              for r in g["rules"] if "alert" in r}
    tested = {t["alertname"] for case in yaml.safe_load((RULES_DIR / "tests.yml").read_text())["tests"]
              for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
    assert alerts - tested == set()


def test_the_scrape_config_is_valid(tmp_path: Path):
    proc = _promtool("check", "config", "prometheus.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
