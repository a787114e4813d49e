"""Every fault scenario of issue 11 (tests/faults/README.md has the table with the measured outcome of each).
A scenario with `pending="…"` is waiting for the work it names and is not collected; enabling it is deleting
that one argument."""
from __future__ import annotations

from fault_harness import FAULTS, Scenario

SCENARIOS = [
    # rel-core item 2 (reference rows as a global store) has landed: enabled
    Scenario("second_worker_same_app_id", FAULTS["second_worker"], "stream"),
    Scenario("worker_kill9_mid_stream", FAULTS["worker_kill9"], "stream", fast=True),
    Scenario("worker_stop_mid_stream", FAULTS["worker_stop"], "stream"),
    Scenario("worker_kill9_mid_flush", FAULTS["worker_kill9"], "flush"),
    Scenario("worker_kill9_after_frontend_commit", FAULTS["worker_kill9"], "committed"),
    Scenario("connect_kill9", FAULTS["connect_kill9"], "evening"),
    Scenario("connect_stop", FAULTS["connect_stop"], "evening"),
    Scenario("broker_kill9", FAULTS["broker_kill9"], "evening"),
    Scenario("broker_stop", FAULTS["broker_stop"], "evening"),
    Scenario("his_postgres_crash", FAULTS["his_crash"], "evening"),
    Scenario("his_postgres_stop", FAULTS["his_stop"], "evening"),
    Scenario("frontend_down_at_window_open", FAULTS["frontend_down"], "window_open", own_frontend=True),
    Scenario("connector_paused", FAULTS["connector_paused"], "evening"),
    Scenario("duplicate_raw_messages", FAULTS["duplicate_raw"], "evening", fast=True),
    Scenario("older_version_replayed", FAULTS["older_version"], "evening"),
    Scenario("oversize_value", FAULTS["oversize_value"], "evening"),
    Scenario("schema_drift_dropped_column", FAULTS["schema_drift"], "evening"),
]


def enabled() -> list[Scenario]:
    return [s for s in SCENARIOS if s.pending is None]
