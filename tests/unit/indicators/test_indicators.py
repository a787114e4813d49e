"""The indicator definitions (schemas/indicators) against the catalog, the generic evaluator over plain rows,
and the comparison that makes `indicator_mismatch`."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hisbridge.catalog import catalog_for
from hisbridge.indicators import compare, definitions, evaluate
from hisbridge.settings import load_settings

ORG = "12440000000000000X"


@pytest.fixture(scope="module")
def columns():
    return definitions.catalog_columns(catalog_for(load_settings().paths))


@pytest.fixture(scope="module")
def defs():
    return definitions.load(load_settings().paths.indicators, catalog_for(load_settings().paths))


def _stay(bah, cysj, sjzy=5, lyfs="1", nl=40, days=None, jbdm="I21.001", xgbz="0"):
    return {"yljgdm": ORG, "bah": bah, "zycs": 1, "cysj": cysj, "sjzy": sjzy, "lyfs": lyfs, "nl": nl,
            "bzyzs_nl": days, "jbdm": jbdm, "xgbz": xgbz}


def _op(bah, ssxh, ssjb, code="36.0601"):
    return {"yljgdm": ORG, "bah": bah, "zycs": 1, "ssxh": ssxh, "ssjb": ssjb, "ssjczbm": code, "xgbz": "0"}


ROWS = {
    "basy": [_stay("A", "2024-03-02T10:00:00", sjzy=4),
             _stay("B", "2024-03-31 23:59:59", sjzy=10, lyfs="5", jbdm="I21.002"),
             _stay("C", "2024-03-15T08:00:00", sjzy=7, nl=0, days=3, lyfs="5", jbdm="P07.301"),
             _stay("D", "2024-04-01T00:00:00", sjzy=100),                 # next month
             _stay("E", "2024-03-10T00:00:00", sjzy=100, xgbz="1")],      # cancelled
    "basy_ss": [_op("A", 1, "4"), _op("A", 2, None, "99.0401"), _op("B", 1, "2", "38.9301"), _op("D", 1, "4"),
                {**_op("A", 3, "3"), "yljgdm": "another hospital"}],
    "mjzzlxx": [{"yljgdm": ORG, "jzsj": "2024-03-01T08:00:00", "xgbz": "0"},
                {"yljgdm": ORG, "jzsj": "2024-02-29T23:00:00", "xgbz": "0"}],
}


def test_every_definition_loads_against_the_catalog(defs):
    ids = {i.id for i in defs.indicators}
    assert {"discharges", "average_stay", "surgery_share", "grade4_share", "mortality", "outpatient_visits",
            "inpatient_operations", "day_surgery_share"} <= ids
    assert all(i.why for i in defs.indicators if not i.derivable)
    assert not next(i for i in defs.indicators if i.id == "day_surgery_share").derivable
    assert defs.is_reported_only("zypzyx", "2.1.1.1") and defs.is_reported_only("zdzkzb", "anything")


def test_the_codes_checked_are_codes_of_the_evaluation_value_set(defs):
    codes = set(catalog_for(load_settings().paths).valuesets["indicator_service_quality"].codes)
    assert {i.code for i in defs.indicators if i.code} <= codes


@pytest.mark.parametrize("broken, says", [
    ({"id": "x", "name": "x", "period": {"table": "basy", "field": "nope"}, "numerator": {"count": "basy"}}, "basy.nope"),
    ({"id": "x", "name": "x", "period": {"table": "basy", "field": "cysj"}, "numerator": {"sum": "sjzyy"}}, "basy.sjzyy"),
    ({"id": "x", "name": "x", "period": {"table": "basy", "field": "cysj"},
      "numerator": {"count": "basy_ss"}}, "via"),
    ({"id": "x", "name": "x", "period": {"table": "basy", "field": "cysj"},
      "numerator": {"count": "basy", "where": [{"field": "lyfs", "like": "5"}]}}, "takes one of"),
    ({"id": "x", "name": "x", "derivable": False}, "says why"),
])
def test_a_definition_naming_what_the_catalog_lacks_is_refused(columns, broken, says):
    with pytest.raises(definitions.DefinitionError, match=says):
        definitions.parse({"indicators": [broken]}, columns, "t.yaml")


def _derived(defs, month="2024-03"):
    return {d.id: d for d in evaluate.derive_all(defs.indicators, month, ROWS)}


def test_the_evaluator_counts_by_discharge_month_without_cancelled_rows(defs):
    got = _derived(defs)
    assert got["discharges"].value == 3
    assert (got["average_stay"].numerator, got["average_stay"].denominator, got["average_stay"].value) == \
        (21, 3, Decimal("7.0000"))
    assert got["mortality"].value == Decimal("66.6667")
    assert (got["neonatal_mortality"].numerator, got["neonatal_mortality"].denominator) == (1, 1)
    assert got["outpatient_visits"].value == 1
    assert got["diagnosis_kinds"].value == 2                       # I21.0 and P07.3


def test_children_join_their_parent_of_the_same_hospital_in_the_period(defs):
    got = _derived(defs)
    # A (grade 4 + an ungraded intervention) and B (grade 2) had surgery; D is April, the other hospital's row never joins
    assert (got["inpatient_operations"].value, got["surgery_share"].numerator, got["surgery_share"].denominator) == (2, 2, 3)
    assert (got["grade4_share"].numerator, got["grade4_share"].denominator, got["grade4_share"].value) == \
        (1, 2, Decimal("50.0000"))
    assert (got["surgical_mortality"].numerator, got["surgical_mortality"].denominator) == (1, 2)
    assert got["operation_kinds"].value == 2


def test_a_ratio_over_nothing_a_month_without_detail_and_a_non_derivable_indicator_have_no_value(defs):
    got = _derived(defs)
    march = {"basy": [r for r in ROWS["basy"] if r["bah"] != "C"], "basy_ss": ROWS["basy_ss"]}
    neonatal = evaluate.derive(next(i for i in defs.indicators if i.id == "neonatal_mortality"), "2024-03", march)
    assert neonatal.value is None and neonatal.denominator == 0 and not neonatal.why
    assert got["day_surgery_share"].value is None and got["day_surgery_share"].why
    empty = _derived(defs, "2023-01")
    assert empty["mortality"].value is None and empty["mortality"].why == evaluate.NO_DETAIL


def _row(code, zbz, fz=None, fm=None):
    return {"zbdm": code, "zbmc": "", "zbz": zbz, "fz": fz, "fm": fm}


def test_within_tolerance_is_ok_beyond_is_indicator_mismatch_with_both_values(defs):
    got = evaluate.derive_all(defs.indicators, "2024-03", ROWS)
    rows = [_row("2.2.0.1", "7.04", "21", "3"), _row("2.2.2.2", "66.67", "2", "3"),
            _row("2.2.1.9", "60", "1", "2"), _row("2.2.1.7", "66.6667", "2", "4"),
            _row("2.2.2.7", "0.1"), _row("9.9.9", "1")]
    found = {c.code: c for c in compare.compare("ylfwnl", rows, defs, got)}
    assert found["2.2.0.1"].status == compare.OK and found["2.2.2.2"].status == compare.OK
    assert found["2.2.1.9"].status == compare.MISMATCH and found["2.2.1.9"].differs == ("value",)
    assert found["2.2.1.7"].differs == ("denominator",)
    reason = found["2.2.1.9"].reason()
    assert reason["rule"] == "indicator_mismatch" and reason["field"] == "zbz"
    assert reason["reported"]["value"] == "60" and reason["derived"]["value"] == "50"
    assert "60" in reason["message"] and "50" in reason["message"]
    assert found["2.2.2.7"].status == compare.NOT_DERIVABLE and found["9.9.9"].status == compare.UNDEFINED
    assert found["2.2.0.1"].reason() is None


def test_a_value_over_an_empty_denominator_is_a_mismatch_unless_0_a_month_without_detail_is_not_checked(defs):
    march = {"basy": [r for r in ROWS["basy"] if r["bah"] != "C"], "basy_ss": ROWS["basy_ss"]}
    derived = evaluate.derive_all(defs.indicators, "2024-03", march)
    (c,) = compare.compare("ylfwnl", [_row("2.2.2.3", "1.5")], defs, derived)
    assert c.status == compare.MISMATCH
    (c,) = compare.compare("ylfwnl", [_row("2.2.2.3", "0", "0", "0")], defs, derived)    # a rate over nothing: 0
    assert c.status == compare.OK
    (c,) = compare.compare("ylfwnl", [_row("2.2.2.2", "1.5")], defs, evaluate.derive_all(defs.indicators, "2023-01", ROWS))
    assert c.status == compare.NO_DETAIL and c.reason() is None


def _eval_staged(code, zbz, lsn, fz=None, fm=None, revoked=False):
    from hisbridge.delivery.staging import StagedRow
    payload = {"yljgdm": ORG, "tjyf": "2024-03-01", "zbdm": code, "zbmc": "", "zbz": zbz, "fz": fz, "fm": fm,
               "xgbz": "1" if revoked else "0"}
    return StagedRow("ylfwnl", "monthly", ORG, f"{ORG}|2024-03-01|{code}", "2024-03", payload, revoked, lsn, lsn * 10)


def test_the_cross_check_holds_exactly_the_rows_beyond_tolerance(defs):
    from hisbridge.indicators import crosscheck
    derived = {"2024-03": evaluate.derive_all(defs.indicators, "2024-03", ROWS)}
    rows = [_eval_staged("2.2.0.1", "7", 1, "21", "3"), _eval_staged("2.2.1.9", "60", 2),
            _eval_staged("2.2.1.9", "60", 3, revoked=True), _eval_staged("2.2.2.2", "10", 4)]
    dismissed = {("ylfwnl", rows[3].bkey, "4:40")}
    kept, held = crosscheck.split(rows, defs, derived, dismissed, "2024-04-05T10:00:00+08:00")
    assert [r.lsn for r in kept] == [1, 3, 4]           # in tolerance, a revoke, a dismissed version
    (entry,) = held
    assert (entry.table, entry.key, entry.batch, entry.rules) == ("ylfwnl", rows[1].bkey, "2024-03", ["indicator_mismatch"])
    assert entry.source["lsn"] == 2 and entry.record["zbz"] == "60"
