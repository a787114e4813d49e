"""The simulated statistics office (hisbridge.sim.evaluation): a month's figures derived from the simulated
detail through the source mapping agree with the cross-check, except exactly the planted ones."""
from __future__ import annotations

from datetime import datetime

from hisbridge.catalog import load_catalog
from hisbridge.chain.mapping import load_mapping
from hisbridge.indicators import compare, definitions, evaluate
from hisbridge.settings import load_settings
from hisbridge.sim import evaluation, generate

CATALOG = load_catalog()
MAPPING = load_mapping(CATALOG)
DEFS = definitions.load(load_settings().paths.indicators, CATALOG)
MONTH = "2024-03"


def _month():
    activity = evaluation.month_activity(5, MONTH, 6)
    rows = {**generate.dictionary_rows(5), **activity.rows()}
    return activity, rows


def _as_reported(row: dict) -> dict:
    """The HIS row as the mapping makes the ylfwnl record (zbdm, zbz, fz, fm)."""
    return {"zbdm": row["indicator_code"], "zbmc": row["indicator_name"], "zbz": row["value"],
            "fz": row["numerator"], "fm": row["denominator"]}


def test_the_month_window_ends_at_the_entry_on_the_11th_and_carries_no_evaluation_rows():
    activity, _ = _month()
    assert evaluation.entry_moment(MONTH) == datetime(2024, 4, generate.INDICATOR_DAY, 10)
    assert activity.end == evaluation.entry_moment(MONTH)
    assert not [e for e in activity.events if e.table == "eval_indicator"]


def test_derived_figures_agree_with_the_crosscheck_except_the_planted_ones():
    _, rows = _month()
    plant = {"2.2.0.1": "value", "2.2.1.7": "numerator"}
    records = evaluation.catalog_records(MAPPING, rows, evaluation.detail_tables(DEFS))
    assert set(records) == {"basy", "basy_ss", "mjzzlxx"}
    eval_rows, figures = evaluation.month_evaluation(5, MONTH, records, DEFS, plant)
    assert len([r for r in records["basy"] if str(r["cysj"])[:7] == MONTH]) > 50
    assert {r["lyfs"] for r in records["basy"]} <= set(CATALOG.valuesets["discharge_mode"].codes)  # national codes
    derived = evaluate.derive_all(DEFS.indicators, MONTH, records)
    hospital_wide = [_as_reported(r) for r in eval_rows if r["specialty_code"] is None]
    found = {c.code: c for c in compare.compare("ylfwnl", hospital_wide, DEFS, derived)}
    assert {c for c, cmp in found.items() if cmp.status == compare.MISMATCH} == set(plant)
    assert {c for c, cmp in found.items() if cmp.status == compare.OK} == set(found) - set(plant)
    assert found["2.2.0.1"].differs == ("value",) and found["2.2.1.7"].differs == ("numerator",)
    assert set(figures) >= set(found)


def test_without_figures_indicator_rows_stay_as_they_were_drawn():
    at = datetime(2024, 4, 11, 10)
    plain = generate.indicator_rows(1, MONTH, at)
    given = generate.indicator_rows(1, MONTH, at, {"2.2.0.1": (1, 2, 3)})
    assert [r["value"] for r in plain][1:] == [r["value"] for r in given][1:]
    assert (given[0]["value"], given[0]["numerator"], given[0]["denominator"]) == (1, 2, 3)
    assert all(r["numerator"] is None for r in plain)


def test_a_ratio_over_an_empty_denominator_is_not_reported():
    _, rows = _month()
    records = evaluation.catalog_records(MAPPING, rows, evaluation.detail_tables(DEFS))
    records = {**records, "basy_ss": []}           # nobody operated: no surgical ratios
    eval_rows, figures = evaluation.month_evaluation(5, MONTH, records, DEFS)
    codes = {r["indicator_code"] for r in eval_rows}
    assert {"2.2.1.9", "2.2.2.4"} & codes == set() and {"2.2.0.1", "2.2.1.7", "2.2.2.2"} <= codes
    assert figures["2.2.1.7"][0] == 0


def test_a_scaled_down_history_has_detail_in_every_month_and_a_row_for_every_period():
    today = datetime(2025, 1, 11).date()
    months = [p for p in generate.evaluation_periods(today) if len(p) == 7]
    windows = evaluation.sample_windows(5, months, 1)
    events = [e for w in windows for e in w]
    rows = {**generate.dictionary_rows(5), **generate.final_rows(events)}
    records = evaluation.catalog_records(MAPPING, rows, evaluation.detail_tables(DEFS))
    history = evaluation.history(5, today, records, DEFS)
    assert {r["period"] for r in history} == set(generate.evaluation_periods(today))
    assert months[0] == "2022-01" and len(windows) == len(months) and len(events) < 10_000
    derived = {r["period"] for r in history if r["numerator"] is not None}
    assert derived == set(months)                  # every month, the last too, has detail of its own
