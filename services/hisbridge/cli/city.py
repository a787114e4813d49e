"""`hisbridge city report --batch D [--json]`: the city platform's per-hospital report of batch D — what the
city's second check rejected and why, so it can go back to each hospital (delivery.city_relay). Reads the
city's upload tables (deployment.city_schema) in the city database (connections.his_dsn: in the city role
the source database is the city's own)."""
from __future__ import annotations

import json
from typing import Any

import click
from hisbridge.cli.common import batch_name, command, group, pass_settings
from hisbridge.settings import Settings


def read_night(conn: Any, catalog: Any, schema: str, batch: str) -> tuple[list, dict]:
    """Batch D's uploads of every daily table and the hospitals' completion marks, as plain values."""
    from hisbridge.chain.batch import period_by_name
    from hisbridge.chain.quality.cross_hospital import Upload
    from hisbridge.clock import SHANGHAI
    period = period_by_name("daily", batch)
    start, end = (m.replace(tzinfo=None) for m in (period.start, period.end))
    uploads = []
    with conn.cursor() as cur:
        for name, table in sorted(catalog.tables.items()):
            if table.cadence != "daily":
                continue
            cur.execute(f"SELECT * FROM {schema}.{name} WHERE {table.batch_time} >= %s AND {table.batch_time} < %s"
                        f" ORDER BY report_datetime", (start, end))
            cols = [c.name for c in cur.description]
            for values in cur.fetchall():
                row = dict(zip(cols, values))
                uploads.append(Upload(name, row["yljgdm"], tuple(row[k] for k in table.key),
                                      row["report_datetime"].replace(tzinfo=SHANGHAI), row))
        cur.execute(f"SELECT yljgdm, completed_at FROM {schema}.upload_batch WHERE batch = %s", (batch,))
        completed = dict(cur.fetchall())
    return uploads, completed


@group("city", help="city.help")
def cli() -> None:
    pass


@cli.command("report", help="city.report.help")
@click.option("--batch", "batch", required=True, help="city.batch")
@click.option("--json", "as_json", is_flag=True, help="city.json")
@pass_settings
def report(settings: Settings, batch: str, as_json: bool) -> None:
    from hisbridge.catalog import catalog_for
    from hisbridge.chain.quality.cross_hospital import load_hospital_list
    from hisbridge.delivery.city_relay import hospital_report, plan_night, render_report
    from hisbridge.delivery.schedule import load_schedule
    from hisbridge.ops.reach import connect_postgres
    batch_name(batch, "daily", "city")
    catalog = catalog_for(settings.paths)
    hospitals = load_hospital_list(settings.deployment.city_hospitals)
    conn = connect_postgres(settings.connections.his_dsn, "HISBRIDGE_HIS_DSN")
    try:
        uploads, completed = read_night(conn, catalog, settings.deployment.city_schema, batch)
    finally:
        conn.close()
    schedule = load_schedule(settings.paths.schedule, settings.worker.schedule_mode or "city_relay")
    night = plan_night(catalog, schedule, batch, uploads, completed, hospitals, settings.deployment.city_deadline)
    result = hospital_report(night, hospitals)
    click.echo(json.dumps(result, ensure_ascii=False, indent=2) if as_json else "\n".join(render_report(result)))
