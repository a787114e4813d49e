"""Scenarios marked faults_full run only when asked for (`make faults`: -m faults_full); `make test` runs the
fast ones. Deselected, not skipped: a run never reports a scenario it did not run."""
from __future__ import annotations


def pytest_configure(config):
    config.addinivalue_line("markers", "faults_full: a fault scenario of `make faults` only (slow)")


def pytest_collection_modifyitems(config, items):
    if "faults_full" in (config.option.markexpr or ""):
        return
    chosen = [i for i in items if i.get_closest_marker("faults_full") is None]
    if len(chosen) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in chosen])
        items[:] = chosen
