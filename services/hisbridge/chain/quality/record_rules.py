"""Rules across fields of one record. Each is pure: (table, record, params, report_time) → reasons.

A rule reads the record's fields with `record.get` only, so a field holding None and an absent field are
the same to it: check_record hands it the present values, the batch fast path (quality.columns) the record
as it is, and both must get the same answer.

Dates and datetimes compare as datetimes when both carry a time, otherwise by calendar date; aware
datetimes are first read as Asia/Shanghai wall-clock time (the catalog's convention).
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Mapping

from hisbridge.catalog.model import Table
from hisbridge.catalog.records import local_naive, stay_days
from hisbridge.chain.quality.field_rules import is_missing
from hisbridge.chain.quality.memo import per_table
from hisbridge.chain.quality.reasons import Reason
from hisbridge.clock import SHANGHAI


def _temporal(value: object) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return local_naive(value)
    return value if isinstance(value, dt.date) else None


def not_after(earlier: dt.date, later: dt.date) -> bool:
    """earlier <= later, comparing by date unless both have a time of day."""
    if isinstance(earlier, dt.datetime) and isinstance(later, dt.datetime):
        return earlier <= later
    as_date = lambda v: v.date() if isinstance(v, dt.datetime) else v  # noqa: E731
    return as_date(earlier) <= as_date(later)


def _title(table: Table, name: str) -> str:
    try:
        return f"{table.field(name).title}（{name}）"
    except KeyError:
        return name


def check_date_order(table: Table, record: Mapping[str, Any], params: Mapping[str, Any],
                     report_time: dt.datetime | None) -> list[Reason]:
    """The listed fields are chronological (e.g. birth ≤ admission ≤ discharge ≤ archiving)."""
    present = [(n, _temporal(record.get(n))) for n in params.get("fields", ())]
    present = [(n, v) for n, v in present if v is not None]
    reasons = []
    for i, (first, first_value) in enumerate(present):
        for second, second_value in present[i + 1:]:
            if not not_after(first_value, second_value):
                reasons.append(Reason("date_order", second,
                                      f"{_title(table, second)}早于{_title(table, first)}",
                                      f"{second} is before {first}"))
    return reasons


def check_after_report_time(table: Table, record: Mapping[str, Any], params: Mapping[str, Any],
                            report_time: dt.datetime | None) -> list[Reason]:
    """Nothing happens after the moment of reporting."""
    now = local_naive(report_time) if report_time else dt.datetime.now(SHANGHAI).replace(tzinfo=None)
    reasons = []
    for name in event_time_fields(table):
        value = _temporal(record.get(name))
        if value is not None and not not_after(value, now):
            reasons.append(Reason("after_report_time", name, f"{_title(table, name)}晚于上报时间",
                                  f"{name} is after the report time"))
    return reasons


@per_table
def event_time_fields(table: Table) -> tuple[str, ...]:
    return tuple(f.name for f in table.fields if f.is_temporal and not f.sink_stamped)


def check_stay_length(table: Table, record: Mapping[str, Any], params: Mapping[str, Any],
                      report_time: dt.datetime | None) -> list[Reason]:
    days = record.get(params["days"])
    start, end = _temporal(record.get(params["start"])), _temporal(record.get(params["end"]))
    if not isinstance(days, int) or isinstance(days, bool) or start is None or end is None or not not_after(start, end):
        return []
    expected = stay_days(start, end)
    if days == expected:
        return []
    return [Reason("stay_length", params["days"], f"{_title(table, params['days'])}为 {days}，按入出院日期应为 {expected}",
                   f"{params['days']} is {days}, the dates give {expected}")]


def check_required_when(table: Table, record: Mapping[str, Any], params: Mapping[str, Any],
                        report_time: dt.datetime | None) -> list[Reason]:
    """Fields required when a code's category (first 3 characters) lies in [from, to], e.g. S00–T98."""
    code = record.get(params["code_field"])
    if not isinstance(code, str) or len(code) < 3 or not params["from"] <= code[:3].upper() <= params["to"]:
        return []
    zh = params.get("reason_zh", f"{params['code_field']} 在 {params['from']}–{params['to']} 时须填写")
    en = params.get("reason_en", f"required when {params['code_field']} is in {params['from']}–{params['to']}")
    return [Reason("required_when", name, f"{_title(table, name)}：{zh}", f"{name}: {en}")
            for name in params.get("fields", ()) if is_missing(record.get(name))]


def check_positive_when(table: Table, record: Mapping[str, Any], params: Mapping[str, Any],
                        report_time: dt.datetime | None) -> list[Reason]:
    """A fee must be > 0 when a flag says the item was used (中药制剂费 when 使用中药制剂 = 1)."""
    if record.get(params["if_field"]) != params["equals"]:
        return []
    amount = record.get(params["field"])
    if isinstance(amount, (int, Decimal)) and not isinstance(amount, bool) and amount > 0:
        return []
    name = params["field"]
    zh = params.get("reason_zh", f"{params['if_field']} = {params['equals']} 时须大于0")
    en = params.get("reason_en", f"must be > 0 when {params['if_field']} = {params['equals']}")
    return [Reason("positive_when", name, f"{_title(table, name)}：{zh}", f"{name}: {en}")]
