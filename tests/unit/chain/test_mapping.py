"""mapping stage: a HIS change → catalog record(s) in local codes, driven by the source-mapping file."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from fixtures.mapping import his_rows as rows
from hisbridge.catalog import load_catalog
from hisbridge.chain.mapping import (LookupUpdate, Mapped, MappingError,
                                     MissingLookup, Unmappable,
                                     check_valuemaps, load_mapping, lookup_key,
                                     lookup_updates, map_change)
from hisbridge.settings import load_settings
from support import FIXTURES, ROOT

FIXTURE = FIXTURES / "mapping" / "test_hospital.yaml"


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


@pytest.fixture(scope="module")
def mapping(catalog):
    return load_mapping(catalog, FIXTURE)


def only(results):
    assert len(results) == 1, results
    return results[0]


def test_visit_maps_to_mjzzlxx_with_joined_rows_in_local_codes(mapping):
    result = only(map_change(mapping, rows.change("op_visit", "c", after=rows.visit()), rows.lookups()))
    assert isinstance(result, Mapped) and result.table == "mjzzlxx"
    r = result.record
    assert r["yljgdm"] == "91350100M000100Y43" and r["xgbz"] == "0"
    assert (r["jzlsh"], r["mzh"], r["xm"], r["sfzh"]) == ("V0001", "P0001", rows.NAME, rows.VALID_ID)
    assert (r["xb"], r["zjlb"], r["hzlx"], r["jzksdm"]) == ("F", "SFZ", "PT", "1001")   # still local
    assert r["nl"] == 76 and r["csrq"] == date(1949, 12, 31)                           # age at reg_time
    assert r["jzsj"] == r["scsj"] == datetime(2026, 3, 1, 10, 0)
    assert (r["zdbm"], r["jzksmc"], r["jzys"], r["zfy"]) == ("I10.x00x002", "呼吸内科", "王医生", Decimal("123.45"))
    assert "report_datetime" not in r


def test_second_driver_produces_the_same_record_from_the_diagnosis(mapping):
    by_visit = only(map_change(mapping, rows.change("op_visit", "c", after=rows.visit()), rows.lookups()))
    by_diag = only(map_change(mapping, rows.change("op_diagnosis", "u", before=rows.op_diagnosis(),
                                                   after=rows.op_diagnosis()), rows.lookups()))
    assert by_diag.record == by_visit.record


def test_driver_filter_skips_other_diagnoses(mapping):
    other = rows.op_diagnosis(seq=2, diag_type="2")
    assert map_change(mapping, rows.change("op_diagnosis", "c", after=other), rows.lookups()) == []


def test_missing_patient_names_the_lookup_and_key(mapping):
    result = only(map_change(mapping, rows.change("op_visit", "c", after=rows.visit()), rows.lookups(patient=None)))
    assert isinstance(result, MissingLookup)
    assert (result.table, result.lookup, result.key) == ("mjzzlxx", "patient", "P0001")
    assert result.partial["jzlsh"] == "V0001" and result.partial["xm"] is None


def test_composite_lookup_key_and_optional_join(mapping):
    lookups = rows.lookups(staff=None)        # the doctor is optional: no wait, just no name
    result = only(map_change(mapping, rows.change("op_visit", "c", after=rows.visit()), lookups))
    assert isinstance(result, Mapped) and result.record["jzys"] is None
    missing = only(map_change(mapping, rows.change("op_visit", "c", after=rows.visit()),
                              rows.lookups(op_diagnosis=None)))
    assert missing.lookup == "op_diagnosis" and missing.key == lookup_key(["V0001", 1])


def test_update_maps_from_after(mapping):
    change = rows.change("op_visit", "u", before=rows.visit(), after=rows.visit(total_fee=Decimal("200.00")))
    assert only(map_change(mapping, change, rows.lookups())).record["zfy"] == Decimal("200.00")


def test_delete_maps_from_before_and_sets_revoke_flag(mapping):
    result = only(map_change(mapping, rows.change("op_visit", "d", before=rows.visit()), rows.lookups()))
    assert isinstance(result, Mapped) and result.op == "d"
    assert result.record["xgbz"] == "1" and result.record["jzlsh"] == "V0001"


def test_update_leaving_the_driver_filter_revokes(mapping):
    change = rows.change("mr_diagnosis", "u", before=rows.mr_diagnosis(), after=rows.mr_diagnosis(diag_type="Z"))
    result = only(map_change(mapping, change, rows.lookups()))
    assert result.table == "basy_zd" and result.record["xgbz"] == "1"
    assert result.record["gdsj"] == datetime(2026, 3, 10, 9, 0) and result.record["zycs"] == 2


def test_truncate_is_unmappable_not_silent(mapping):
    result = only(map_change(mapping, rows.change("op_visit", "t"), rows.lookups()))
    assert isinstance(result, Unmappable) and result.rule == "source_truncated"


def test_reference_table_changes_feed_lookups_and_map_nothing(mapping):
    change = rows.change("pat_master", "u", before=rows.patient(), after=rows.patient(phone="13700137000"))
    assert map_change(mapping, change, rows.lookups()) == []
    kept = {c: v for c, v in change.after.items() if c in mapping.lookup_reads["patient"]}
    assert lookup_updates(mapping, change) == [LookupUpdate("patient", "P0001", None, kept, change.source.lsn)]
    assert "phone" in kept and set(kept) < set(change.after)        # only what the mapping reads is kept
    deleted = rows.change("pat_master", "d", before=rows.patient())
    assert lookup_updates(mapping, deleted) == [LookupUpdate("patient", "P0001", None, None, deleted.source.lsn)]


def test_many_row_lookups_group_by_key_and_a_key_change_moves_the_row(mapping):
    before, after = rows.mr_diagnosis(), rows.mr_diagnosis(inpatient_no="ZY0002")
    change = rows.change("mr_diagnosis", "u", before=before, after=after)
    kept = {c: v for c, v in after.items() if c in mapping.lookup_reads["diagnoses_of"]}
    assert lookup_updates(mapping, change) == [LookupUpdate("diagnoses_of", "ZY0001", "1", None, change.source.lsn),
                                               LookupUpdate("diagnoses_of", "ZY0002", "1", kept, change.source.lsn)]


def test_archiving_the_parent_fans_out_to_its_child_rows(mapping):
    change = rows.change("mr_homepage", "u", before=rows.homepage(archive_time=None), after=rows.homepage())
    results = map_change(mapping, change, rows.lookups())
    assert [(r.table, r.record["zdxh"], r.record["jbdm"]) for r in results] == [
        ("basy_zd", 1, "I10.x00x002"), ("basy_zd", 2, "E11.900")]      # the principal (Z) is not a child row
    assert all(r.record["gdsj"] == datetime(2026, 3, 10, 9, 0) for r in results)


def test_child_row_of_an_unarchived_parent_waits_for_the_archive_silently(mapping):
    lookups = rows.lookups(homepage=rows.homepage(archive_time=None))
    assert map_change(mapping, rows.change("mr_diagnosis", "c", after=rows.mr_diagnosis()), lookups) == []
    unarchived = rows.change("mr_homepage", "c", after=rows.homepage(archive_time=None))
    assert map_change(mapping, unarchived, lookups) == []


def test_decimal_text_is_coerced_to_the_catalog_kind(mapping):
    change = rows.change("op_visit", "c", after=rows.visit(total_fee="88.5"))
    assert only(map_change(mapping, change, rows.lookups())).record["zfy"] == Decimal("88.50")


def test_settings_override_the_org_code(catalog):
    org = load_settings({"HISBRIDGE_ORG_CODE": "12440000455858107A"}).org
    overridden = load_mapping(catalog, FIXTURE, org)
    assert overridden.org_code == "12440000455858107A" and overridden.org_name == load_mapping(catalog, FIXTURE).org_name


def test_fixture_value_maps_agree_with_the_catalog_value_sets(catalog, mapping):
    assert check_valuemaps(mapping, catalog) == []


# --- operator errors: clear messages naming the file and the line ----------------------------------------

def write_variant(tmp_path: Path, old: str, new: str) -> Path:
    text = FIXTURE.read_text(encoding="utf-8")
    assert old in text
    (tmp_path / "valuemaps").symlink_to(FIXTURE.parent / "valuemaps")
    path = tmp_path / "hospital.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize("old, new, words", [
    ("  basy_zd:", "  basy_zdx:", ["'basy_zdx' is not a catalog table"]),
    ("      zs: visit.chief_complaint", "      zsx: visit.chief_complaint", ["no field 'zsx'"]),
    ("valuemap: patient_type}", "valuemap: patient_kind}", ["unknown value map 'patient_kind'"]),
    ("      zdmc: diag.icd_name\n", "", ["required field(s) of mjzzlxx not mapped: zdmc"]),
    ("      zs: visit.chief_complaint", "      zs: chief_complaint", ["not alias.column"]),
    ("      zs: visit.chief_complaint", "      zs: vist.chief_complaint", ["unknown alias", "vist"]),
    ("{lookup: dept, key", "{lookup: depts, key", ["unknown lookup 'depts'"]),
    ("key: [visit.visit_id, 1]", "key: [visit.visit_id]", ["keyed by ['visit_id', 'seq']"]),
    ("      jzlsh: visit.visit_id", "      jzlsh: visit.visit_id\n      xgbz: {const: '0'}", ["filled by hisbridge"]),
    ("      zs: visit.chief_complaint", "      zs: {upper: visit.chief_complaint}", ["unknown expression operator"]),
])
def test_mapping_mistakes_name_file_and_line(catalog, tmp_path, old, new, words):
    path = write_variant(tmp_path, old, new)
    with pytest.raises(MappingError) as err:
        load_mapping(catalog, path)
    message = str(err.value)
    assert str(path) in message and all(w in message for w in words), message
    assert f"{path}:" in message   # a line number follows the file name


def test_field_error_points_at_the_field_line(catalog, tmp_path):
    path = write_variant(tmp_path, "      zs: visit.chief_complaint", "      zsx: visit.chief_complaint")
    line = path.read_text(encoding="utf-8").splitlines().index("      zsx: visit.chief_complaint") + 1
    with pytest.raises(MappingError, match=rf"hospital.yaml:{line} \(mjzzlxx.zsx\)"):
        load_mapping(catalog, path)


def test_add_and_absent_skip(catalog, tmp_path):
    path = write_variant(tmp_path, "      zdxh: dx.seq", "      zdxh: {add: [dx.seq, 1]}")
    text = path.read_text(encoding="utf-8").replace('key: [visit.doctor_code], absent: "null"',
                                                    "key: [visit.doctor_code], absent: skip")
    path.write_text(text, encoding="utf-8")
    mapping = load_mapping(catalog, path)
    [result] = map_change(mapping, rows.change("mr_diagnosis", "c", after=rows.mr_diagnosis()), rows.lookups())
    assert result.record["zdxh"] == 2
    assert map_change(mapping, rows.change("op_visit", "c", after=rows.visit()), rows.lookups(staff=None)) == []


def test_unresolvable_join_is_an_error(catalog, tmp_path):
    path = write_variant(tmp_path, "visit: {lookup: visit, key: [diag.visit_id]}",
                         "visit: {lookup: visit, key: [register.visit_id]}")
    with pytest.raises(MappingError, match="cannot be resolved"):
        load_mapping(catalog, path)


def test_value_map_national_codes_outside_the_value_set_are_reported(catalog, tmp_path):
    path = write_variant(tmp_path, "yes_no_yn: {Y: \"1\", N: \"2\"}", "yes_no_yn: {Y: \"1\", N: \"0\"}")
    problems = check_valuemaps(load_mapping(catalog, path), catalog)
    assert len(problems) == 1 and "['0']" in problems[0] and "yes_no" in problems[0]


def test_coercion_never_rounds_and_leaves_garbage_for_quality(mapping):
    too_precise = rows.change("op_visit", "c", after=rows.visit(total_fee="88.555"))
    assert only(map_change(mapping, too_precise, rows.lookups())).record["zfy"] == Decimal("88.555")
    garbage = rows.change("op_visit", "c", after=rows.visit(total_fee="abc"))
    assert only(map_change(mapping, garbage, rows.lookups())).record["zfy"] == "abc"


# --- the demo hospital's mapping (schemas/mapping/demo_hospital.yaml) against the simulated HIS ----------

DEMO = ROOT / "schemas" / "mapping" / "demo_hospital.yaml"


@pytest.fixture(scope="module")
def demo(catalog):
    return load_mapping(catalog, DEMO)


@pytest.fixture(scope="module")
def sim_day():
    from datetime import date

    from hisbridge.sim import generate
    activity = generate.day_activity(11, date(2026, 3, 2), 120, 0.0)   # a clean day: every code is mapped
    tables = activity.rows()
    for table, dictionary in generate.dictionary_rows(11).items():
        tables.setdefault(table, []).extend(dictionary)
    return tables


def _lookups_of(mapping, tables):
    lookups: dict = {}
    for table, his_rows in tables.items():
        for row in his_rows:
            for u in lookup_updates(mapping, rows.change(table, "r", after=row)):
                group = lookups.setdefault(u.lookup, {})
                if u.member is None:
                    group[u.key] = u.row
                else:
                    group.setdefault(u.key, {})[u.member] = u.row
    return lookups


def test_demo_mapping_maps_every_catalog_table_it_can(demo):
    assert set(demo.tables) == {"mjzzlxx", "zyhzryxx", "basy", "basy_zd", "basy_ss", "zybasy", "zybasy_zz",
                                "ylfwnl", "zypzyx", "zdzkzb"}
    assert demo.org_code == "12440100455800001P"


def test_demo_mapping_turns_a_clean_simulated_day_into_records_without_unmapped_codes(demo, sim_day):
    from hisbridge.chain.transcode import transcode
    lookups = _lookups_of(demo, sim_day)
    produced: dict[str, set] = {}
    for table, his_rows in sim_day.items():
        for row in his_rows:
            for result in map_change(demo, rows.change(table, "r", after=row), lookups):
                assert not isinstance(result, Unmappable), result
                if isinstance(result, Mapped):
                    _, reasons = transcode(demo.tables[result.table], result.record)
                    assert reasons == [], (result.table, [r.message for r in reasons])
                    produced.setdefault(result.table, set()).add(result.record.get("jzlsh") or result.record.get("bah"))
    visits = {r["visit_id"] for r in sim_day["op_visit"]}
    assert produced["mjzzlxx"] == visits
    archived = {r["mr_no"] for r in sim_day["mr_homepage"] if r["archive_time"] is not None}
    assert produced["basy"] == archived and produced["basy_zd"] <= archived


def test_the_generated_field_loop_gives_the_field_by_field_record(mapping, monkeypatch):
    change = rows.change("op_visit", "c", after=rows.visit(total_fee="88.5"))
    generated = only(map_change(mapping, change, rows.lookups())).record
    table = mapping.tables["mjzzlxx"]

    def fails(bindings, record):
        raise RuntimeError("generated loop disabled")
    monkeypatch.setitem(table.__dict__, "fill", fails)      # map_row falls back to the field-by-field loop
    assert only(map_change(mapping, change, rows.lookups())).record == generated


def test_a_field_that_cannot_be_read_is_named(mapping):
    lookups = rows.lookups()
    lookups["patient"] = {key: ["not a row"] for key in lookups["patient"]}
    result = only(map_change(mapping, rows.change("op_visit", "c", after=rows.visit()), lookups))
    first = next(fm for fm in mapping.tables["mjzzlxx"].fields if "patient" in fm.expr.refs)
    assert isinstance(result, Unmappable) and result.rule == "mapping_error"
    assert result.message == f"field {first.name} = {first.expr.text}: AttributeError"


# --- `newer: skip`: one record per visit although two of its rows drive it ----------------------------------

def _store_of(mapping, changes):
    """The worker's reference store (positions kept) fed with these changes, as the chain sees it."""
    from hisbridge.state.lookups import ReferenceStore, TableLookups
    store = ReferenceStore()
    for change in changes:
        store.apply(lookup_updates(mapping, change))
    return TableLookups(store, mapping.lookups)


def _references(lsn=10):
    return [rows.change(t, "r", after=r, lsn=lsn) for t, r in
            (("pat_master", rows.patient()), ("op_register", rows.register()), ("dept_dict", rows.dept()),
             ("staff_dict", rows.staff()))]


def test_a_change_whose_partner_row_is_newer_leaves_the_record_to_that_rows_change(demo):
    visit = rows.change("op_visit", "c", after=rows.visit(), lsn=100)
    diag = rows.change("op_diagnosis", "c", after=rows.op_diagnosis(), lsn=150)
    lookups = _store_of(demo, [*_references(), visit, diag])       # a backlog: both rows read already
    assert map_change(demo, visit, lookups) == []                   # the diagnosis is newer: it derives
    [by_diag] = map_change(demo, diag, lookups)
    assert isinstance(by_diag, Mapped) and by_diag.record["jzlsh"] == "V0001"
    assert by_diag.record == only(map_change(demo, visit, rows.lookups())).record   # the same record

    late_fee = rows.change("op_visit", "u", before=rows.visit(), after=rows.visit(total_fee=Decimal("200.00")),
                           lsn=300)
    lookups = _store_of(demo, [*_references(), visit, diag, late_fee])
    [by_fee] = map_change(demo, late_fee, lookups)                  # changed after its diagnosis: it derives
    assert by_fee.record["zfy"] == Decimal("200.00")
    [again] = map_change(demo, diag, lookups)                       # the visit is newer, yet the diagnosis derives
    assert again.record["zfy"] == Decimal("200.00")


def test_a_diagnosis_arriving_after_its_newer_visit_was_handled_still_derives_the_record(demo):
    """Two topics are not delivered in source order: the visit (written after its diagnosis, lsn 150) is
    handled before the diagnosis (lsn 100) reached the store, and passes it over (absent: skip); the
    diagnosis, handled next, is the only change left to derive the record."""
    visit = rows.change("op_visit", "c", after=rows.visit(), lsn=150)
    diag = rows.change("op_diagnosis", "c", after=rows.op_diagnosis(), lsn=100)
    assert map_change(demo, visit, _store_of(demo, [*_references(), visit])) == []
    [by_diag] = map_change(demo, diag, _store_of(demo, [*_references(), visit, diag]))
    assert isinstance(by_diag, Mapped) and by_diag.record["jzlsh"] == "V0001"


def test_newer_partner_never_skips_a_revoke_nor_a_position_that_is_not_known(demo):
    visit = rows.change("op_visit", "c", after=rows.visit(), lsn=100)
    diag = rows.change("op_diagnosis", "c", after=rows.op_diagnosis(), lsn=150)
    lookups = _store_of(demo, [*_references(), visit, diag])
    [revoke] = map_change(demo, rows.change("op_visit", "d", before=rows.visit(), lsn=100), lookups)
    assert revoke.record["xgbz"] == "1"
    snapshot = rows.change("op_visit", "r", after=rows.visit(), lsn=150)   # a snapshot: one position for all
    assert len(map_change(demo, snapshot, _store_of(demo, [*_references(150), snapshot, diag]))) == 1
    assert len(map_change(demo, visit, rows.lookups())) == 1       # plain lookups keep no position


def test_newer_skip_on_a_row_that_drives_nothing_is_a_mistake(catalog, tmp_path):
    path = write_variant(tmp_path, "patient: {lookup: patient, key: [visit.patient_id]}",
                         "patient: {lookup: patient, key: [visit.patient_id], newer: skip}")
    with pytest.raises(MappingError, match="his.pat_master does not drive mjzzlxx"):
        load_mapping(catalog, path)


def test_newer_skip_whose_partner_passes_over_a_missing_row_is_a_mistake(catalog, tmp_path):
    """The visit driver passes over a missing diagnosis (absent: skip): a diagnosis handled after its newer
    visit must derive the record itself, so its visit join may not leave it to the visit's change."""
    joins = "visit: {lookup: visit, key: [diag.visit_id]}\n      diag: {lookup: op_diagnosis, key: [visit.visit_id, 1]}"
    waits = joins.replace("[diag.visit_id]}", "[diag.visit_id], newer: skip}")
    (tmp_path / "waits").mkdir()
    assert load_mapping(catalog, write_variant(tmp_path / "waits", joins, waits)).tables["mjzzlxx"]
    passes_over = waits.replace("[visit.visit_id, 1]}", "[visit.visit_id, 1], absent: skip}")
    with pytest.raises(MappingError, match="driver visit must then wait for it"):
        load_mapping(catalog, write_variant(tmp_path, joins, passes_over))


def test_a_newer_row_that_its_own_driver_does_not_report_is_not_left_to_it(catalog, tmp_path):
    """The diagnosis driver reports diag_type 1 only: a newer diagnosis of another type is no reason for the
    visit's change to leave the record to it — that change derives nothing."""
    block = ("when: {seq: 1}}\n    joins:\n      visit: {lookup: visit, key: [diag.visit_id]}\n"
             "      diag: {lookup: op_diagnosis, key: [visit.visit_id, 1]}")
    variant = block.replace("{seq: 1}", "{seq: 1, diag_type: '1'}").replace("1]}", "1], newer: skip}")
    mapping = load_mapping(catalog, write_variant(tmp_path, block, variant))
    visit = rows.change("op_visit", "c", after=rows.visit(), lsn=100)
    for diag_type, from_visit, from_diag in (("1", 0, 1), ("2", 1, 0)):
        diag = rows.change("op_diagnosis", "c", after=rows.op_diagnosis(diag_type=diag_type), lsn=150)
        lookups = _store_of(mapping, [*_references(), visit, diag])
        assert (len(map_change(mapping, visit, lookups)), len(map_change(mapping, diag, lookups))) == \
            (from_visit, from_diag)


def test_a_diagnosis_arriving_after_its_front_page_was_archived_and_handled_still_derives(demo):
    """The archive (lsn 200) is handled before the older diagnosis row (lsn 100) reached the store: its
    fan-out passes the row over, and the diagnosis's own change derives the record."""
    refs = [rows.change("pat_master", "r", after=rows.patient(), lsn=10)]
    dx = rows.change("mr_diagnosis", "c", after=rows.mr_diagnosis(seq=1), lsn=100)
    archive = rows.change("mr_homepage", "u", before=rows.homepage(archive_time=None), after=rows.homepage(),
                          lsn=200)
    assert [r for r in map_change(demo, archive, _store_of(demo, [*refs, archive])) if r.table == "basy_zd"] == []
    derived = [r.record["zdxh"] for r in map_change(demo, dx, _store_of(demo, [*refs, archive, dx]))]
    assert derived == [1]
