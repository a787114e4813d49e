"""Nothing is a dead end (issue 12), end to end on the real stack: the session's shared demo day D
(support.demo_day, support.e2e: real PostgreSQL HIS, Debezium, the Faust worker, staging and front-end
databases, the sink's clock steered to D 18:00:01 and frozen there, inside batch D's window) — then, on top of
it (so these run after every reader of the day):

- a visit whose patient row arrives after batch D was flushed: held, quarantined as missing_lookup when the
  watermark of everything else passed D's close, released when the row comes, delivered as a resubmission,
  its entry resolved; the batch reconciles;
- the planted unmapped local codes: the value maps gain the codes, `hisbridge quarantine replay --rule
  unmapped_code` sends them through the replay topic, the next flush (ledger kind `replay`) delivers each
  once; a second replay sends nothing, and re-sending the same records changes nothing;
- `hisbridge replay batch` with the worker killed (-9) right after the request: every row once more, one
  `replay` ledger row, one front-end row per key, reconciled;
- a dismissed entry stays dismissed across that restart;
- a patient row 3 hours late on the steered clock: its visit waits without quarantine and is staged in its
  batch; with a 1-hour operator bound, quarantined as missing_lookup, still held, released and resolved;
- identity fields on the quarantine and replay topics are ciphertext (the topics' bytes hold no HIS plaintext).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
from datetime import datetime, timedelta
from pathlib import Path

import psycopg2
import pytest
from click.testing import CliRunner
from devstack import procs
from hisbridge import hisdb
from hisbridge.cli import quarantine as quarantine_cli
from hisbridge.cli import replay as replay_cli
from hisbridge.contract import quarantine_topic, replay_topic
from hisbridge.clock import SHANGHAI, write_clock_file
from hisbridge.delivery import ledger, quarantine, staging
from hisbridge.ops import reconcile
from hisbridge.ops.replay import (Replayer, ReplaySender, held_waiting,
                                 replay_entries)
from hisbridge.runtime.topics import read_topic
from hisbridge.settings import environment_for
from support import e2e, mapping_without_work_unit, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.demo_day_mutates]
D = e2e.DAY.isoformat()
TABLE = e2e.CATALOG.table("mjzzlxx")
UNMAPPED = re.compile(r"local code '([^']*)' has no entry in value map (\w+)")   # masked codes do not match


@pytest.fixture(scope="module")
def run(demo_day):
    """The session's shared demo day (support.demo_day); these tests change it, so they run after its readers."""
    return demo_day.run


def staging_conn(run):
    return psycopg2.connect(run.settings.connections.staging_dsn)


def entries(run, **filters) -> list[quarantine.Entry]:
    conn = staging_conn(run)
    try:
        return quarantine.entries(conn, **filters)
    finally:
        conn.close()


def ledger_rows(run, table: str = TABLE.name) -> list[ledger.LedgerRow]:
    conn = e2e.frontend(run)
    try:
        return ledger.rows(conn, table, D)
    finally:
        conn.close()


def invoke(run, command, args: list[str], settings=None) -> str:
    result = CliRunner().invoke(command, args, obj=settings or run.settings, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def reconciles(run, table=TABLE) -> reconcile.TableReport:
    """Batch D of `table` against the simulator's expectation, with what this module's tests changed: the
    late visit added, the repaired records delivered, the dismissed entry no longer expected anywhere."""
    want = e2e.expected()[(table.name, D)]
    added, fixed, dismissed = (getattr(run, name, frozenset()) for name in ("added", "fixed", "dismissed"))
    want = reconcile.Expected(want.delivered | added | fixed,
                              frozenset((k, r) for k, r in want.quarantined if k not in fixed | dismissed))
    front, stage = e2e.frontend(run), staging_conn(run)
    try:
        return reconcile.reconcile_table(table, D, want, front, stage, ledger.rows(front, table.name, D),
                                         reconcile.open_quarantine(stage, table.name, D))
    finally:
        front.close()
        stage.close()


def his_conn(run):
    return hisdb.connect(hisdb.admin_dsn(run.settings), run.settings.source.kind)


def his_rows(conn, table: str, column: str, value) -> list[dict]:
    with hisdb.transaction(conn) as cur:
        cur.execute(f"SELECT * FROM his.{table} WHERE {column} = %s", (value,))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def his_insert(conn, table: str, row: dict) -> None:
    cols = list(row)
    with hisdb.transaction(conn) as cur:
        cur.execute(f"INSERT INTO his.{table} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
                    [row[c] for c in cols])


def test_a_patient_row_arriving_after_the_flush_releases_its_visit_as_a_resubmission(run):
    """A delivered visit of batch D cloned under new ids, its patient row held back until the visit is an
    open missing_lookup entry (batch D long closed): then the row comes and the visit goes out by itself."""
    his = his_conn(run)
    try:
        vid, patient = clone_visit(his, run, "L")
        wait_for("the visit quarantined as missing_lookup while held", lambda: [
            e for e in entries(run, table=TABLE.name, rule="missing_lookup", state="open") if e.key == vid],
            timeout=180)
        before = len(ledger_rows(run))
        his_insert(his, "pat_master", patient)
    finally:
        his.close()
    wait_for("the entry resolved when the record was staged", lambda: [
        e for e in entries(run, table=TABLE.name, state="resolved") if e.key == vid and e.note == "released"],
        timeout=120)
    wait_for("the visit delivered by a resubmission", lambda: vid in e2e.frontend_keys(run, TABLE.name)
             and len(ledger_rows(run)) > before, timeout=120)
    assert [r.kind for r in ledger_rows(run)[before:]] == ["resubmission"]
    assert e2e.frontend_keys(run, TABLE.name).count(vid) == 1
    assert not [e for e in entries(run, state="open") if e.key == vid]
    run.added = frozenset({vid})
    report = reconciles(run)
    assert report.ok, reconcile.format_report([report])


def _fixed_mapping(run, tmp: Path, open_entries: list[quarantine.Entry]) -> set[int]:
    """A copy of the source mapping whose value maps gain every unmapped local code the entries name (mapped
    to the map's first national code); returns the ids of the entries it fixes (an identity field's code is
    hidden in the message: those stay unfixed)."""
    source = run.settings.paths.mapping.parent
    shutil.copytree(source, tmp / "mapping")
    fixed = set()
    for e in open_entries:
        codes = [UNMAPPED.search(r.get("message") or "") for r in e.entry["reasons"] if r["rule"] == "unmapped_code"]
        if not codes or not all(codes):
            continue
        for m in codes:
            path = tmp / "mapping" / "valuemaps" / f"{m.group(2)}.csv"
            lines = path.read_text(encoding="utf-8").splitlines()
            national = next(line.split(",")[1] for line in lines[1:] if line and not line.startswith("#"))
            if not any(line.split(",")[0] == m.group(1) for line in lines[1:]):
                path.write_text("\n".join(lines + [f"{m.group(1)},{national},added for the replay test"]) + "\n",
                                encoding="utf-8")
        fixed.add(e.id)
    return fixed


def test_fixed_value_maps_and_a_quarantine_replay_deliver_each_record_once(run, tmp_path):
    open_entries = entries(run, rule="unmapped_code", state="open", batch=D)
    assert open_entries, "the scenario plants unmapped local codes"
    fixed = _fixed_mapping(run, tmp_path, open_entries)
    assert fixed
    settings = run.settings.with_values(paths={"mapping": tmp_path / "mapping" / run.settings.paths.mapping.name})
    before = {t: len(ledger_rows(run, t)) for t in e2e.CATALOG.tables}
    out = invoke(run, quarantine_cli.cli, ["replay", "--rule", "unmapped_code", "--batch", D,
                                           "--operator", "tester", "--reason", "value maps fixed"], settings)
    print(out)                                  # shown when the test fails
    assert f"{len(open_entries)} entries" in out
    keys = {(e.table, e.key) for e in open_entries if e.id in fixed}

    def resolved() -> bool:
        done = {(e.table, e.key) for e in entries(run, rule="unmapped_code", state="resolved") if e.note == "replayed"}
        print("resolved", sorted(done), "open", [(e.table, e.key, e.rules) for e in entries(run, state="open")])
        return done >= keys
    wait_for("every fixed entry resolved by its replayed record", resolved, timeout=120)
    tables = {t for t, _ in keys}
    # the replayed records may reach staging in more than one sink batch, so more than one flush may carry them
    wait_for("every replayed record delivered", lambda: all(
        k in e2e.frontend_keys(run, t) for t, k in keys), timeout=120)
    for t in tables:
        new = ledger_rows(run, t)[before[t]:]
        assert new and {(r.kind, r.operator, r.reason) for r in new} == {("replay", "tester", "value maps fixed")}
        got = e2e.frontend_keys(run, t)
        assert all(got.count(k) == 1 for tt, k in keys if tt == t)
    flushed = {t: len(ledger_rows(run, t)) for t in tables}
    # a second replay finds nothing open; re-sending the same records anyway changes nothing
    assert "nothing sent" in invoke(run, quarantine_cli.cli, ["replay", "--rule", "unmapped_code", "--batch", D,
                                                              "--operator", "tester"], settings)
    again = [e for e in entries(run, rule="unmapped_code", batch=D) if e.id in fixed]
    sender = ReplaySender(settings.connections.kafka_bootstrap, settings.worker.core_prefix)
    # once over the worker's reference store read beside it, once over a store built from the topics (a
    # command run where the worker's state folder is not): the same records either way
    elsewhere = settings.with_values(worker={"state_dir": tmp_path / "no-worker-here"})
    try:
        for where in (settings, elsewhere):
            with Replayer(where) as replayer:
                assert replay_entries(replayer, sender, "resend-test", again).sent == len(again)
                assert replayer.beside_worker == (where is settings)
    finally:
        sender.close()
    # the worker's store kept for another mapping's layout (not restarted since the mapping changed): the
    # replay builds its own rather than read rows without the columns its mapping reads
    narrow = mapping_without_work_unit(tmp_path, settings.paths.mapping)
    with Replayer(settings.with_values(paths={"mapping": narrow})) as replayer:
        assert not replayer.beside_worker
    ticks = sink_ticks(run)
    wait_for("a few more sink ticks", lambda: sink_ticks(run) >= ticks + 3, timeout=60)
    assert {t: len(ledger_rows(run, t)) for t in tables} == flushed
    run.fixed = frozenset(k for t, k in keys if t == TABLE.name)
    report = reconciles(run)
    assert report.ok, reconcile.format_report([report])

    # raw changes re-run through the fixed mapping: whatever changed goes out once; run again, nothing more
    raw = ["--from-raw", "--connector", run.connector, "--since", "2000-01-01T00:00:00+08:00",
           "--operator", "tester", "--reason", "mapping fixed"]
    invoke(run, replay_cli.cli, raw, settings)
    wait_for("the raw replay staged", lambda: replay_lag(run) == 0, timeout=120)
    # and flushed: the sink stages, commits its offsets (lag 0), and flushes at a later step of its timer
    ticks = sink_ticks(run)
    wait_for("a few more sink ticks", lambda: sink_ticks(run) >= ticks + 3, timeout=60)
    seq, flushes = staged_seq(run), {t: len(ledger_rows(run, t)) for t in e2e.CATALOG.tables}
    assert "records to the replay topic" in invoke(run, replay_cli.cli, raw, settings)
    wait_for("the second raw replay consumed", lambda: replay_lag(run) == 0, timeout=120)
    ticks = sink_ticks(run)
    wait_for("a few more sink ticks", lambda: sink_ticks(run) >= ticks + 3, timeout=60)
    assert staged_seq(run) == seq and {t: len(ledger_rows(run, t)) for t in e2e.CATALOG.tables} == flushes


def replay_lag(run) -> int:
    """The sink's lag on the replay topic (a partition it has not committed on counts whole)."""
    from hisbridge.ops.lag import partition_lags
    from kafka.admin import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=run.settings.connections.kafka_bootstrap)
    try:
        return sum(p.lag for p in partition_lags(admin, [run.settings.worker.app_id],
                                                 [replay_topic(run.settings.worker.core_prefix)]))
    finally:
        admin.close()


def staged_seq(run) -> int:
    conn = staging_conn(run)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT coalesce(max(seq), 0) FROM hisbridge.staged")
            return cur.fetchone()[0]
    finally:
        conn.close()


def sink_ticks(run) -> int:
    conn = staging_conn(run)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT coalesce(max(ticks), 0) FROM hisbridge.sink_ticks")
            return cur.fetchone()[0]
    finally:
        conn.close()


def batch_keys(run) -> dict[str, object]:
    conn = e2e.frontend(run)
    try:
        return reconcile.frontend_keys(conn, TABLE, D)      # key → report_datetime of batch D's rows
    finally:
        conn.close()


def test_replay_batch_survives_a_kill_and_resends_every_row_once_dismissals_stay(run):
    target = next(iter(entries(run, table=TABLE.name, state="open", batch=D)), None)
    assert target is not None, "the scenario leaves entries that need a decision"
    invoke(run, quarantine_cli.cli, ["dismiss", str(target.id), "--operator", "tester", "--reason", "test data"])
    run.dismissed = frozenset({target.key})
    before, keys = ledger_rows(run), set(batch_keys(run))
    invoke(run, replay_cli.cli, ["batch", "--table", TABLE.name, "--batch", D, "--operator", "tester",
                                 "--reason", "province asked again"])
    pid = run.worker.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)              # the request is on the replay topic, nothing staged or flushed yet
    wait_for("the killed worker gone", lambda: procs.gone(pid), timeout=30)   # its web port free again
    run.worker.start_background(env=environment_for(run.settings), restart=True)
    wait_for("the replayed batch flushed", lambda: len(ledger_rows(run)) > len(before), timeout=240)
    ticks = sink_ticks(run)
    wait_for("a few more sink ticks", lambda: sink_ticks(run) >= ticks + 3, timeout=120)
    new = ledger_rows(run)[len(before):]
    assert [(r.kind, r.operator, r.reason, r.row_count) for r in new] == [
        ("replay", "tester", "province asked again", len(keys))]
    got = batch_keys(run)
    assert set(got) == keys and len(e2e.frontend_keys(run, TABLE.name)) == len(set(e2e.frontend_keys(run, TABLE.name)))
    assert set(got.values()) == {new[0].report_datetime}   # every row carries the replay's report_datetime
    (after,) = [e for e in entries(run) if e.id == target.id]
    assert (after.state, after.actor, after.note) == ("dismissed", "tester", "test data")
    report = reconciles(run)
    assert report.ok, reconcile.format_report([report])


def clone_visit(his, run, suffix: str, start: datetime | None = None) -> tuple[str, dict]:
    """A delivered visit of batch D inserted again under new ids (its registration moved to `start`, the other
    times with it), without its patient row; returns the new visit id and the patient row to insert later."""
    delivered = sorted(e2e.expected()[(TABLE.name, D)].delivered)
    visit = next(v for key in delivered for v in his_rows(his, "op_visit", "visit_id", key)
                 if his_rows(his, "op_diagnosis", "visit_id", key))
    register = his_rows(his, "op_register", "reg_id", visit["reg_id"])[0]
    shift = start - register["reg_time"] if start is not None else None

    def moved(row: dict) -> dict:
        return {k: (v + shift if shift is not None and isinstance(v, datetime) and k != "updated_at" else v)
                for k, v in row.items()}
    vid, pid, rid = (visit[c] + suffix for c in ("visit_id", "patient_id", "reg_id"))
    patient = {**his_rows(his, "pat_master", "patient_id", visit["patient_id"])[0], "patient_id": pid}
    his_insert(his, "op_register", moved({**register, "reg_id": rid, "patient_id": pid}))
    his_insert(his, "op_visit", moved({**visit, "visit_id": vid, "reg_id": rid, "patient_id": pid}))
    for diagnosis in his_rows(his, "op_diagnosis", "visit_id", visit["visit_id"]):
        his_insert(his, "op_diagnosis", moved({**diagnosis, "visit_id": vid}))
    return vid, patient


def steer_clock(run, delta: timedelta) -> datetime:
    """Moves the run's clock file (the sink's and the transform's "now"; frozen) by `delta`; returns the old moment."""
    path = run.settings.clock.file
    before = datetime.fromisoformat(json.loads(path.read_text("utf-8"))["now"])
    write_clock_file(path, before + delta)
    return before


def held_late_visit(run, his, suffix: str, env: dict) -> tuple[str, dict]:
    """A visit of an open batch written without its patient row, with the worker restarted on `env`, once
    the transform holds it; returns its id and the patient row."""
    run.worker.start_background(env=env, restart=True)
    bootstrap, app = run.settings.connections.kafka_bootstrap, run.settings.worker.app_id
    held_before = held_waiting(bootstrap, app)[0]
    start = datetime.now(SHANGHAI).replace(tzinfo=None, microsecond=0) - timedelta(minutes=30)
    vid, patient = clone_visit(his, run, suffix, start)
    wait_for(f"visit {vid} held for its patient", lambda: held_waiting(bootstrap, app)[0] > held_before, timeout=180)
    return vid, patient


def staged_visit(run, vid: str) -> None:
    conn = staging_conn(run)
    try:
        wait_for(f"visit {vid} staged once its patient came", lambda: [
            k for (_, k) in staging.row_states(conn, TABLE.name) if k == vid], timeout=120)
    finally:
        conn.close()


def test_a_patient_row_three_hours_late_inside_its_open_batch_is_waited_for_on_the_steered_clock(run, tmp_path):
    """The hold counts the deployment's time (the clock file, as the sink does), so 3 hours can pass in a test.
    No operator bound (HISBRIDGE_LOOKUP_WAIT=0): a visit of a batch the watermark has not closed waits 3 steered
    hours for its patient row — past any fixed wait — is never quarantined, and is staged in its batch when
    the row comes. With an operator bound of 1 hour, the same 3 hours quarantine a second such visit as
    missing_lookup (which shows the transform reads the steered clock: 1 real hour has not passed); it stays
    held and goes out by itself when its row comes, its entry resolved. The visits happened half an hour ago
    (the watermark is the HIS's real commit times) and the schedule's grace is two days, so their batch stays
    open whatever the time of day."""
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text(re.sub(r"(?m)^grace: \S+", "grace: 2d", run.settings.paths.schedule.read_text("utf-8")),
                        encoding="utf-8")
    env = {**environment_for(run.settings), "HISBRIDGE_SCHEDULE": str(schedule)}
    bootstrap, app = run.settings.connections.kafka_bootstrap, run.settings.worker.app_id
    held_before = held_waiting(bootstrap, app)[0]
    his = his_conn(run)
    moved = timedelta(0)
    try:
        vid, patient = held_late_visit(run, his, "W", {**env, "HISBRIDGE_LOOKUP_WAIT": "0"})
        steer_clock(run, timedelta(hours=3))
        moved += timedelta(hours=3)
        ticks = sink_ticks(run)
        wait_for("the pipeline running on the steered clock", lambda: sink_ticks(run) >= ticks + 10, timeout=120)
        assert not [e for e in entries(run) if e.key == vid]
        his_insert(his, "pat_master", patient)
        staged_visit(run, vid)
        assert not [e for e in entries(run) if e.key == vid]

        bound, bound_patient = held_late_visit(run, his, "B", {**env, "HISBRIDGE_LOOKUP_WAIT": "3600"})
        steer_clock(run, timedelta(hours=3))
        moved += timedelta(hours=3)
        wait_for(f"visit {bound} quarantined at the 1-hour bound", lambda: [
            e for e in entries(run) if e.key == bound and e.state == "open"], timeout=120)
        (entry,) = [e for e in entries(run) if e.key == bound]
        assert entry.rules == ["missing_lookup"], entry
        his_insert(his, "pat_master", bound_patient)
        staged_visit(run, bound)
        wait_for(f"the entry of {bound} resolved", lambda: [
            e for e in entries(run) if e.key == bound and e.state == "resolved"], timeout=120)
    finally:
        his.close()
        steer_clock(run, -moved)        # back inside batch D's window for the tests after this one
        run.worker.start_background(env=environment_for(run.settings), restart=True)
    wait_for("nothing held any more", lambda: held_waiting(bootstrap, app)[0] == held_before, timeout=60)


def test_identity_fields_are_ciphertext_on_the_quarantine_and_replay_topics(run):
    his = his_conn(run)
    try:
        with hisdb.transaction(his) as cur:
            cur.execute("SELECT name, id_no, phone, address FROM his.pat_master")
            plain = {v for row in cur.fetchall() for v in row if isinstance(v, str) and len(v) >= 4}
    finally:
        his.close()
    assert plain
    prefix = run.settings.worker.core_prefix
    bootstrap = run.settings.connections.kafka_bootstrap
    seen = 0
    for topic in (quarantine_topic(prefix), replay_topic(prefix)):
        for _, key, value in read_topic(bootstrap, topic):
            data = (key or b"") + (value or b"")
            seen += 1
            leaked = [p for p in plain if p.encode("utf-8") in data]
            assert not leaked, f"{topic}: plaintext identity values in a message"
    assert seen > 0
