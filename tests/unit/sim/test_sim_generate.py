"""The simulated hospital's generator: determinism, ID numbers, bad-data share, boundaries, windows."""
from __future__ import annotations

import csv
import re
from datetime import date, datetime, timedelta

import pytest
from hisbridge.settings import defaults
from hisbridge.sim import codes, generate, people

DAY = date(2026, 3, 20)


@pytest.fixture(scope="module")
def day_activity():
    return generate.day_activity(seed=11, day=DAY, visits_per_day=1000, bad_share=0.05)


def test_same_seed_same_activity_and_other_seed_differs():
    a = generate.day_activity(3, DAY, 300, 0.02)
    b = generate.day_activity(3, DAY, 300, 0.02)
    c = generate.day_activity(4, DAY, 300, 0.02)
    assert a.events == b.events and a.manifest == b.manifest
    assert a.rows()["pat_master"] != c.rows()["pat_master"]


def test_resident_ids_are_valid_and_match_birth_date_and_sex(day_activity):
    clean = {e["patient_id"] for e in day_activity.manifest["entities"] if not e["defects"]}
    patients = [p for p in day_activity.rows()["pat_master"] if p["patient_id"] in clean]
    assert len(patients) > 500
    for p in patients:
        assert people.id_number_is_valid(p["id_no"]), p["id_no"]
        assert p["id_no"][6:14] == p["birth_date"].strftime("%Y%m%d")
        assert int(p["id_no"][16]) % 2 == (1 if p["sex"] == "M" else 0)
        assert p["id_no"][:6] in {code for code, _ in people.AREAS}


def test_checksum_matches_the_standard_worked_example():
    assert people.id_check_char("11010519491231002") == "X"
    assert people.id_number_is_valid("11010519491231002X")
    assert not people.id_number_is_valid("110105194912310021")


def test_phones_look_like_mobiles_or_guangzhou_landlines(day_activity):
    for p in day_activity.rows()["pat_master"]:
        assert re.fullmatch(r"1[3-9]\d{9}|020-\d{8}", p["phone"]), p["phone"]
        assert p["address"].startswith("广东省")


@pytest.mark.parametrize("n, share", [(1000, 0.02), (997, 0.05), (400, 0.1), (1000, 0.0)])
def test_bad_share_is_exact_over_the_day(n, share):
    assert sum(generate.is_bad(seq, share) for seq in range(n)) == pytest.approx(n * share, abs=1)


def test_every_planted_defect_is_in_the_rows(day_activity):
    rows = day_activity.rows()
    by_key = {t: {tuple(r[k] for k in generate.PRIMARY_KEYS[t]): r for r in rs} for t, rs in rows.items()}
    defects = [d for e in day_activity.manifest["entities"] for d in e["defects"]]
    assert {d["reason"] for d in defects} == {generate.UNMAPPED_CODE, generate.INVALID_ID_NUMBER,
                                             generate.MISSING_REQUIRED}
    for d in defects:
        row = by_key[d["table"]].get(d["key"])
        if row is None or (d["column"] == "discharge_mode" and row.get("discharge_time") is None):
            continue       # a front page not yet written / a stay not yet discharged in this window
        assert row[d["column"]] == d["value"]
        if d["reason"] == generate.UNMAPPED_CODE:
            assert d["value"] not in _valuemap_locals(_domain(d["column"]))
        if d["reason"] == generate.INVALID_ID_NUMBER:
            assert not people.id_number_is_valid(d["value"])


def test_clean_rows_use_only_mapped_codes(day_activity):
    bad = {e["patient_id"] for e in day_activity.manifest["entities"] if e["defects"]}
    bad_keys = {e["key"] for e in day_activity.manifest["entities"] if e["defects"]}
    rows = day_activity.rows()
    for p in rows["pat_master"]:
        if p["patient_id"] not in bad:
            for column in ("sex", "marital", "nation", "occupation", "id_type", "contact_relation"):
                assert p[column] in _valuemap_locals(_domain(column)), (column, p[column])
    for r in rows["op_register"]:
        if r["reg_id"] not in bad_keys:
            assert r["fee_type"] in _valuemap_locals("payment")
            assert r["dept_code"] in _valuemap_locals("department")
            assert r["visit_type"] in _valuemap_locals("patient_type")


def test_boundary_rows_at_1759_59_999999_and_1800(day_activity):
    start, end = generate.batch_window(DAY)
    reg_times = {e["reg_time"] for e in day_activity.manifest["entities"] if e["kind"] == "outpatient"}
    assert end - timedelta(microseconds=1) in reg_times and start in reg_times
    next_day = generate.day_activity(11, DAY + timedelta(days=1), 1000, 0.05)
    assert end in {e["reg_time"] for e in next_day.manifest["entities"] if e["kind"] == "outpatient"}


def test_registrations_of_the_day_fall_in_the_batch_window(day_activity):
    start, end = generate.batch_window(DAY)
    inserted = [e.row for e in day_activity.events if e.table == "op_register" and e.op == "insert"]
    assert len(inserted) == 1000
    assert all(start <= r["reg_time"] < end for r in inserted)
    assert all(start <= e.at < end for e in day_activity.events)


def test_day_has_edits_cancellations_late_entries_and_lagging_archives(day_activity):
    entities = day_activity.manifest["entities"]
    assert any(e.get("cancelled") for e in entities)
    assert any(e.get("edited") for e in entities)
    start, end = generate.batch_window(DAY)
    # late entries of the previous day's visits show up after its 18:00, i.e. inside this window
    assert any(e["late_time"] and e["reg_time"] < start <= e["late_time"] for e in entities if e["kind"] == "outpatient")
    stays = [e for e in entities if e["kind"] == "inpatient"]
    assert all(e["admit_time"] < e["discharge_time"] < e["archive_time"] for e in stays)
    assert any(start <= e["discharge_time"] < end and e["admit_time"] < start - timedelta(days=1) for e in stays)


def test_consecutive_windows_equal_one_long_window():
    start, _ = generate.batch_window(DAY)
    mid, end = start + timedelta(days=1), start + timedelta(days=2)
    one = generate.activity(5, start, end, 200, 0.05)
    two = generate.activity(5, start, mid, 200, 0.05).events + generate.activity(5, mid, end, 200, 0.05).events
    assert _as_sets(generate.final_rows(two)) == _as_sets(one.rows())


def test_fees_add_up():
    rows = generate.day_activity(2, DAY, 500, 0.0).rows()["mr_homepage"]
    assert rows
    for hp in rows:
        assert hp["total_fee"] == sum(hp[item] for item in generate.FEE_ITEMS)
        for sub, parent in generate.FEE_SUB_ITEMS.items():
            assert hp[sub] <= hp[parent]


def test_local_dictionaries_and_value_maps_agree():
    for domain, local in codes.LOCAL.items():
        mapped = _valuemap_locals(domain)
        assert mapped == set(codes.mapped_codes(domain)), domain
        assert not mapped & codes.UNMAPPED.get(domain, frozenset())
    clinical = {c for c, _, kind, _ in codes.DEPARTMENTS if kind != "ADM"}
    assert _valuemap_locals("department") == clinical - codes.UNMAPPED["department"]


def _as_sets(rows):
    return {t: sorted(repr(sorted(r.items())) for r in rs) for t, rs in rows.items()}


_COLUMN_DOMAINS = {"fee_type": "payment", "pay_code": "payment", "dept_code": "department", "visit_type": "patient_type",
                   "admit_dept": "department", "discharge_dept": "department"}


def _domain(column: str) -> str:
    return _COLUMN_DOMAINS.get(column, column)


def _valuemap_locals(domain: str) -> set[str]:
    path = defaults().paths.schemas / "mapping" / "valuemaps" / f"{domain}.csv"
    with path.open(encoding="utf-8") as f:
        return {row["local"] for row in csv.DictReader(f)}


def _icd_subset(name: str) -> dict[str, str]:
    path = defaults().paths.schemas / "valuesets" / "icd" / name
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    return dict(line.split("\t", 1) for line in lines if line.strip())


def test_every_code_the_sim_writes_is_in_the_shipped_icd_subsets_under_the_same_name():
    icd10 = _icd_subset("icd10_gjlc_2.0.subset.tsv")
    icd9 = _icd_subset("icd9cm3_lc_3.0.subset.tsv")
    for code, name in codes.OP_DIAGNOSES + codes.IP_DIAGNOSES + codes.EXTERNAL_CAUSES:
        assert icd10.get(code) == name, code
    for code, name, _ in codes.OPERATIONS:
        assert icd9.get(code) == name, code
    assert len(icd10) <= 150 and len(icd9) <= 150     # a subset for the demo, not the licensed dictionary


def test_pathology_and_external_cause_are_filled_exactly_when_the_principal_diagnosis_needs_them(day_activity):
    rows = day_activity.rows()
    principal = {d["inpatient_no"]: d["icd_code"] for d in rows["mr_diagnosis"] if d["seq"] == 0}
    planted = {e["key"] for e in day_activity.manifest["entities"] if e["defects"]}   # e.g. a missing code
    seen = set()
    for hp in (hp for hp in rows["mr_homepage"] if hp["inpatient_no"] not in planted):
        code = principal[hp["inpatient_no"]]
        neoplasm, injury = generate.is_neoplasm(code), generate.is_injury(code)
        seen.add((neoplasm, injury))
        assert (hp["path_diag_name"] is not None) == (hp["path_diag_code"] is not None) == (hp["path_no"] is not None)
        assert (hp["path_diag_code"] is not None) == (neoplasm and code in codes.PATHOLOGY), hp["inpatient_no"]
        assert (hp["ext_cause_code"] is not None) == injury and (hp["ext_cause_name"] is not None) == injury
        if neoplasm:
            assert re.fullmatch(r"M\d{5}/\d", hp["path_diag_code"])
    assert {(True, False), (False, True), (False, False)} <= seen
    assert all(code in codes.PATHOLOGY for code, _ in codes.IP_DIAGNOSES if generate.is_neoplasm(code))


def test_indicators_are_monthly_2_2_and_key_specialty_rows_and_yearly_2_1_rows():
    monthly = generate.indicator_rows(1, "2026-02", datetime(2026, 3, 5, 10))
    yearly = generate.indicator_rows(1, "2025", datetime(2026, 1, 5, 10))
    hospital = [r for r in monthly if r["specialty_code"] is None]
    assert hospital and all(r["indicator_code"].startswith("2.2.") for r in hospital)
    specialty = [r for r in monthly if r["specialty_code"] is not None]
    assert specialty and all(r["indicator_code"].startswith(r["specialty_code"] + "-") for r in specialty)
    assert all(r["specialty_name"] == generate.KEY_SPECIALTIES[r["specialty_code"]] for r in specialty)
    assert yearly and all(r["indicator_code"].startswith("2.1.") and r["specialty_code"] is None for r in yearly)
