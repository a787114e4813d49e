"""Quality rules, each on valid and invalid input, and check_record on whole records."""
from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import pytest
from hisbridge.catalog import load_catalog
from hisbridge.catalog.checksums import (make_resident_id,
                                         resident_id_check_char,
                                         resident_id_valid, uscc_check_char,
                                         uscc_valid)
from hisbridge.catalog.records import ZERO_DATE
from hisbridge.catalog.sample import sample_record
from hisbridge.chain.quality import Reason, check_record
from hisbridge.chain.quality import field_rules as fr
from hisbridge.chain.quality import record_rules as rr

REPORT = dt.datetime(2026, 3, 20, 18, 0)


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


@pytest.fixture()
def basy(catalog):
    return catalog.table("basy")


@pytest.fixture()
def good_basy(basy):
    record = sample_record(basy, random.Random(7))
    assert check_record(basy, record, report_time=REPORT) == []
    return record


def rules_of(reasons: list[Reason]) -> set[tuple[str, str | None]]:
    return {(r.rule, r.field) for r in reasons}


# --- checksums: the worked examples of the standards are known-valid vectors ------------------------

def test_gb11643_worked_example():
    assert resident_id_check_char("11010519491231002") == "X"
    assert resident_id_valid("11010519491231002X") and resident_id_valid("11010519491231002x")


@pytest.mark.parametrize("value", ["110105194912310021", "11010519491231002", "1101051949123100XX",
                                   "11010519491231002Ｘ", 11010519491231002, None, "١١٠١٠٥١٩٤٩١٢٣١٠٠٢X"])
def test_gb11643_rejects(value):
    assert not resident_id_valid(value)


def test_gb32100_worked_example():
    assert uscc_check_char("91350100M000100Y4") == "3" and uscc_valid("91350100M000100Y43")


@pytest.mark.parametrize("value", ["91350100M000100Y44", "91350100M000100Y4", "91350100I000100Y43", "", None])
def test_gb32100_rejects(value):
    assert not uscc_valid(value)


def test_make_resident_id_encodes_birth_and_sex():
    value = make_resident_id("440106", dt.date(1980, 2, 29), 123, "2")
    assert resident_id_valid(value) and value[6:14] == "19800229" and int(value[16]) % 2 == 0


# --- implicit field rules ---------------------------------------------------------------------------

def test_required(basy, good_basy):
    for missing in (None, "", "  "):
        assert ("required", "xm") in rules_of(check_record(basy, {**good_basy, "xm": missing}, report_time=REPORT))
    without = {k: v for k, v in good_basy.items() if k != "jbdm"}
    assert ("required", "jbdm") in rules_of(check_record(basy, without, report_time=REPORT))


@pytest.mark.parametrize("field, value", [("zycs", "3"), ("zycs", True), ("zycs", 2 ** 31), ("zfy", 1.5),
                                          ("zfy", Decimal("1.234")), ("zfy", Decimal("12345678901.00")),
                                          ("csrq", dt.datetime(2000, 1, 1)), ("rysj", dt.date(2026, 1, 1)),
                                          ("xm", 12), ("zfy", Decimal("NaN"))])
def test_type_rejects(basy, good_basy, field, value):
    reasons = check_record(basy, {**good_basy, field: value}, report_time=REPORT)
    assert ("type", field) in rules_of(reasons)


def test_type_accepts_int_for_decimal_and_short_scale(basy, good_basy):
    for value in (5, Decimal("5.1"), Decimal("0.00")):
        assert check_record(basy, {**good_basy, "qtf": value}, report_time=REPORT) == []


def test_max_length_applies_to_plaintext_of_encrypted_field(basy, good_basy):
    reasons = check_record(basy, {**good_basy, "xm": "张" * 41}, report_time=REPORT)
    assert rules_of(reasons) == {("max_length", "xm")}
    assert check_record(basy, {**good_basy, "xm": "张" * 40}, report_time=REPORT) == []


def test_valueset_membership(basy, good_basy):
    assert ("valueset", "mz") in rules_of(check_record(basy, {**good_basy, "mz": "57"}, report_time=REPORT))
    assert ("valueset", "jbdm") in rules_of(check_record(basy, {**good_basy, "jbdm": "A99.900"}, report_time=REPORT))


def test_code_name_agreement(basy, good_basy):
    record = {**good_basy, "jbdm": "E11.900", "zyzd": "1型糖尿病"}
    assert ("code_name", "jbdm") in rules_of(check_record(basy, record, report_time=REPORT))
    assert check_record(basy, {**record, "zyzd": "2型糖尿病"}, report_time=REPORT) == []


def test_unknown_field_and_malformed_record(basy, good_basy):
    assert ("unknown_field", "extra") in rules_of(check_record(basy, {**good_basy, "extra": 1}, report_time=REPORT))
    for bad in (None, [], "text", 3):
        assert rules_of(check_record(basy, bad)) == {("malformed_record", None)}


def test_reason_shape_and_no_plaintext_identity(basy, good_basy):
    reasons = check_record(basy, {**good_basy, "xm": "王秘密" * 20}, report_time=REPORT)
    assert reasons and all(isinstance(r, Reason) for r in reasons)
    as_dict = reasons[0].as_dict()
    assert set(as_dict) == {"rule", "field", "message"} and " / " in as_dict["message"]
    assert "王秘密" not in reasons[0].message
    phone = check_record(basy, {**good_basy, "dh": "12345"}, report_time=REPORT)
    assert "12345" not in "".join(r.message for r in phone)


# --- explicit field rules ---------------------------------------------------------------------------

def test_resident_id_rules(catalog):
    table = catalog.table("mjzzlxx")
    good = sample_record(table, random.Random(3))
    good.update(zjlb="01", csrq=dt.date(1949, 12, 31), xb="2", sfzh="11010519491231002X")
    assert check_record(table, good, report_time=REPORT) == []
    assert ("resident_id", "sfzh") in rules_of(check_record(table, {**good, "sfzh": "110105194912310021"}, report_time=REPORT))
    wrong_birth = check_record(table, {**good, "csrq": dt.date(1949, 12, 30)}, report_time=REPORT)
    assert any(r.rule == "resident_id" and "birth" in r.message_en for r in wrong_birth)
    wrong_sex = check_record(table, {**good, "xb": "1"}, report_time=REPORT)
    assert any(r.rule == "resident_id" and "sex" in r.message_en for r in wrong_sex)
    passport = {**good, "zjlb": "03", "sfzh": "E12345678"}  # not a resident ID: checksum does not apply
    assert check_record(table, passport, report_time=REPORT) == []


def test_resident_id_dash_allowed_without_document_type(basy, good_basy):
    assert check_record(basy, {**good_basy, "sfzh": "-"}, report_time=REPORT) == []


def test_org_code(basy, good_basy):
    assert check_record(basy, {**good_basy, "yljgdm": "91350100M000100Y43"}, report_time=REPORT) == []
    assert ("org_code", "yljgdm") in rules_of(check_record(basy, {**good_basy, "yljgdm": "91350100M000100Y44"}, report_time=REPORT))


@pytest.mark.parametrize("value", ["13800138000", "+8613800138000", "020-87654321", "02087654321", "87654321",
                                   "0755-22345678-123", "-"])
def test_phone_accepts(value):
    assert fr.phone_ok(value)


@pytest.mark.parametrize("value", ["12800138000", "1380013800", "abc", "020-0123456", "--", "138 0013 8000"])
def test_phone_rejects(value):
    assert not fr.phone_ok(value)


def test_postcode_and_formats(basy, good_basy):
    assert ("postcode", "yb1") in rules_of(check_record(basy, {**good_basy, "yb1": "51000"}, report_time=REPORT))
    assert ("icd10_format", "jbbm") in rules_of(check_record(basy, {**good_basy, "jbbm": "I10"}, report_time=REPORT))
    assert ("morphology_format", "blzdbm") in rules_of(check_record(basy, {**good_basy, "blzdbm": "8140/3"}, report_time=REPORT))


def test_icd9_and_tcm_formats(catalog):
    ss = catalog.table("basy_ss")
    good = sample_record(ss, random.Random(2))
    assert ("icd9cm3_format", "ssjczbm") in rules_of(check_record(ss, {**good, "ssjczbm": "5301"}, report_time=REPORT))
    zz = catalog.table("zybasy_zz")
    good = sample_record(zz, random.Random(2))
    for code in ("BGG000", "A04.04.04.02"):
        assert check_record(zz, {**good, "zzbm": code}, report_time=REPORT) == []
    assert ("tcm_code_format", "zzbm") in rules_of(check_record(zz, {**good, "zzbm": "bgg0"}, report_time=REPORT))


def test_numeric_ranges(basy, good_basy):
    for field, bad, ok in (("xsetz", 99, 100), ("xsetz", 10000, 9999), ("nl", 151, 150), ("nl", -1, 0)):
        assert ("range", field) in rules_of(check_record(basy, {**good_basy, field: bad}, report_time=REPORT))
        assert ("range", field) not in rules_of(check_record(basy, {**good_basy, field: ok}, report_time=REPORT))
    assert ("range", "zfy") in rules_of(check_record(basy, {**good_basy, "zfy": Decimal("-0.01")}, report_time=REPORT))


def test_period_start(catalog):
    table = catalog.table("ylfwnl")
    good = sample_record(table, random.Random(1))
    assert check_record(table, {**good, "tjyf": dt.date(2022, 1, 1)}, report_time=REPORT) == []
    assert ("period_start", "tjyf") in rules_of(check_record(table, {**good, "tjyf": dt.date(2024, 5, 2)}, report_time=REPORT))
    assert ("period_start", "tjyf") in rules_of(check_record(table, {**good, "tjyf": dt.date(2021, 12, 1)}, report_time=REPORT))
    yearly = catalog.table("zypzyx")
    good = sample_record(yearly, random.Random(1))
    assert ("period_start", "tjnd") in rules_of(check_record(yearly, {**good, "tjnd": dt.date(2024, 5, 1)}, report_time=REPORT))


# --- record rules -----------------------------------------------------------------------------------

def test_date_order(basy, good_basy):
    early = good_basy["rysj"] - dt.timedelta(days=1)
    reasons = check_record(basy, {**good_basy, "cysj": early, "sjzy": 1}, report_time=REPORT)
    assert ("date_order", "cysj") in rules_of(reasons)
    born_after = check_record(basy, {**good_basy, "csrq": good_basy["rysj"].date() + dt.timedelta(days=1)},
                              report_time=REPORT)
    assert ("date_order", "rysj") in rules_of(born_after)


def test_born_on_admission_day_is_fine():
    assert rr.not_after(dt.date(2026, 1, 1), dt.datetime(2026, 1, 1, 0, 0))
    assert not rr.not_after(dt.datetime(2026, 1, 2, 0, 0), dt.datetime(2026, 1, 1, 23, 59))


def test_nothing_after_report_time(basy, good_basy):
    reasons = check_record(basy, good_basy, report_time=good_basy["cysj"] - dt.timedelta(seconds=1))
    assert ("after_report_time", "cysj") in rules_of(reasons)
    aware = dt.datetime(2026, 3, 20, 10, 0, tzinfo=dt.timezone.utc)  # = 18:00 Shanghai
    assert rr.check_after_report_time(basy, {"gdsj": dt.datetime(2026, 3, 20, 17, 59)}, {}, aware) == []
    assert rr.check_after_report_time(basy, {"gdsj": dt.datetime(2026, 3, 20, 18, 1)}, {}, aware)


def test_stay_length(basy, good_basy):
    assert rr.stay_days(dt.datetime(2026, 1, 1, 8), dt.datetime(2026, 1, 1, 20)) == 1
    assert rr.stay_days(dt.datetime(2026, 1, 1, 23), dt.datetime(2026, 1, 4, 1)) == 3
    reasons = check_record(basy, {**good_basy, "sjzy": good_basy["sjzy"] + 1}, report_time=REPORT)
    assert rules_of(reasons) == {("stay_length", "sjzy")}


def test_injury_needs_external_cause_and_tumour_needs_pathology(basy, good_basy):
    injury = {**good_basy, "jbdm": "S72.000", "zyzd": "股骨颈骨折", "wbyy": None, "wbyybm": None}
    assert {("required_when", "wbyy"), ("required_when", "wbyybm")} <= rules_of(check_record(basy, injury, report_time=REPORT))
    tumour = {**good_basy, "jbdm": "C16.900", "zyzd": "胃恶性肿瘤", "blzd": None, "blzdbm": None, "blh": None}
    assert ("required_when", "blzd") in rules_of(check_record(basy, tumour, report_time=REPORT))
    benign_boundary = {**good_basy, "jbdm": "D25.900", "zyzd": "子宫平滑肌瘤", "blzd": None, "blzdbm": None, "blh": None}
    assert ("required_when", "blh") in rules_of(check_record(basy, benign_boundary, report_time=REPORT))
    other = {**good_basy, "jbdm": "E11.900", "zyzd": "2型糖尿病", "blzd": None, "blzdbm": None, "blh": None,
             "wbyy": None, "wbyybm": None}
    assert check_record(basy, other, report_time=REPORT) == []


def test_tcm_preparation_fee_positive_when_used(catalog):
    table = catalog.table("zybasy")
    good = sample_record(table, random.Random(4))
    used = {**good, "syzyzj": "1", "zyzjf": Decimal("12.50")}
    assert check_record(table, used, report_time=REPORT) == []
    for fee in (Decimal("0"), None):
        assert ("positive_when", "zyzjf") in rules_of(check_record(table, {**used, "zyzjf": fee}, report_time=REPORT))
    assert check_record(table, {**used, "syzyzj": "2", "zyzjf": Decimal("0")}, report_time=REPORT) == []


@pytest.mark.parametrize("field", ["csrq", "rysj", "gdsj"])
def test_a_zero_date_is_its_own_reason_and_nothing_else(basy, good_basy, field):
    """The MariaDB zero date (decode's ZERO_DATE) in a date or date-time field: one zero_date reason, not a
    type, required, date-order or ID-birth-date reason as well."""
    reasons = check_record(basy, {**good_basy, field: ZERO_DATE}, report_time=REPORT)
    assert rules_of(reasons) == {("zero_date", field)}
    assert "0000-00-00" in reasons[0].message
