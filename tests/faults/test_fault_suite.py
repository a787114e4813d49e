"""The fault suite (issue 11 item 8) on the real stack: each scenario of scenarios.py runs the demo day with
its fault and ends with the HIS-side reconcile (0 missing, 0 duplicated) and exactly the planted quarantine.
The fast scenarios run in `make test`; `make faults` runs them all (marker faults_full)."""
from __future__ import annotations

import pytest
from fault_harness import run_scenario
from scenarios import enabled

pytestmark = pytest.mark.stack


@pytest.mark.parametrize("scenario", [pytest.param(s, id=s.name, marks=() if s.fast else pytest.mark.faults_full)
                                      for s in enabled()])
def test_scenario_loses_nothing_and_duplicates_nothing(scenario, tmp_path, resources):
    verdict = run_scenario(resources, tmp_path, scenario)
    print(f"\n{scenario.name}: {verdict.seconds:.0f}s, notes {verdict.notes}")
    for batch, output in verdict.batches.items():
        print(f"-- reconcile --batch {batch}\n{output}")
