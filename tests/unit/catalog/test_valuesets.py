"""Value sets are data files naming their standard; ICD dictionaries load from hospital-supplied files."""
from __future__ import annotations

import pytest
from hisbridge.catalog import CatalogError, load_valuesets
from hisbridge.catalog.codes import (ICD9CM3_RE, ICD10_RE, load_code_systems,
                                     load_dictionary, parse_dictionary)
from hisbridge.settings import load_settings

REQUIRED_SETS = ("sex", "marital_status", "ethnicity", "id_document_type", "occupation_basy", "admission_route",
                 "discharge_mode", "admission_condition", "payment_method", "abo_blood_type", "rh_blood_type",
                 "contact_relation", "patient_type", "department", "yes_no", "revoke_flag", "icd10", "icd9cm3")


@pytest.fixture(scope="module")
def sets():
    return load_valuesets()


def test_required_sets_exist_with_their_standard(sets):
    for name in REQUIRED_SETS:
        assert sets[name].standard and sets[name].title and sets[name].codes


def test_all_56_ethnicities_in_standard_order(sets):
    codes = list(sets["ethnicity"].codes)
    assert codes == [f"{i:02d}" for i in range(1, 57)]
    assert sets["ethnicity"].name_of("01") == "汉族" and sets["ethnicity"].name_of("56") == "基诺族"


def test_known_codes(sets):
    assert sets["sex"].name_of("1") == "男" and "3" not in sets["sex"]
    assert sets["revoke_flag"].name_of("1") == "撤销"
    assert sets["id_document_type"].name_of("01") == "居民身份证"


def test_hierarchical_department_accepts_subspecialty(sets):
    dept = sets["department"]
    assert "03.01" in dept and "03" in dept and "29" not in dept and "29.01" not in dept
    assert dept.name_of("03.01") is None  # no name to agree with for a sub-specialty


@pytest.mark.parametrize("code", ["I10.x00x002", "J45.900x001", "E11.900", "I21.401"])
def test_icd10_format_accepts_published_examples(code):
    assert ICD10_RE.match(code)


@pytest.mark.parametrize("code", ["I10", "i10.x00", "I10.X00", "I10.x00x02", "10.x00", ""])
def test_icd10_format_rejects(code):
    assert not ICD10_RE.match(code)


@pytest.mark.parametrize("code", ["53.0100x001", "19.3x01", "96.7201", "47.09"])
def test_icd9cm3_format_accepts_published_examples(code):
    assert ICD9CM3_RE.match(code)


@pytest.mark.parametrize("code", ["5301", "53.0100x01", "I10.x00", "530.1"])
def test_icd9cm3_format_rejects(code):
    assert not ICD9CM3_RE.match(code)


def test_shipped_subsets_pass_their_format(sets):
    assert all(ICD10_RE.match(c) for c in sets["icd10"].codes) and len(sets["icd10"].codes) >= 20
    assert all(ICD9CM3_RE.match(c) for c in sets["icd9cm3"].codes) and len(sets["icd9cm3"].codes) >= 10
    assert "subset" in sets["icd10"].source


def test_full_dictionary_in_gb18030_with_header(tmp_path):
    path = tmp_path / "icd10.csv"
    path.write_bytes("疾病编码,疾病名称\nA00.000,古典生物型霍乱\nA00.100x001,埃尔托霍乱\n".encode("gb18030"))
    vs = load_dictionary(path, "icd10")
    assert vs.codes == {"A00.000": "古典生物型霍乱", "A00.100x001": "埃尔托霍乱"}


def test_full_dictionary_with_bad_codes_is_refused():
    with pytest.raises(CatalogError, match="line 3: 'A001'"):
        parse_dictionary("code\tname\nA00.000\t霍乱\nA001\t坏\n", "icd10")


def test_hospital_dictionary_replaces_subset(tmp_path):
    full = tmp_path / "full.tsv"
    full.write_text("A00.000\t古典生物型霍乱\n", encoding="utf-8")
    paths = load_settings({"HISBRIDGE_ICD10_DICT": str(full)}).paths
    systems = load_code_systems(paths.valuesets, {"icd10": paths.icd10_dict})
    assert systems["icd10"].codes == {"A00.000": "古典生物型霍乱"} and systems["icd10"].source == str(full)
