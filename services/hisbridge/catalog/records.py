"""Plain records ↔ JSON: dates as ISO strings, decimals as strings (exact), per the catalog's field kinds.

`from_json` never raises: a value it cannot read is left as it came, so the quality type rule reports it.
"""
from __future__ import annotations

import base64
import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from hisbridge.catalog.model import Table
from hisbridge.clock import SHANGHAI


def local_naive(value: dt.datetime) -> dt.datetime:
    """An aware datetime as Asia/Shanghai wall-clock (the catalog's convention); a naive one as it is."""
    return value.astimezone(SHANGHAI).replace(tzinfo=None) if value.tzinfo else value


def stay_days(admitted: dt.date, discharged: dt.date) -> int:
    """实际住院天数: discharge date − admission date; admitted and discharged the same day counts 1."""
    start = admitted.date() if isinstance(admitted, dt.datetime) else admitted
    end = discharged.date() if isinstance(discharged, dt.datetime) else discharged
    return max(1, (end - start).days)


class ZeroDate:
    """MySQL/MariaDB's zero date ('0000-00-00', '0000-00-00 00:00:00'): a date column holding no day at all.

    Debezium cannot carry it and writes the epoch instead (NOT NULL columns, TIMESTAMPs while streaming);
    the decode stage turns exactly those values back into this one marker, so the quality stage quarantines
    them as `zero_date` instead of reporting 1970-01-01 (chain.decode says which values and why)."""
    __slots__ = ()
    text = "0000-00-00"

    def __repr__(self) -> str:
        return "ZERO_DATE"

    def __str__(self) -> str:
        return self.text

    def __reduce__(self) -> str:
        return "ZERO_DATE"          # a copy or a pickle is the same marker


ZERO_DATE = ZeroDate()


def to_json_value(value: Any) -> Any:
    """One value as JSON-safe text: dates, times and date-times ISO-8601, Decimal exact, bytes Base64, the
    zero date as '0000-00-00'."""
    if value is ZERO_DATE:
        return ZERO_DATE.text
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


def to_json(record: dict[str, Any]) -> dict[str, Any]:
    return {name: to_json_value(value) for name, value in record.items()}


def _read(kind: str, value: Any) -> Any:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        return value
    try:
        if kind == "decimal" and not isinstance(value, bool):
            return Decimal(str(value))
        if kind == "date" and isinstance(value, str) and len(value) == 10:
            return dt.date.fromisoformat(value)
        if kind == "datetime" and isinstance(value, str):
            return dt.datetime.fromisoformat(value.replace(" ", "T", 1))
    except (ValueError, InvalidOperation):
        return value
    return value


def from_json(table: Table, data: dict[str, Any]) -> dict[str, Any]:
    """JSON object → plain record: strings become date/datetime/Decimal where the field says so."""
    kinds = {f.name: f.kind for f in table.fields}
    return {name: _read(kinds.get(name, ""), value) for name, value in data.items()}
