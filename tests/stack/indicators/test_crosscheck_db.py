"""The tertiary-evaluation family on real staging and front-end databases.

Cross-check: a month of detail staged, its evaluation rows staged through the sink's hold
(hisbridge.indicators.crosscheck) with planted mismatches — exactly those are held as `indicator_mismatch`
(both values in the reason), the others flush in the monthly window by the 15th; a corrected version goes out
and resolves its entry; a dismissed one goes out as reported.
Back-fill: the simulated HIS's evaluation history since 2022-01 staged, the real sink I/O's flush timer on a
steered clock delivers every month and year once in their windows (and in the daily windows with
`backfill.window: daily`), ledger = front-end; the same run again delivers nothing."""
from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import psycopg2
import pytest
from hisbridge.catalog import load_catalog
from hisbridge.catalog.sample import sample_records
from hisbridge.chain.batch import assign_batch
from hisbridge.cli.indicators import comparisons
from hisbridge.clock import SHANGHAI
from hisbridge.contract import core_topic
from hisbridge.delivery import ledger, quarantine, staging
from hisbridge.delivery.flush import ensure_frontend, flush_batch
from hisbridge.delivery.schedule import parse
from hisbridge.delivery.timer import LoopState, tick
from hisbridge.indicators import crosscheck, definitions, evaluate
from hisbridge.runtime.sink_io import PgSinkIO
from hisbridge.settings import load_settings
from hisbridge.sim import generate

pytestmark = pytest.mark.stack
CATALOG = load_catalog()
DEFS = definitions.load(load_settings().paths.indicators, CATALOG)
ORG = "12440000INDIC0000X"
MONTH = "2024-03"
EVAL = CATALOG.table("ylfwnl")


def _staged(table: str, rec: dict, lsn: int) -> staging.StagedRow:
    t = CATALOG.table(table)
    return staging.staged_row(t, rec, assign_batch(t, rec).name, lsn, lsn * 10)


def detail() -> list[staging.StagedRow]:
    """40 discharges in March (and 3 in April), every 4th with a grade-4 operation, every 3rd a grade-2 one,
    every 10th dead; 25 outpatient visits."""
    out, lsn = [], 1000
    for i, rec in enumerate(sample_records(CATALOG.table("basy"), 43, seed=7)):
        day = 1 + i % 28 if i < 40 else 2
        cysj = datetime(2024, 3 if i < 40 else 4, day, 10)
        rec.update(yljgdm=ORG, bah=f"IND{i:05d}", zycs=1, rysj=cysj - timedelta(days=3 + i % 9), cysj=cysj,
                   gdsj=cysj + timedelta(days=2), sjzy=3 + i % 9, lyfs="5" if i % 10 == 0 else "1", xgbz="0")
        out.append(_staged("basy", rec, lsn := lsn + 1))
        for n, level in enumerate([lvl for lvl, every in (("4", 4), ("2", 3)) if i % every == 0], start=1):
            (op,) = sample_records(CATALOG.table("basy_ss"), 1, seed=i * 10 + n)
            op.update(yljgdm=ORG, bah=rec["bah"], zycs=1, ssxh=n, ssjb=level, ssjczrq=cysj - timedelta(days=1),
                      gdsj=rec["gdsj"], xgbz="0")
            out.append(_staged("basy_ss", op, lsn := lsn + 1))
    for i, rec in enumerate(sample_records(CATALOG.table("mjzzlxx"), 25, seed=9)):
        jzsj = datetime(2024, 3, 1 + i, 9)
        rec.update(yljgdm=ORG, jzlsh=f"INDV{i:05d}", jzsj=jzsj, scsj=jzsj + timedelta(hours=1), xgbz="0")
        out.append(_staged("mjzzlxx", rec, lsn := lsn + 1))
    return out


def eval_row(code: str, value, num, den, lsn: int) -> staging.StagedRow:
    (rec,) = sample_records(EVAL, 1, seed=lsn)
    rec.update(yljgdm=ORG, tjyf=date(2024, 3, 1), zbdm=code, zbmc=CATALOG.valuesets["indicator_service_quality"].codes[code],
               zbz=value, fz=num, fm=den, xgbz="0")
    return _staged("ylfwnl", rec, lsn)


@pytest.fixture(scope="module")
def dbs(module_resources):
    """One staging + front-end pair per scenario (the back-fill's batches must not meet the cross-check's):
    scenario → (staging conn, front-end conn, (staging dsn, front-end dsn))."""
    res = module_resources
    pairs = {}
    for name in ("check", "backfill"):
        dsns = res.database("frontend", f"ind_{name}_stage_{res.id}"), res.database("frontend", f"ind_{name}_front_{res.id}")
        stage, front = (psycopg2.connect(d) for d in dsns)
        ensure_frontend(front)
        staging.ensure_schema(stage)
        pairs[name] = stage, front, dsns
    yield pairs
    for stage, front, _ in pairs.values():
        front.close()
        stage.close()


def test_planted_mismatches_are_held_the_rest_go_out_by_the_15th(dbs):
    stage, front, _ = dbs["check"]
    rows = detail()
    staging.upsert_rows(stage, rows)
    by_table: dict[str, list] = {}
    for r in rows:
        by_table.setdefault(r.table, []).append(r.payload)
    truth = {d.code: d for d in evaluate.derive_all(DEFS.indicators, MONTH, by_table) if d.code and d.value is not None}
    assert {"2.2.0.1", "2.2.1.7", "2.2.1.9", "2.2.2.2"} <= set(truth)
    planted = {"2.2.1.9": "value", "2.2.2.2": "numerator"}
    lsn = 5000
    eval_rows = []
    for code, d in sorted(truth.items()):
        value, num, den = d.value, d.numerator, d.denominator
        if planted.get(code) == "value":
            value = value + Decimal(3)
        if planted.get(code) == "numerator":
            num = num + 1
        eval_rows.append(eval_row(code, value, num, den, lsn := lsn + 1))
    hold = crosscheck.hold_for(DEFS)
    staging.upsert_rows(stage, eval_rows, hold=hold)

    held = quarantine.entries(stage, table="ylfwnl", rule="indicator_mismatch")
    assert sorted(e.key for e in held) == sorted(r.bkey for r in eval_rows if r.payload["zbdm"] in planted)
    for e in held:
        (reason,) = quarantine.get(stage, e.id).entry["reasons"]
        code = next(r.payload["zbdm"] for r in eval_rows if r.bkey == e.key)
        assert code in reason["message"] and reason["field"] == {"value": "zbz", "numerator": "fz"}[planted[code]]
    with stage.cursor() as cur:      # the operator's table: every row, the held ones as mismatch
        found = {c.code: c.status for c in comparisons(cur, DEFS, MONTH, "staged")}
    assert {c for c, s in found.items() if s == "mismatch"} == set(planted)

    window = datetime(2024, 4, 14, 12, tzinfo=SHANGHAI)          # the monthly window: by the 15th
    assert flush_batch(stage, front, EVAL, MONTH, window, parse({})).row_count == len(truth) - len(planted)
    with front.cursor() as cur:
        cur.execute("SELECT zbdm FROM ylfwnl WHERE yljgdm = %s", (ORG,))
        assert {c for (c,) in cur.fetchall()} == set(truth) - set(planted)

    # the operator: 2.2.1.9 corrected in the HIS (a new version), 2.2.2.2 dismissed and re-sent as reported
    fixed = truth["2.2.1.9"]
    staging.upsert_rows(stage, [eval_row("2.2.1.9", fixed.value, fixed.numerator, fixed.denominator, 6001)], hold=hold)
    dismissed = next(e for e in held if e.key == next(r.bkey for r in eval_rows if r.payload["zbdm"] == "2.2.2.2"))
    quarantine.dismiss(stage, dismissed.id, "tester", "the HIS counts a death transferred out")
    again = next(r for r in eval_rows if r.payload["zbdm"] == "2.2.2.2")
    staging.upsert_rows(stage, [again], hold=hold)
    assert quarantine.entries(stage, table="ylfwnl", rule="indicator_mismatch", state="open") == []
    assert flush_batch(stage, front, EVAL, MONTH, window + timedelta(hours=1), parse({})).row_count == 2


# --- back-fill since 2022 --------------------------------------------------------------------------------

BACKFILL_ORG = "12440000BACKFILL0X"
EVAL_TABLES = {"ylfwnl": "tjyf", "zdzkzb": "tjyf", "zypzyx": "tjnd"}


def catalog_record(his: dict) -> tuple[str, dict]:
    """The simulated HIS's eval_indicator row as the source mapping makes it (schemas/mapping: ylfwnl, zdzkzb,
    zypzyx; the HIS has no numerator/denominator columns)."""
    yearly = len(his["period"]) == 4
    table = "zypzyx" if yearly else ("zdzkzb" if his["specialty_code"] else "ylfwnl")
    start = date(int(his["period"][:4]), 1 if yearly else int(his["period"][5:7]), 1)
    rec = {"yljgdm": BACKFILL_ORG, EVAL_TABLES[table]: start, "zbdm": his["indicator_code"],
           "zbmc": his["indicator_name"], "zbz": his["value"], "dw": his["unit"], "xgbz": "0"}
    if table == "zdzkzb":
        rec.update(zydm=his["specialty_code"], zymc=his["specialty_name"])
    return table, rec


def stage_history(stage, today: date, hold) -> list[staging.StagedRow]:
    """What the sink stages from the simulated HIS's evaluation history up to `today` (same source positions
    on every run, as a re-read of the same changes), with the watermark at `today`."""
    rows = []
    for n, his in enumerate(sorted(generate.evaluation_history(3, today), key=lambda r: (r["period"], r["indicator_code"],
                                                                                       r["specialty_code"] or ""))):
        table, rec = catalog_record(his)
        rows.append(_staged(table, rec, 100_000 + n))
    mark = int(datetime.combine(today, datetime.min.time(), SHANGHAI).timestamp() * 1000)
    staging.upsert_rows(stage, rows, {("his-backfill", "core.ylfwnl", 0): mark}, hold=hold)
    return rows


def _run(dsns, schedule, now: datetime) -> list:
    """One flush-timer step of the real sink I/O on the steered clock `now`."""
    tables = {t: CATALOG.table(t) for t in EVAL_TABLES}
    io = PgSinkIO(tables, [core_topic("core", t) for t in tables], schedule, dsns[0], dsns[1],
                  load_settings().paths.frontend_sql / "frontend.sql", "indicators-backfill-test")
    try:
        return tick(now, LoopState(), io, schedule).flushed
    finally:
        io.close()


def _delivered(front) -> dict[tuple[str, str], tuple[int, int]]:
    """(table, batch) → (ledger rows, front-end rows of that period): the ledger against the front-end."""
    out = {}
    for row in ledger.rows(front):
        out.setdefault((row.table, row.batch), [0, 0])[0] += 1
    with front.cursor() as cur:
        for table, field in EVAL_TABLES.items():
            cur.execute(f"SELECT {field}, count(*) FROM {table} WHERE yljgdm = %s GROUP BY 1", (BACKFILL_ORG,))
            for start, count in cur.fetchall():
                batch = f"{start:%Y}" if table == "zypzyx" else f"{start:%Y-%m}"
                out.setdefault((table, batch), [0, 0])[1] = count
    return {k: tuple(v) for k, v in out.items()}


def test_backfill_since_2022_delivers_every_period_once_in_its_windows(dbs):
    stage, front, dsns = dbs["backfill"]
    hold = crosscheck.hold_for(DEFS)
    hospital = parse({})
    today = date(2025, 1, 3)                       # inside the monthly (1st–15th) and yearly (1–15 Jan) windows
    rows = stage_history(stage, today, hold)
    expected = {}
    for r in rows:
        expected[(r.table, r.batch)] = expected.get((r.table, r.batch), 0) + 1
    periods = generate.evaluation_periods(today)
    assert {b for _, b in expected} == set(periods) and periods[0] == "2022-01" and "2022" in periods
    assert quarantine.entries(stage, rule="indicator_mismatch") == []       # no detail of those months: not checked

    assert _run(dsns, hospital, datetime(2025, 1, 3, 10, tzinfo=SHANGHAI))
    assert _delivered(front) == {k: (1, n) for k, n in expected.items()}    # once each, ledger = front-end

    stage_history(stage, today, hold)                                       # the back-fill run again
    assert _run(dsns, hospital, datetime(2025, 1, 3, 11, tzinfo=SHANGHAI)) == []
    assert _delivered(front) == {k: (1, n) for k, n in expected.items()}

    # two months later the monthly windows of 2025-01 and 2025-02 have passed: with the default schedule they
    # wait for the next monthly window; with backfill.window daily they go out in tonight's daily window
    later = date(2025, 3, 20)
    stage_history(stage, later, hold)
    evening = datetime(2025, 3, 20, 19, tzinfo=SHANGHAI)
    assert _run(dsns, hospital, evening) == []
    daily = parse({"backfill": {"enabled": True, "window": "daily"}})
    assert _run(dsns, daily, datetime(2025, 3, 20, 17, tzinfo=SHANGHAI)) == []          # no window open
    done = _run(dsns, daily, evening)
    assert sorted((f.table, f.batch) for f in done) == [("ylfwnl", "2025-01"), ("ylfwnl", "2025-02"),
                                                        ("zdzkzb", "2025-01"), ("zdzkzb", "2025-02")]
    assert all(v[0] == 1 for v in _delivered(front).values())
    assert _run(dsns, daily, evening.replace(hour=20)) == []
