"""Settings: one immutable object, environment over the settings file over defaults, secrets never shown."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from hisbridge.cli import main as cli_main
from hisbridge.settings import (KNOBS, Secret, SettingsError, defaults,
                                describe, environment_for, load_settings)
from support import ROOT


def test_defaults_are_the_checkout_and_the_local_stack():
    s = load_settings({})
    assert s.paths.catalog == ROOT / "schemas" / "catalog" and s.paths.var == ROOT / "var"
    assert s.connections.kafka_bootstrap == "127.0.0.1:59092"
    assert s.connections.staging_dsn == "host=127.0.0.1 port=55433 dbname=staging user=postgres"
    assert s.worker.agents == ("transform", "sink") and s.sm4.key is None
    assert set(s.origin.values()) == {"default"}


def test_environment_beats_the_file_which_beats_the_default(tmp_path):
    (tmp_path / "hisbridge.yaml").write_text("worker:\n  app_id: from-file\n  sink_tick: 2\nstack:\n  kafka_port: 61000\n")
    s = load_settings({"HISBRIDGE_HOME": str(tmp_path), "HISBRIDGE_WORKER_APP_ID": "from-env"})
    assert s.worker.app_id == "from-env" and s.origin["worker.app_id"] == "env HISBRIDGE_WORKER_APP_ID"
    assert s.worker.sink_tick == 2.0 and s.origin["worker.sink_tick"].startswith("file ")
    # a default derived from a value set in the file follows it
    assert s.connections.kafka_bootstrap == "127.0.0.1:61000" and s.origin["connections.kafka_bootstrap"] == "default"
    assert s.paths.schemas == tmp_path / "schemas"


def test_derived_defaults_follow_what_they_derive_from():
    s = load_settings({"HISBRIDGE_HIS_DSN": "host=his.example port=5432 dbname=hisprod user=cdc",
                       "HISBRIDGE_VAR": "/srv/hb"})
    assert s.source.db == "hisprod" and s.paths.secrets == Path("/srv/hb/secrets")


@pytest.mark.parametrize("environ, named", [
    ({"HISBRIDGE_KAFKA_PORT": "ninety"}, "stack.kafka_port"),
    ({"HISBRIDGE_SM4_UPPERCASE": "maybe"}, "sm4.uppercase"),
])
def test_a_bad_value_is_an_operator_error_naming_the_setting(environ, named):
    with pytest.raises(SettingsError, match=re.escape(named)):
        load_settings(environ)


def test_the_settings_file_may_not_hold_secrets_nor_unknown_keys(tmp_path):
    file = tmp_path / "s.yaml"
    file.write_text("sm4:\n  key: 0123456789abcdeffedcba9876543210\n")
    with pytest.raises(SettingsError, match="sm4.key") as info:
        load_settings({"HISBRIDGE_SETTINGS": str(file)})
    assert "0123456789abcdef" not in str(info.value)
    file.write_text("worker:\n  app_idd: x\n")
    with pytest.raises(SettingsError, match="worker.app_idd"):
        load_settings({"HISBRIDGE_SETTINGS": str(file)})
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings({"HISBRIDGE_SETTINGS": str(tmp_path / "missing.yaml")})


def test_secrets_are_masked_everywhere_but_reach_a_child_process():
    key = "0123456789abcdeffedcba9876543210"
    s = load_settings({"HISBRIDGE_SM4_KEY": key, "HISBRIDGE_HIS_PASSWORD": "pw-secret"})
    shown = repr(s) + json.dumps(describe(s))
    assert key not in shown and "pw-secret" not in shown
    assert isinstance(s.sm4.key, Secret) and s.sm4.key.reveal() == key
    child = environment_for(s)
    assert child["HISBRIDGE_SM4_KEY"] == key and load_settings(child) == s


def test_with_values_changes_one_section_and_keeps_the_rest():
    s = defaults()
    changed = s.with_values(worker={"app_id": "other"})
    assert changed.worker.app_id == "other" and changed.worker.core_prefix == s.worker.core_prefix
    assert changed.connections == s.connections and s.worker.app_id == "hisbridge"


def test_every_knob_is_a_hisbridge_variable_with_one_key():
    keys = [k.key for k in KNOBS]
    assert len(keys) == len(set(keys)) and len({k.env for k in KNOBS}) == len(KNOBS)
    assert all(k.env.startswith("HISBRIDGE_") or k.env == "JAVA_HOME" for k in KNOBS)


def test_no_module_but_settings_reads_the_environment():
    package = ROOT / "services"
    readers = [str(p.relative_to(package)) for p in package.rglob("*.py")
               if re.search(r"os\.(environ|getenv)", p.read_text(encoding="utf-8")) and p.name != "settings.py"]
    assert readers == []


def test_config_show_prints_every_setting_with_its_source_and_masks_secrets(monkeypatch):
    monkeypatch.setenv("HISBRIDGE_SM4_KEY", "0123456789abcdeffedcba9876543210")
    monkeypatch.setenv("HISBRIDGE_WORKER_APP_ID", "shown-app")
    result = CliRunner().invoke(cli_main, ["config", "show"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()}
    assert set(lines) == {k.key for k in KNOBS}
    assert "shown-app" in lines["worker.app_id"] and "[env HISBRIDGE_WORKER_APP_ID]" in lines["worker.app_id"]
    assert "(set, hidden)" in lines["sm4.key"] and "0123456789abcdef" not in result.output
    rows = json.loads(CliRunner().invoke(cli_main, ["config", "show", "--json"]).output)
    assert {r["key"]: r["source"] for r in rows}["worker.core_prefix"] == "default"
