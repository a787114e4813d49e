"""The stack-probe agent is for tests only: neither the default settings nor the compose worker run it."""
from __future__ import annotations

from pathlib import Path

import yaml
from hisbridge.settings import load_settings

COMPOSE = Path(__file__).resolve().parents[3] / "docker-compose.yml"


def test_default_worker_runs_transform_and_sink_only():
    assert load_settings({}).worker.agents == ("transform", "sink")


def test_compose_worker_names_its_stages_without_the_probe():
    worker = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]["worker"]
    assert worker["environment"]["HISBRIDGE_AGENTS"] == "transform,sink"


def test_compose_connector_apply_defaults_to_the_mapping_tables():
    apply = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]["connector-apply"]
    assert apply["environment"]["HISBRIDGE_CAPTURE_TABLES"] == "${HISBRIDGE_CAPTURE_TABLES:-}"
