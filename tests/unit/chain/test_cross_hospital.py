"""The city's second check: the identity mapping, the plaintext-free catalog rules, the checks across
hospitals, and the per-hospital report of a relay night (plain values, no stack)."""
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
from hisbridge.chain.batch import period_by_name
from hisbridge.chain.quality.cross_hospital import (HospitalList, deadline_of, late_hospitals, load_hospital_list,
                                                    unlisted_organisation, without_plaintext)
from hisbridge.clock import SHANGHAI
from hisbridge.delivery.city_relay import hospital_report, rejected_from, render_report
from hisbridge.delivery.quarantine import Entry
from hisbridge.delivery.schedule import parse as parse_schedule
from hisbridge.delivery.schedule import with_window

CATALOG = load_catalog()
TABLE = CATALOG.tables["mjzzlxx"]
KEY = parse_key("0123456789abcdeffedcba9876543210", "test")   # throwaway test key
LISTED = load_hospital_list(Path(__file__).resolve().parents[3] / "schemas" / "city" / "hospitals.yaml")
A, B, C = sorted(LISTED.hospitals)
HOSPITALS = HospitalList(LISTED.city_code, "市", {A: "甲医院", B: "乙医院", C: "丙医院"})
D = dt.date(2026, 11, 30)


def _at(day: dt.date, hh: int, mm: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hh, mm), SHANGHAI)


def _upload(org: str, key: str, **changes) -> dict:
    """An mjzzlxx row as a hospital uploads it to the city: identity fields already ciphertext."""
    record = dict(sample_records(TABLE, 1, seed=hash(key) % 1000)[0], yljgdm=org, jzlsh=key,
                  scsj=dt.datetime(2026, 11, 30, 9, 0), **changes)
    return encrypt_fields(record, TABLE.encrypted_fields, KEY)


def test_the_identity_mapping_is_generated_for_every_catalog_table_and_keeps_the_uploaded_organisation():
    mapping = identity_mapping(CATALOG, "city", HOSPITALS.city_code)
    assert set(mapping.tables) == set(CATALOG.tables)
    row = dict(_upload(A, "k1"))
    change = Change("c", None, row, SourcePosition("city", "city", "city", "mjzzlxx", 1, 1, 0, False), 0)
    [out] = map_change(mapping, change, {})
    assert isinstance(out, Mapped) and out.record["yljgdm"] == A and out.record["sfzh"] == row["sfzh"]
    assert {k: v for k, v in out.record.items() if k != "report_datetime"} == \
        {k: v for k, v in row.items() if k != "report_datetime"}
    revoked = map_change(mapping, Change("d", row, None, change.source, 0), {})[0]
    assert revoked.record["xgbz"] == "1"


def test_without_plaintext_keeps_required_on_ciphertext_and_drops_rules_that_read_it():
    up = _upload(A, "k1")
    assert without_plaintext(TABLE, up) == []
    missing = dict(up, sfzh=None, zjlb="01")
    assert [r.rule for r in without_plaintext(TABLE, missing) if r.field == "sfzh"] in ([], ["required"])
    bad_plain = dict(up, jzksdm="not-a-code")
    assert any(r.field == "jzksdm" for r in without_plaintext(TABLE, bad_plain))


def test_an_organisation_not_on_the_list_is_named():
    assert unlisted_organisation({"yljgdm": A}, HOSPITALS) == []
    [reason] = unlisted_organisation({"yljgdm": "Z"}, HOSPITALS)
    assert reason.rule == "org_not_on_city_list" and "'Z'" in reason.message_en


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


def test_the_report_reads_the_workers_decisions_per_hospital():
    schedule = parse_schedule({}, mode="city_relay")
    batch = with_window(period_by_name("daily", D.isoformat()), schedule.windows)
    late = late_hospitals({C: _at(D, 23)}, [C], deadline_of(D, "22:00", SHANGHAI))[C]
    dup = {"rule": "duplicate_key_across_hospitals", "field": None, "message": "mjzzlxx key [dup] … / …"}

    def entry(org: str, key: str, reasons: list, state: str = "open") -> Entry:
        doc = {"record": {"yljgdm": org, "jzlsh": key}, "reasons": reasons}
        return Entry(1, "mjzzlxx", key, "1:1", D.isoformat(), [r["rule"] for r in reasons], doc, state,
                     _at(D, 21), _at(D, 21), None, None)
    rejected = [rejected_from(entry(B, "dup", [dup])), rejected_from(entry(C, "c1", [late.as_dict()], "dismissed"))]
    report = hospital_report(batch, deadline_of(D, "22:00", SHANGHAI), {A: 2, B: 1}, rejected, HOSPITALS)
    hospitals = report["hospitals"]
    assert [(o, h["uploaded"], h["accepted"], h["rejected"]) for o, h in hospitals.items()] == [
        (A, 2, 2, 0), (B, 2, 1, 1), (C, 1, 0, 1)]
    assert hospitals[B]["by_rule"] == {"duplicate_key_across_hospitals": 1} and hospitals[B]["late"] is None
    assert "23:00:00+08:00" in hospitals[C]["late"] and hospitals[C]["rows"][0]["state"] == "dismissed"
    assert report["window"] == ["2026-11-30 22:00:00+08:00", "2026-12-01 03:00:00+08:00"]
    text = "\n".join(render_report(report))
    assert "退回 rejected 1" in text and "迟交 late" in text and "[dup]" in text


def test_the_chain_in_the_city_role_keeps_the_ciphertext_and_quarantines_a_second_hospitals_key():
    from hisbridge.chain import avro
    from hisbridge.chain.chain import CoreRecord, Waiting, transform
    from hisbridge.chain.roles import CityRole
    from hisbridge.chain.crypto import decrypt_fields
    from hisbridge.chain.mapping import lookup_key
    from hisbridge.contract import QuarantineEntry
    mapping = identity_mapping(CATALOG, "city", HOSPITALS.city_code)
    city = CityRole(HOSPITALS, {})
    done = {lookup_key([A, "2026-11-30"]): {"completed_at": "2026-11-30T13:00:00Z"},      # 21:00 local
            lookup_key([B, "2026-11-30"]): {"completed_at": "2026-11-30T13:00:00Z"},
            lookup_key([C, "2026-11-30"]): {"completed_at": "2026-11-30T14:01:00Z"},     # 22:01 local: late
            lookup_key([LISTED.city_code, "2026-11-30"]): {"completed_at": "2026-11-30T13:00:00Z"}}
    source = SourcePosition("city", "city", "city", "mjzzlxx", 1, 1, 0, False)
    run = lambda row, lookups={"batch_done": done}: transform(  # noqa: E731
        Change("c", None, row, source, 0), catalog=CATALOG, mapping=mapping, lookups=lookups, key=KEY, role=city)
    first = dict(_upload(A, "k1"))
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
