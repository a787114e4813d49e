"""The indicators' cross-check on a real staging and front-end database: a month of detail staged, its
evaluation rows staged through the sink's hold (hisbridge.indicators.crosscheck) with planted mismatches —
exactly those are held as `indicator_mismatch` (both values in the reason), the others flush in the monthly
window by the 15th; a corrected version goes out and resolves its entry; a dismissed one goes out as reported."""
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
from hisbridge.delivery import quarantine, staging
from hisbridge.delivery.flush import ensure_frontend, flush_batch
from hisbridge.delivery.schedule import parse
from hisbridge.indicators import crosscheck, definitions, evaluate
from hisbridge.settings import load_settings

pytestmark = pytest.mark.stack
CATALOG = load_catalog()
DEFS = definitions.load(load_settings().paths.indicators, definitions.catalog_columns(CATALOG))
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
    res = module_resources
    front = psycopg2.connect(res.database("frontend", f"ind_front_{res.id}"))
    stage = psycopg2.connect(res.database("frontend", f"ind_stage_{res.id}"))
    ensure_frontend(front)
    staging.ensure_schema(stage)
    yield stage, front
    front.close()
    stage.close()


def test_planted_mismatches_are_held_the_rest_go_out_by_the_15th(dbs):
    stage, front = dbs
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
