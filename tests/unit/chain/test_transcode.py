"""transcode stage: local → national codes per field; an unmapped local code is a reason naming map,
field and value."""
from __future__ import annotations

import pytest
from fixtures.mapping import his_rows as rows
from hisbridge.catalog import load_catalog
from hisbridge.chain.mapping import (MappingError, load_mapping,
                                     load_valuemap_csv, map_change)
from hisbridge.chain.transcode import (mapped_columns, transcode,
                                       unmapped_counts)
from support import FIXTURES

FIXTURE = FIXTURES / "mapping" / "test_hospital.yaml"


@pytest.fixture(scope="module")
def mapping():
    return load_mapping(load_catalog(), FIXTURE)


def mapped(mapping, **lookups):
    [result] = map_change(mapping, rows.change("op_visit", "c", after=rows.visit()), rows.lookups(**lookups))
    return result.record


def test_local_codes_become_national(mapping):
    record, reasons = transcode(mapping.tables["mjzzlxx"], mapped(mapping))
    assert reasons == []
    assert (record["xb"], record["zjlb"], record["hzlx"], record["ylfkfs"]) == ("2", "01", "1", "01")
    assert (record["jzksdm"], record["mz"], record["sfcz"]) == ("03.01", "01", "1")   # CSV, inline, named inline
    assert record["xm"] == rows.NAME                                                  # unmapped fields untouched


def test_unmapped_code_names_map_field_and_value(mapping):
    record, reasons = transcode(mapping.tables["mjzzlxx"], mapped(mapping, patient=rows.patient(id_type="CSZ")))
    assert [(r.rule, r.field) for r in reasons] == [("unmapped_code", "zjlb")]
    message = reasons[0].message
    assert "id_type" in message and "'CSZ'" in message and "zjlb" in message
    assert record["zjlb"] == "CSZ"      # kept local: the quarantine entry shows what to map


def test_every_unmapped_field_is_reported(mapping):
    patient = rows.patient(sex="X", nation="WZ")
    _, reasons = transcode(mapping.tables["mjzzlxx"], mapped(mapping, patient=patient))
    assert sorted(r.field for r in reasons) == ["mz", "xb"]
    assert any("inline:mjzzlxx.mz" in r.message for r in reasons)


def test_empty_values_are_left_to_quality(mapping):
    record, reasons = transcode(mapping.tables["mjzzlxx"], mapped(mapping, patient=rows.patient(nation=None)))
    assert reasons == [] and record["mz"] is None


def test_non_text_local_codes_match_their_text(mapping):
    [result] = map_change(mapping, rows.change("mr_diagnosis", "c", after=rows.mr_diagnosis()), rows.lookups())
    record, reasons = transcode(mapping.tables["basy_zd"], result.record)
    assert reasons == [] and record["rybq"] == "1"


def test_mapped_columns_lists_source_columns_for_the_check_command(mapping):
    columns = {(source, column, vm.name) for source, column, vm in mapped_columns(mapping)}
    assert ("his.pat_master", "sex", "sex") in columns
    assert ("his.op_register", "fee_type", "payment") in columns
    assert ("his.op_visit", "dept_code", "department") in columns
    assert ("his.mr_diagnosis", "admit_condition", "admit_condition") in columns


def test_unmapped_counts_reports_missing_values_most_frequent_first(mapping):
    sex = mapping.valuemaps["sex"]
    assert unmapped_counts(sex, {"M": 10, "F": 12, "X": 3, "Q": 5, None: 7, "": 1}) == [("Q", 5), ("X", 3)]


def test_duplicate_local_code_in_csv_is_an_operator_error(tmp_path):
    path = tmp_path / "sex.csv"
    path.write_text("local,national,note\nM,1,男\nM,2,女\n", encoding="utf-8")
    with pytest.raises(MappingError, match=r"sex.csv:3: local code 'M' mapped twice"):
        load_valuemap_csv(path)


def test_name_of_gives_the_national_name_where_the_value_set_has_one(mapping):
    emergency = mapped(mapping, dept=rows.dept(dept_code="1001", dept_name="急诊科"))
    record, _ = transcode(mapping.tables["mjzzlxx"], {**emergency, "jzksdm": "1701"})
    assert (record["jzksdm"], record["jzksmc"]) == ("20", "急诊医学科")       # the HIS says 急诊科
    record, _ = transcode(mapping.tables["mjzzlxx"], mapped(mapping))
    assert (record["jzksdm"], record["jzksmc"]) == ("03.01", "呼吸内科")       # sub-specialty: no national name
