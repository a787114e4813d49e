"""The catalog loads, satisfies the contracts other stages rely on, and rejects inconsistent files."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hisbridge.catalog import CatalogError, load_catalog, parse_type
from hisbridge.settings import defaults

NOTICE_TABLES = {"门急诊诊疗信息", "住院患者入院信息", "住院病案首页", "中医住院病案首页",
                 "医疗服务能力与医院质量安全指标", "资源配置与运行指标", "重点专业质量控制指标"}
ENCRYPTED_TABLES = ("mjzzlxx", "zyhzryxx", "basy", "zybasy")
IDENTITY_TITLES = ("姓名", "证件号码", "身份证号", "健康卡号", "电话", "地址", "住址", "工作单位", "邮编")


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def test_every_table_the_notice_names_is_present(catalog):
    assert NOTICE_TABLES <= {t.title for t in catalog.tables.values()}


def test_table_contract(catalog):
    for table in catalog.tables.values():
        assert table.name.isascii() and table.name == table.name.lower()
        assert table.family in ("门急诊", "住院", "三级医院评审")
        assert table.cadence in ("daily", "monthly", "yearly")
        assert table.field(table.batch_time).required
        assert "yljgdm" not in table.key and all(table.field(k).required for k in table.key)
        assert table.fields[0].name == "yljgdm"
        assert [f.name for f in table.fields[-2:]] == ["xgbz", "report_datetime"]
        org = table.field("yljgdm")
        assert (org.type, org.required, org.length) == ("string(22)", True, 22)
        assert table.field("xgbz").valueset == "revoke_flag"
        assert table.field("report_datetime").kind == "datetime" and not table.field("report_datetime").required


def test_evaluation_tables_batch_on_a_period_date(catalog):
    for table in catalog.tables.values():
        if table.family == "三级医院评审":
            assert table.cadence in ("monthly", "yearly")
            assert table.field(table.batch_time).kind == "date"
    assert catalog.table("zypzyx").cadence == "yearly"


def test_batch_time_fields_follow_the_notice(catalog):
    assert catalog.table("zyhzryxx").batch_time == "cysj"  # admission info goes by discharge time
    assert catalog.table("basy").batch_time == "gdsj" == catalog.table("zybasy").batch_time  # 病案归档


def test_front_page_has_at_least_60_items_including_fees(catalog):
    basy = catalog.table("basy")
    assert len(basy.fields) - 3 >= 60
    fees = [f for f in basy.fields if f.kind == "decimal"]
    assert len(fees) >= 30 and all(f.type == "decimal(12,2)" for f in fees)


def test_detail_tables_extend_parent_key_and_carry_its_batch_time(catalog):
    details = [t for t in catalog.tables.values() if t.parent]
    assert {"basy_zd", "basy_ss"} <= {t.name for t in details}
    for table in details:
        parent = catalog.table(table.parent)
        assert table.key[:len(parent.key)] == parent.key and len(table.key) == len(parent.key) + 1
        assert table.batch_time == parent.batch_time
        assert table.field(table.batch_time).type == parent.field(parent.batch_time).type


def test_tcm_front_page_has_tcm_items(catalog):
    names = set(catalog.table("zybasy").field_names)
    assert {"zllb", "zb", "zbbm", "sslclj", "syzyzj", "zyzjf", "bzsh"} <= names


def test_identity_fields_are_encrypted_in_the_four_tables(catalog):
    for name in ENCRYPTED_TABLES:
        table = catalog.table(name)
        for field in table.fields:
            if any(word in field.title for word in IDENTITY_TITLES):
                assert field.encrypt, f"{name}.{field.name} {field.title} must be encrypted"
        assert {"xm", "sfzh"} <= set(table.encrypted_fields)
        assert all(table.field(n).kind == "string" for n in table.encrypted_fields)


def test_evaluation_tables_have_no_encrypted_fields(catalog):
    assert not any(t.encrypted_fields for t in catalog.tables.values() if t.family == "三级医院评审")


def test_field_contract_parses_types(catalog):
    fee = catalog.table("basy").field("zfy")
    assert (fee.kind, fee.precision, fee.scale) == ("decimal", 12, 2)
    name = catalog.table("basy").field("xm")
    assert (name.kind, name.length, name.encrypt) == ("string", 40, True)
    assert parse_type("int").kind == "int" and parse_type("date").kind == "date"
    with pytest.raises(CatalogError, match="unknown field type"):
        parse_type("varchar(10)")


def test_unknown_table_and_field_give_clear_errors(catalog):
    with pytest.raises(KeyError, match="unknown catalog table 'nope'.*basy"):
        catalog.table("nope")
    with pytest.raises(KeyError, match="no field 'nope'"):
        catalog.table("basy").field("nope")


def _copy_catalog(tmp_path: Path) -> Path:
    target = tmp_path / "catalog"
    shutil.copytree(defaults().paths.catalog, target)
    return target


@pytest.mark.parametrize("old, new, message", [
    ("type: string(40), required: true, encrypt: true}", "type: int, required: true, encrypt: true}",
     "only string fields can be encrypted"),
    ("valueset: ethnicity}", "valueset: no_such_set}", "unknown value set 'no_such_set'"),
    ("rules: [phone]", "rules: [phnoe]", "unknown rule 'phnoe'"),
    ("- {date_order: [csrq, jzsj, scsj]}", "- {date_order: [csrq, jzsj, nothere]}", "unknown field 'nothere'"),
])
def test_inconsistent_catalog_is_rejected(tmp_path, old, new, message):
    folder = _copy_catalog(tmp_path)
    path = folder / "mjzzlxx.yaml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(CatalogError, match=message):
        load_catalog(folder)


def test_detail_table_must_carry_parent_batch_time(tmp_path):
    folder = _copy_catalog(tmp_path)
    path = folder / "basy_zd.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("key: [bah, zycs, zdxh]", "key: [bah, zdxh]"),
                    encoding="utf-8")
    with pytest.raises(CatalogError, match="key must start with"):
        load_catalog(folder)
