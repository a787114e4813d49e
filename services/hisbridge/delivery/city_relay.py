"""The city platform's per-hospital report of a relay night: what the city's second check rejected in batch D
and why, so it can go back to each hospital.

The report reads the worker's decisions, never re-derives them: the transform in the city role runs the
second check (chain.quality.cross_hospital, through chain.roles.CityRole) on every upload as Debezium delivers it;
what passes is staged and relayed by the sink in the city relay window (D 22:00 – D+1 03:00, schedule mode
city_relay), what fails is a quarantine entry. So accepted = batch D's staged rows per organisation,
rejected = batch D's quarantine entries still open or dismissed (a resolved one went out after all).
Plain functions over plain values; the CLI (cli/city.py) reads staging.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from hisbridge.chain.quality.cross_hospital import HospitalList
from hisbridge.clock import local_text
from hisbridge.delivery.schedule import Batch

if TYPE_CHECKING:
    from hisbridge.delivery.quarantine import Entry

LATE_RULE = "hospital_batch_late"
REJECTED_STATES = ("open", "dismissed")


@dataclass(frozen=True)
class Rejected:
    """One upload the city's check did not let through, as its quarantine entry says."""
    org: str
    table: str
    key: str
    state: str                                  # open | dismissed
    seen_at: dt.datetime                        # when the city quarantined it
    reasons: tuple[Mapping[str, Any], ...]      # rule, field, message (bilingual)


def rejected_from(entry: "Entry") -> Rejected:
    """A quarantine entry of the city's worker → the row the report names (its organisation from the record)."""
    record = entry.entry.get("record") or {}
    return Rejected(str(record.get("yljgdm") or ""), entry.table, entry.key, entry.state, entry.first_seen,
                    tuple(entry.entry.get("reasons") or ()))


def hospital_report(batch: Batch, cutoff: dt.datetime, accepted: Mapping[str, int], rejected: Sequence[Rejected],
                    hospitals: HospitalList) -> dict[str, Any]:
    """Per hospital: uploaded, accepted, rejected by rule, whether its batch was late, the rejected rows with
    their reasons (JSON-able). Every listed hospital appears, also one that uploaded nothing."""
    orgs = sorted(set(accepted) | {r.org for r in rejected} | set(hospitals.hospitals))
    per: dict[str, Any] = {}
    for org in orgs:
        rej = [r for r in rejected if r.org == org]
        late = next((x["message"] for r in rej for x in r.reasons if x.get("rule") == LATE_RULE), None)
        per[org] = {
            "name": hospitals.hospitals.get(org, ""), "on_list": org in hospitals.hospitals,
            "uploaded": accepted.get(org, 0) + len(rej), "accepted": accepted.get(org, 0), "rejected": len(rej),
            "late": late, "by_rule": dict(sorted(Counter(x["rule"] for r in rej for x in r.reasons).items())),
            "rows": [{"table": r.table, "key": r.key, "state": r.state, "quarantined_at": local_text(r.seen_at),
                      "reasons": list(r.reasons)} for r in rej]}
    return {"batch": batch.name, "cutoff": local_text(cutoff),
            "window": [local_text(batch.window_start), local_text(batch.window_end)],
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
            lines.append(f"  {row['table']} [{row['key']}] {row['quarantined_at']}: "
                         + "; ".join(f"{x['rule']} {x['message']}" for x in row["reasons"]))
        if len(h["rows"]) > show:
            lines.append(f"  … 另有 {len(h['rows']) - show} 行 / {len(h['rows']) - show} more rows")
    return lines
