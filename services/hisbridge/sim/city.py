"""The simulated city platform: its database of its hospitals' uploads, and three (or more) simulated
hospitals writing catalog-shaped rows into it, identity fields SM4-encrypted with the key given (tests: a
throwaway key).

One table per catalog table in schema `city` (the catalog's own front-end DDL), plus `upload_batch`
(yljgdm, batch "YYYY-MM-DD", completed_at): a hospital marks its batch D complete there. `plan_uploads` is pure and
deterministic (seed): which rows each hospital uploads when, with the planted defects — a hospital that
completes late, a key uploaded by two hospitals; `load_city` writes a plan through one connection.
"""
from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from hisbridge.catalog.ddl import table_ddl
from hisbridge.catalog.model import Catalog
from hisbridge.catalog.sample import sample_record
from hisbridge.chain.crypto import Sm4Key, encrypt_fields
from hisbridge.clock import SHANGHAI

TABLE = "mjzzlxx"      # the outpatient visit: the table the simulated uploads fill


@dataclass(frozen=True)
class CityPlan:
    rows: tuple[tuple[str, dt.datetime, Mapping[str, Any]], ...]    # (org, uploaded_at, record), upload order
    completed: Mapping[str, dt.datetime | None]                     # org → batch D complete at (None: never)


def plan_uploads(catalog: Catalog, orgs: Sequence[str], day: dt.date, per_hospital: int, key: Sm4Key, *,
                 seed: int = 0, late: str | None = None, duplicate: tuple[str, str] | None = None) -> CityPlan:
    """Each hospital's visits of day D uploaded during D; `late` completes at D 23:30 instead of before
    22:00; `duplicate` = (first, second): the second hospital also uploads one of the first's keys, later."""
    table = catalog.tables[TABLE]
    rng = random.Random(seed)
    rows: list[tuple[str, dt.datetime, dict[str, Any]]] = []
    first_keys: dict[str, str] = {}
    for h, org in enumerate(orgs):
        for i in range(per_hospital):
            record = sample_record(table, rng, i)
            at = dt.datetime.combine(day, dt.time(8), SHANGHAI) + dt.timedelta(minutes=5 * i + h)
            record.update(yljgdm=org, jzlsh=f"H{h}V{i:05d}", xgbz="0",
                          jzsj=at.replace(tzinfo=None) - dt.timedelta(minutes=30),
                          scsj=at.replace(tzinfo=None), report_datetime=at.replace(tzinfo=None))
            rows.append((org, at, encrypt_fields(record, table.encrypted_fields, key)))
            first_keys.setdefault(org, record["jzlsh"])
    if duplicate:
        src, dst = duplicate
        original = next(r for o, _, r in rows if o == src and r["jzlsh"] == first_keys[src])
        at = dt.datetime.combine(day, dt.time(17), SHANGHAI)
        rows.append((dst, at, dict(original, yljgdm=dst, scsj=at.replace(tzinfo=None))))
    completed = {org: dt.datetime.combine(day, dt.time(23, 30) if org == late else dt.time(21), SHANGHAI)
                 for org in orgs}
    rows.sort(key=lambda r: r[1])
    return CityPlan(tuple(rows), completed)


def city_ddl(catalog: Catalog, schema: str = "city") -> str:
    body = "".join(table_ddl(t) for t in catalog.tables.values())
    return (f"CREATE SCHEMA IF NOT EXISTS {schema};\nSET search_path TO {schema};\n{body}"
            "CREATE TABLE IF NOT EXISTS upload_batch (yljgdm varchar(18), batch varchar(10), completed_at timestamptz,"
            " PRIMARY KEY (yljgdm, batch));\n")


def load_city(conn: Any, catalog: Catalog, plan: CityPlan, day: dt.date, schema: str = "city") -> None:
    """Create the city schema (idempotent) and write the plan's uploads and completion marks."""
    table = catalog.tables[TABLE]
    names = [f.name for f in table.fields]
    with conn.cursor() as cur:
        cur.execute(city_ddl(catalog, schema))
        for _org, _at, record in plan.rows:
            cur.execute(f"INSERT INTO {schema}.{TABLE} ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))})"
                        f" ON CONFLICT DO NOTHING", [record.get(n) for n in names])
        for org, done in plan.completed.items():
            cur.execute(f"INSERT INTO {schema}.upload_batch VALUES (%s, %s, %s) ON CONFLICT (yljgdm, batch) DO UPDATE"
                        f" SET completed_at = EXCLUDED.completed_at", (org, day.isoformat(), done))
    conn.commit()
