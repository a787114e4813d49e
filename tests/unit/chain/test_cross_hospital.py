"""The city's second check: the identity mapping, the plaintext-free catalog rules, the checks across
hospitals, and one relay night's plan and per-hospital report (plain values, no stack)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hisbridge.catalog.loader import load_catalog
from hisbridge.catalog.sample import sample_records
from hisbridge.chain.crypto import encrypt_fields, parse_key
from hisbridge.chain.decode import Change, SourcePosition
from hisbridge.chain.identity_mapping import identity_mapping
from hisbridge.chain.mapping import Mapped, map_change
from hisbridge.chain.quality.cross_hospital import (HospitalList, Upload, deadline_of, duplicate_keys,
                                                    late_hospitals, load_hospital_list, unlisted_organisation,
                                                    without_plaintext)
from hisbridge.clock import SHANGHAI
from hisbridge.delivery.city_relay import hospital_report, plan_night, render_report
from hisbridge.delivery.schedule import parse as parse_schedule

CATALOG = load_catalog()
TABLE = CATALOG.tables["mjzzlxx"]
KEY = parse_key("0123456789abcdeffedcba9876543210", "test")   # throwaway test key
LISTED = load_hospital_list(Path(__file__).resolve().parents[3] / "schemas" / "city" / "hospitals.yaml")
A, B, C = sorted(LISTED.hospitals)
HOSPITALS = HospitalList(LISTED.city_code, "市", {A: "甲医院", B: "乙医院", C: "丙医院"})
D = dt.date(2026, 11, 30)


def _at(day: dt.date, hh: int, mm: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hh, mm), SHANGHAI)


def _upload(org: str, key: str, at: dt.datetime, **changes) -> Upload:
    record = dict(sample_records(TABLE, 1, seed=hash(key) % 1000)[0], yljgdm=org, jzlsh=key,
                  scsj=dt.datetime(2026, 11, 30, 9, 0), **changes)
    return Upload("mjzzlxx", org, (key,), at, encrypt_fields(record, TABLE.encrypted_fields, KEY))


def test_the_identity_mapping_is_generated_for_every_catalog_table_and_keeps_the_uploaded_organisation():
    mapping = identity_mapping(CATALOG, "city", HOSPITALS.city_code)
    assert set(mapping.tables) == set(CATALOG.tables)
    row = dict(_upload(A, "k1", _at(D, 9)).record)
    change = Change("c", None, row, SourcePosition("city", "city", "city", "mjzzlxx", 1, 1, 0, False), 0)
    [out] = map_change(mapping, change, {})
    assert isinstance(out, Mapped) and out.record["yljgdm"] == A and out.record["sfzh"] == row["sfzh"]
    assert {k: v for k, v in out.record.items() if k != "report_datetime"} == \
        {k: v for k, v in row.items() if k != "report_datetime"}
    revoked = map_change(mapping, Change("d", row, None, change.source, 0), {})[0]
    assert revoked.record["xgbz"] == "1"


def test_without_plaintext_keeps_required_on_ciphertext_and_drops_rules_that_read_it():
    up = _upload(A, "k1", _at(D, 9))
    assert without_plaintext(TABLE, up.record) == []
    missing = dict(up.record, sfzh=None, zjlb="01")
    assert [r.rule for r in without_plaintext(TABLE, missing) if r.field == "sfzh"] in ([], ["required"])
    bad_plain = dict(up.record, jzksdm="not-a-code")
    assert any(r.field == "jzksdm" for r in without_plaintext(TABLE, bad_plain))


def test_an_organisation_not_on_the_list_is_named():
    assert unlisted_organisation({"yljgdm": A}, HOSPITALS) == []
    [reason] = unlisted_organisation({"yljgdm": "Z"}, HOSPITALS)
    assert reason.rule == "org_not_on_city_list" and "'Z'" in reason.message_en


def test_a_key_from_two_hospitals_goes_on_from_the_first_uploader_only():
    ups = [_upload(B, "k1", _at(D, 10)), _upload(A, "k1", _at(D, 9)), _upload(A, "k2", _at(D, 9)),
           _upload(A, "k1", _at(D, 11))]                 # the same hospital again: a correction, not a duplicate
    reasons = duplicate_keys(ups, HOSPITALS)
    assert set(reasons) == {0}
    assert reasons[0].rule == "duplicate_key_across_hospitals" and f"甲医院 ({A})" in reasons[0].message_en


def test_a_batch_not_complete_by_the_deadline_is_late():
    cutoff = deadline_of(D, "22:00", SHANGHAI)
    assert cutoff == _at(D, 22)
    late = late_hospitals({A: _at(D, 21, 59), B: _at(D, 22, 1), C: None}, [A, B, C], cutoff)
    assert set(late) == {B, C}
    assert "22:01" in late[B].message_en and "never" in late[C].message_en


def test_load_hospital_list_reads_the_data_file(tmp_path: Path):
    listed = load_hospital_list(Path(__file__).resolve().parents[3] / "schemas" / "city" / "hospitals.yaml")
    assert len(listed.hospitals) >= 3
    bad = tmp_path / "h.yaml"
    bad.write_text("city: {code: X}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="hospitals"):
        load_hospital_list(bad)


def test_a_relay_night_plans_the_rows_and_reports_per_hospital():
    schedule = parse_schedule({}, mode="city_relay")
    ups = [_upload(A, "a1", _at(D, 9)), _upload(A, "dup", _at(D, 9)),
           _upload(B, "b1", _at(D, 10)), _upload(B, "dup", _at(D, 10)),
           _upload(C, "c1", _at(D, 11))]
    night = plan_night(CATALOG, schedule, D.isoformat(), ups,
                       {A: _at(D, 20), B: _at(D, 21), C: _at(D, 23)}, HOSPITALS)
    assert sorted(u.record["jzlsh"] for u in night.accepted) == ["a1", "b1", "dup"]
    assert {(r.upload.org, r.upload.record["jzlsh"]): [x.rule for x in r.reasons] for r in night.rejected} == {
        (B, "dup"): ["duplicate_key_across_hospitals"], (C, "c1"): ["hospital_batch_late"]}
    # the relay window the sink's guard applies to batch D: D 22:00 – D+1 03:00
    assert not night.batch.in_window(_at(D, 21, 59))
    assert night.batch.in_window(_at(D, 22)) and night.batch.in_window(_at(D + dt.timedelta(days=1), 2, 59))
    assert not night.batch.in_window(_at(D + dt.timedelta(days=1), 3))
    report = hospital_report(night, HOSPITALS)
    assert report["hospitals"][B]["by_rule"] == {"duplicate_key_across_hospitals": 1}
    assert report["hospitals"][C]["late"] and report["hospitals"][A]["rejected"] == 0
    text = "\n".join(render_report(report))
    assert "+08:00" in text and "退回 rejected 1" in text and "迟交 late" in text


def test_the_chain_in_the_city_role_keeps_the_ciphertext_and_quarantines_a_second_hospitals_key():
    from hisbridge.chain import avro
    from hisbridge.chain.chain import CityCheck, CoreRecord, Waiting, transform
    from hisbridge.chain.crypto import decrypt_fields
    from hisbridge.chain.mapping import lookup_key
    from hisbridge.contract import QuarantineEntry
    mapping = identity_mapping(CATALOG, "city", HOSPITALS.city_code)
    city = CityCheck(HOSPITALS, {})
    done = {lookup_key([A, "2026-11-30"]): {"completed_at": "2026-11-30T13:00:00Z"},      # 21:00 local
            lookup_key([B, "2026-11-30"]): {"completed_at": "2026-11-30T13:00:00Z"},
            lookup_key([C, "2026-11-30"]): {"completed_at": "2026-11-30T14:01:00Z"},     # 22:01 local: late
            lookup_key([LISTED.city_code, "2026-11-30"]): {"completed_at": "2026-11-30T13:00:00Z"}}
    source = SourcePosition("city", "city", "city", "mjzzlxx", 1, 1, 0, False)
    run = lambda row, lookups={"batch_done": done}: transform(  # noqa: E731
        Change("c", None, row, source, 0), catalog=CATALOG, mapping=mapping, lookups=lookups, key=KEY, city=city)
    first = dict(_upload(A, "k1", _at(D, 9)).record)
    [out] = run(first)
    assert isinstance(out, CoreRecord), getattr(out, "reasons", None)
    schema = avro.load_schema("mjzzlxx")
    decoded = avro.decode(out.value, {schema.fingerprint: schema})
    assert decoded["sfzh"] == first["sfzh"]                 # not encrypted a second time
    assert decrypt_fields(decoded, ["sfzh"], KEY)["sfzh"] != first["sfzh"]
    assert run(first)[0].__class__ is CoreRecord        # the same hospital again: a correction
    [dup] = run(dict(first, yljgdm=B))
    assert isinstance(dup, QuarantineEntry) and [r["rule"] for r in dup.reasons] == ["duplicate_key_across_hospitals"]
    assert dup.record["sfzh"] == first["sfzh"]
    [late] = run(dict(first, yljgdm=C, jzlsh="k2"))
    assert isinstance(late, QuarantineEntry) and [r["rule"] for r in late.reasons] == ["hospital_batch_late"]
    [waiting] = run(dict(first, jzlsh="k3"), {"batch_done": {}})
    assert isinstance(waiting, Waiting) and waiting.missing.lookup == "batch_done"
    [unlisted] = run(dict(first, yljgdm=LISTED.city_code, jzlsh="k9"))
    assert isinstance(unlisted, QuarantineEntry) and [r["rule"] for r in unlisted.reasons] == ["org_not_on_city_list"]
