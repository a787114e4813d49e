"""The demo scenario end to end at small scale, reconciled EXACTLY (issue 6), with the PostgreSQL HIS.

Real everything: the simulated HIS in PostgreSQL, real Debezium on Kafka Connect, the real Faust worker
(transform + sink agents, a background process), the real staging and front-end databases. deploy/demo.py
runs one simulated day D (200 visits, bad share 0.05, fixed seed) live on an accelerated clock, holds the sink's
clock before 18:00 until the pipeline has drained, opens the window and waits for the flush.

Isolated from everything else on the shared stack, so it can run beside other tests and be re-run: its own
HIS database, connector (slot, publication), topic prefixes, consumer group, staging and front-end databases,
clock file and throwaway SM4 key — all created for the run and removed afterwards (support.e2e). The day is
the session's shared one (support.demo_day): the metrics and replay tests read the same run.

Asserted: every valid HIS record the manifest predicts is in the front-end exactly once, its identity fields
decrypting (with the test key) to the HIS values and its coded fields inside the national value sets; every
record a planted defect reaches is in quarantine with the defect's rule; nothing else is in the front-end or
in quarantine; ledger and front-end agree. tests/stack/test_e2e_mariadb.py runs the same through MariaDB.
"""
from __future__ import annotations

import pytest
from support import e2e

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def demo_run(demo_day):
    return demo_day.run


def test_every_batch_reconciles_exactly(demo_run):
    e2e.check_every_batch_reconciles_exactly(demo_run, e2e.expected())


def test_frontend_holds_exactly_the_expected_rows_once(demo_run):
    e2e.check_frontend_holds_exactly_the_expected_rows_once(demo_run, e2e.expected(), e2e.DAY.isoformat())


def test_quarantine_holds_exactly_the_planted_defects(demo_run):
    e2e.check_quarantine_holds_exactly_the_planted_defects(demo_run, e2e.expected())


def test_identity_fields_decrypt_to_the_his_values_and_codes_are_national(demo_run):
    e2e.check_identity_fields_decrypt_to_the_his_values_and_codes_are_national(demo_run)


def test_worker_log_is_one_line_per_batch_of_work(demo_run):
    e2e.check_worker_log_is_quiet(demo_run)
