"""The city platform's second check (市级二次质控) on its hospitals' uploads, as plain functions.

`without_plaintext` — every catalog rule a city can check on an upload whose identity fields are already
SM4 ciphertext: the rules on the other fields, plus "required" on the encrypted ones (present or not needs
no plaintext). A rule reading an encrypted field's value (length, format, checksum, agreement with another
field) needs plaintext, so its reasons are the hospital's check, not the city's.

Across hospitals (chain.roles.CityRole applies them upload by upload, in commit order):
  org_not_on_city_list          the upload's yljgdm is not on the city's hospital list (data: a YAML file)
  duplicate_key_across_hospitals the same table and business key from two hospitals: the first uploaded
                                 goes on, every later one is rejected naming the first hospital
  hospital_batch_late           a hospital's batch D was not complete by D 22:00 (its completion mark is
                                 missing or later): none of its batch-D rows relay tonight
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml
from hisbridge.catalog.model import Table
from hisbridge.chain.quality import check_record
from hisbridge.chain.quality.reasons import Reason
from hisbridge.clock import local_text

PLAINTEXT_FREE = frozenset({"required"})     # rules on an encrypted field a city can still check


@dataclass(frozen=True)
class HospitalList:
    city_code: str
    city_name: str
    hospitals: Mapping[str, str]             # organisation code → name


def load_hospital_list(path: Path) -> HospitalList:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    city = data.get("city") or {}
    hospitals = {str(h["code"]): str(h.get("name") or "") for h in data.get("hospitals") or ()}
    if not city.get("code") or not hospitals:
        raise ValueError(f"{path}: needs `city: {{code: …}}` and a non-empty `hospitals:` list")
    return HospitalList(str(city["code"]), str(city.get("name") or ""), hospitals)


def _needs_plaintext(table: Table, reason: Reason) -> bool:
    return reason.field in table.encrypted_fields and reason.rule not in PLAINTEXT_FREE


def without_plaintext(table: Table, record: Mapping[str, Any], *, report_time: dt.datetime | None = None
                      ) -> list[Reason]:
    """The catalog's reasons against an upload, less those that need an identity field's plaintext."""
    return [r for r in check_record(table, dict(record), report_time=report_time)
            if not _needs_plaintext(table, r)]


def unlisted_organisation(record: Mapping[str, Any], hospitals: HospitalList) -> list[Reason]:
    code = record.get("yljgdm")
    if code in hospitals.hospitals:
        return []
    return [Reason("org_not_on_city_list", "yljgdm", f"机构代码 {code!r} 不在本市医院名单中",
                   f"organisation code {code!r} is not on the city's hospital list")]


def duplicate_key(table: str, key: str, owner: str, hospitals: HospitalList | None = None) -> Reason:
    """`key` of `table` was uploaded first by hospital `owner`."""
    name = (hospitals.hospitals.get(owner, "") if hospitals else "") or owner
    return Reason("duplicate_key_across_hospitals", None, f"{table} 主键 [{key}] 已由 {name}（{owner}）上传",
                  f"{table} key [{key}] was already uploaded by {name} ({owner})")


def deadline_of(batch_day: dt.date, deadline: str, zone: dt.tzinfo) -> dt.datetime:
    """D at the deadline's local time ("22:00"), aware."""
    hour, minute = (int(p) for p in deadline.split(":", 1))
    return dt.datetime.combine(batch_day, dt.time(hour, minute), zone)


def late_hospitals(completed: Mapping[str, dt.datetime | None], hospitals: Iterable[str], cutoff: dt.datetime
                   ) -> dict[str, Reason]:
    """Each listed hospital whose batch was not complete by `cutoff` → its reason (completion time or none)."""
    late: dict[str, Reason] = {}
    for org in hospitals:
        done = completed.get(org)
        if done is not None and done <= cutoff:
            continue
        when_zh = f"于 {local_text(done)} 才完成" if done else "未标记完成"
        when_en = f"completed only at {local_text(done)}" if done else "never marked complete"
        late[org] = Reason("hospital_batch_late", None, f"本批次须在 {local_text(cutoff)} 前上传完成，{when_zh}",
                           f"the batch had to be complete by {local_text(cutoff)}: {when_en}")
    return late
