"""The city platform's relay night: which uploads of batch D go on to the province, and the per-hospital
report of what the city rejected and why (so it can go back to the hospital).

Plain functions over plain values. `plan_night` takes one night's uploads (already through the identity
mapping: catalog records with ciphertext identity fields), the hospitals' completion marks and the city's
hospital list, and runs the city's second check (chain.quality.cross_hospital): the catalog rules that need
no plaintext, the organisation on the list, no key from two hospitals, each hospital's batch complete by
D 22:00. What passes is delivered by the sink in the city relay window (D 22:00 – D+1 03:00; schedule mode
city_relay, the city role's default); `hospital_report` / `render_report` say per
hospital what was accepted and what was rejected by rule, bilingual, times Asia/Shanghai.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from hisbridge.catalog.model import Catalog
from hisbridge.chain.batch import period_by_name
from hisbridge.chain.quality.cross_hospital import (HospitalList, Upload, deadline_of, duplicate_keys,
                                                    late_hospitals, unlisted_organisation,
                                                    without_plaintext)
from hisbridge.chain.quality.reasons import Reason
from hisbridge.clock import SHANGHAI, local_text
from hisbridge.delivery.schedule import Batch, Schedule, with_window


@dataclass(frozen=True)
class Rejected:
    upload: Upload
    reasons: tuple[Reason, ...]


@dataclass(frozen=True)
class RelayNight:
    batch: Batch
    cutoff: dt.datetime
    accepted: tuple[Upload, ...]
    rejected: tuple[Rejected, ...]
    late: Mapping[str, Reason] = field(default_factory=dict)


def plan_night(catalog: Catalog, schedule: Schedule, batch_name: str, uploads: Sequence[Upload],
               completed: Mapping[str, dt.datetime | None], hospitals: HospitalList, deadline: str = "22:00"
               ) -> RelayNight:
    """Batch D's uploads split into accepted and rejected (with every reason), per the city's second check."""
    batch = with_window(period_by_name("daily", batch_name), schedule.windows)
    cutoff = deadline_of(dt.date.fromisoformat(batch_name), deadline, SHANGHAI)
    mine = [u for u in uploads if catalog.tables[u.table].cadence == "daily"
            and batch.contains(u.record.get(catalog.tables[u.table].batch_time))]
    late = late_hospitals(completed, sorted({u.org for u in mine} & set(hospitals.hospitals)), cutoff)
    dupes = duplicate_keys(mine, hospitals)
    accepted, rejected = [], []
    for i, up in enumerate(mine):
        reasons = list(without_plaintext(catalog.tables[up.table], up.record))
        reasons += unlisted_organisation(up.record, hospitals)
        if i in dupes:
            reasons.append(dupes[i])
        if up.org in late:
            reasons.append(late[up.org])
        (rejected.append(Rejected(up, tuple(reasons))) if reasons else accepted.append(up))
    return RelayNight(batch, cutoff, tuple(accepted), tuple(rejected), late)


def hospital_report(night: RelayNight, hospitals: HospitalList) -> dict[str, Any]:
    """Per hospital: uploaded, accepted, rejected by rule, the rejected rows with their reasons (JSON-able)."""
    orgs = sorted({u.org for u in night.accepted} | {r.upload.org for r in night.rejected} | set(hospitals.hospitals))
    per: dict[str, Any] = {}
    for org in orgs:
        acc = [u for u in night.accepted if u.org == org]
        rej = [r for r in night.rejected if r.upload.org == org]
        per[org] = {
            "name": hospitals.hospitals.get(org, ""), "on_list": org in hospitals.hospitals,
            "uploaded": len(acc) + len(rej), "accepted": len(acc), "rejected": len(rej),
            "late": night.late[org].message if org in night.late else None,
            "by_rule": dict(sorted(Counter(x.rule for r in rej for x in r.reasons).items())),
            "rows": [{"table": r.upload.table, "key": [str(k) for k in r.upload.key],
                      "uploaded_at": local_text(r.upload.uploaded_at),
                      "reasons": [x.as_dict() for x in r.reasons]} for r in rej]}
    return {"batch": night.batch.name, "cutoff": local_text(night.cutoff),
            "window": [local_text(night.batch.window_start), local_text(night.batch.window_end)],
            "city": {"code": hospitals.city_code, "name": hospitals.city_name}, "hospitals": per}


def render_report(report: Mapping[str, Any], show: int = 20) -> list[str]:
    """The report as an operator reads it, Chinese then English on each line."""
    lines = [f"市级二次质控报告 / city second-check report — 批次 batch {report['batch']}，"
             f"完成时限 deadline {report['cutoff']}，上报窗口 relay window {report['window'][0]} – {report['window'][1]}"]
    for org, h in report["hospitals"].items():
        lines.append(f"{org} {h['name']}{'' if h['on_list'] else '（不在名单 not on the list）'}: "
                     f"上传 uploaded {h['uploaded']}，通过 accepted {h['accepted']}，退回 rejected {h['rejected']}")
        if h["late"]:
            lines.append(f"  迟交 late: {h['late']}")
        for rule, n in h["by_rule"].items():
            lines.append(f"  {rule}: {n}")
        for row in h["rows"][:show]:
            lines.append(f"  {row['table']} [{','.join(row['key'])}] {row['uploaded_at']}: "
                         + "; ".join(f"{x['rule']} {x['message']}" for x in row["reasons"]))
        if len(h["rows"]) > show:
            lines.append(f"  … 另有 {len(h['rows']) - show} 行 / {len(h['rows']) - show} more rows")
    return lines
