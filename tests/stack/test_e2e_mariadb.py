"""The demo scenario end to end through a MariaDB HIS (issue 16), reconciled EXACTLY like the PostgreSQL one.

Real everything: MariaDB 10.11 (a server of this module's own: on MariaDB the simulated HIS is the database
`his` the shared source mapping names), the Debezium MariaDB connector on Kafka Connect, the real worker, the
staging and front-end databases. deploy/demo.py with HISBRIDGE_HIS_KIND=mariadb runs day D (200 visits, bad
share 0.05) and then the evening until D 22:00; at D 20:00 of the evening, while the connector streams, the
test changes the HIS under it:

  ALTER TABLE op_visit ADD COLUMN triage_level     schema change mid-stream
  UPDATE a delivered visit's fee (and the new column)   → resubmitted in D's window
  DELETE another delivered visit                         → its revoke (xgbz = 1) resubmitted
  INSERT a discharged stay whose admit_time is the zero date '0000-00-00 00:00:00' → quarantined `zero_date`
  restart MariaDB                                        the connector must resume, losing and repeating nothing

then the second half of the evening streams after the restart. Asserted: every key set exactly as the
simulator predicts (day D and its late entries delivered, D+1 staged, planted defects quarantined), identity
fields decrypting to the HIS values, the 17:59:59.999999 / 18:00:00 DATETIME(6) instants in their batches,
the update and the delete in the front-end, the new column on the raw topic, no raw change twice.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta

import psycopg2
import pytest
from hisbridge import hisdb
from hisbridge.chain.decode import Change, decode_message
from hisbridge.contract import raw_topic
from hisbridge.delivery import ledger, staging
from hisbridge.ops import connectors
from hisbridge.runtime.topics import read_topic
from hisbridge.sim import generate
from support import e2e
from support.mariadb import engine_env, own_mariadb

pytestmark = pytest.mark.stack

D = e2e.DAY.isoformat()
NEXT = (e2e.DAY + timedelta(days=1)).isoformat()
SIX_PM = datetime.combine(e2e.DAY, datetime.min.time()).replace(hour=18)
TEN_PM = SIX_PM + timedelta(hours=4)
FEE_RAISE = "100.00"


class EveningChanges:
    """What the test does to the HIS at D 20:00 of the evening (demo's evening_break), and what it chose."""

    def __init__(self, server) -> None:
        self.server = server
        self.v1 = self.v2 = self.zero_stay = self.fee_before = None
        self.restart_seconds = None

    def __call__(self, settings) -> None:
        evening = generate.activity(e2e.SEED, SIX_PM, TEN_PM, e2e.VISITS, e2e.BAD_SHARE)
        touched = {e.row.get("visit_id") for e in evening.events}
        front = psycopg2.connect(settings.connections.frontend_dsn)
        with front, front.cursor() as cur:
            # batch D's visits (the first run also back-fills D-1), not on a boundary, not changed by the evening
            start, end = generate.batch_window(e2e.DAY)
            cur.execute("SELECT jzlsh, zfy FROM mjzzlxx WHERE xgbz = '0' AND scsj > %s AND scsj < %s ORDER BY jzlsh",
                        (start, end - timedelta(microseconds=1)))
            untouched = [(k, fee) for k, fee in cur.fetchall() if k not in touched]
        front.close()
        (self.v1, self.fee_before), (self.v2, _) = untouched[1], untouched[2]
        his = hisdb.connect(self.server.admin_dsn(), "mariadb")
        try:
            with hisdb.transaction(his) as cur:
                cur.execute("ALTER TABLE his.op_visit ADD COLUMN triage_level varchar(4) NULL COMMENT '分诊级别'")
            with hisdb.transaction(his) as cur:
                cur.execute("UPDATE his.op_visit SET total_fee = total_fee + %s, triage_level = '2', updated_at = %s "
                            "WHERE visit_id = %s", (FEE_RAISE, SIX_PM + timedelta(hours=2), self.v1))
                cur.execute("DELETE FROM his.op_visit WHERE visit_id = %s", (self.v2,))
                cur.execute("SELECT * FROM his.ip_admission WHERE discharge_time IS NOT NULL ORDER BY inpatient_no LIMIT 1")
                columns = [d[0] for d in cur.description]
                row = dict(zip(columns, cur.fetchone()))
                self.zero_stay = "ZD" + row["inpatient_no"][2:]
                row.update(inpatient_no=self.zero_stay, mr_no="ZD" + row["mr_no"][2:], admit_time="0000-00-00 00:00:00",
                           discharge_time=SIX_PM + timedelta(hours=2, minutes=30), updated_at=SIX_PM + timedelta(hours=2))
                cur.execute(f"INSERT INTO his.ip_admission ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})",
                            tuple(row[c] for c in columns))
        finally:
            his.close()
        began = time.monotonic()
        self.server.stop()
        self.server.start()
        self.restart_seconds = time.monotonic() - began


@pytest.fixture(scope="module")
def mariadb_run(tmp_path_factory, module_resources):
    res = module_resources
    tmp = tmp_path_factory.mktemp("e2emdb")
    server = own_mariadb(res)
    changes = EveningChanges(server)
    run = e2e.run_demo(res, tmp, "e2emdb", engine_env(server), evening=True, evening_break=changes)
    return run, changes


@pytest.fixture(scope="module")
def want():
    return e2e.expected(TEN_PM)


def test_every_batch_up_to_d_reconciles_exactly(mariadb_run, want):
    run, _ = mariadb_run
    e2e.check_every_batch_reconciles_exactly(run, want)


def test_frontend_holds_exactly_the_expected_rows_once(mariadb_run, want):
    run, _ = mariadb_run
    e2e.check_frontend_holds_exactly_the_expected_rows_once(run, want, D)


def test_quarantine_holds_the_planted_defects_and_the_zero_date(mariadb_run, want):
    run, changes = mariadb_run
    got = e2e.quarantine_pairs(run)
    zero = {p for p in got if p[:2] == ("zyhzryxx", changes.zero_stay)}
    assert got - zero == {(t, k, rule) for (t, _), e in want.items() for k, rule in e.quarantined}
    assert ("zyhzryxx", changes.zero_stay, "zero_date") in zero
    entry = next(e for e in run.out.quarantine if e.key == changes.zero_stay and "zero_date" in e.rules)
    assert {"rule": "zero_date", "field": "rysj"} in [{"rule": r["rule"], "field": r["field"]} for r in entry.reasons]
    assert entry.source["connector"] == "mariadb" and entry.source["binlog"].startswith("mariadb-bin.")


def test_identity_fields_decrypt_to_the_his_values_and_codes_are_national(mariadb_run):
    run, _ = mariadb_run
    e2e.check_identity_fields_decrypt_to_the_his_values_and_codes_are_national(run)


def test_datetime6_boundary_instants_land_in_their_batches(mariadb_run):
    run, _ = mariadb_run
    start = generate.batch_window(e2e.DAY)[0]
    instants = {start: D, SIX_PM - timedelta(microseconds=1): D, SIX_PM: NEXT}
    rows = e2e.his_rows(run, "SELECT v.visit_id, r.reg_time FROM his.op_visit v JOIN his.op_register r "
                             "ON r.reg_id = v.reg_id WHERE r.reg_time IN ('%s', '%s', '%s')" % tuple(instants))
    visits = {reg_time: visit for visit, reg_time in rows}
    assert set(visits) == set(instants)                    # DATETIME(6) kept the microseconds
    front = e2e.frontend(run)
    stage = psycopg2.connect(run.settings.connections.staging_dsn)
    try:
        with front, front.cursor() as cur:
            cur.execute("SELECT jzlsh, scsj FROM mjzzlxx WHERE jzlsh = ANY(%s)", (list(visits.values()),))
            delivered = dict(cur.fetchall())
        for instant, batch in instants.items():
            states = staging.row_states(stage, "mjzzlxx", batch)
            assert any(key == visits[instant] for _, key in states), (instant, batch)
            if batch == D:
                assert delivered[visits[instant]] == instant
            else:
                assert visits[instant] not in delivered          # D+1 waits for its own window
    finally:
        stage.close()


def test_an_update_after_delivery_is_resubmitted_with_the_new_value(mariadb_run):
    run, changes = mariadb_run
    (his_fee,), = e2e.his_rows(run, "SELECT total_fee FROM his.op_visit WHERE visit_id = '%s'" % changes.v1)
    front = e2e.frontend(run)
    try:
        with front, front.cursor() as cur:
            cur.execute("SELECT zfy, report_datetime FROM mjzzlxx WHERE jzlsh = %s", (changes.v1,))
            fee, reported = cur.fetchone()
        kinds = {r.report_datetime: r.kind for r in ledger.rows(front, "mjzzlxx", D)}
    finally:
        front.close()
    assert fee == his_fee == changes.fee_before + type(fee)(FEE_RAISE)
    assert kinds[reported] != "first"


def test_a_delete_after_delivery_is_resubmitted_as_a_revoke(mariadb_run):
    run, changes = mariadb_run
    assert e2e.his_rows(run, "SELECT 1 FROM his.op_visit WHERE visit_id = '%s'" % changes.v2) == []
    front = e2e.frontend(run)
    try:
        with front, front.cursor() as cur:
            cur.execute("SELECT xgbz FROM mjzzlxx WHERE jzlsh = %s", (changes.v2,))
            assert cur.fetchall() == [("1",)]
    finally:
        front.close()


def raw_changes(run) -> list[Change]:
    prefix, bootstrap = run.settings.source.topic_prefix, run.settings.connections.kafka_bootstrap
    out = []
    for source in e2e.MAPPING.sources:
        for topic, key, value in read_topic(bootstrap, raw_topic(prefix, source)):
            change = decode_message(topic, key, value)
            if isinstance(change, Change):
                out.append(change)
    return out


def test_the_column_added_mid_stream_reaches_the_raw_topic_and_the_connector_kept_running(mariadb_run):
    run, changes = mariadb_run
    updates = [c for c in raw_changes(run) if c.source.table == "op_visit" and c.after
               and c.after.get("visit_id") == changes.v1 and c.op == "u"]
    assert updates and updates[-1].after["triage_level"] == "2"
    client = connectors.ConnectClient(run.settings.connections.connect_url)
    name = next(n for n in client.names() if n.startswith("his-e2emdb-"))
    assert connectors.running_or_failure(client.status(name)) == (True, None)


def test_the_restart_mid_stream_repeated_no_change_and_lost_none(mariadb_run, want):
    """Every change has its own binlog position: none twice on the raw topics after the restart; and every
    record of the evening after it is where the simulator says (D's late entries delivered above, D+1 staged)."""
    run, changes = mariadb_run
    assert changes.restart_seconds is not None
    seen = [(c.topic, json.dumps(c.key, sort_keys=True), c.source.lsn) for c in raw_changes(run) if not c.source.snapshot]
    assert len(seen) == len(set(seen))
    stage = psycopg2.connect(run.settings.connections.staging_dsn)
    try:
        for (table, batch), expected in want.items():
            if batch != NEXT:
                continue
            staged = {k for (_, k) in staging.row_states(stage, table, batch)}
            assert staged - {changes.zero_stay} == set(expected.delivered), table
    finally:
        stage.close()
