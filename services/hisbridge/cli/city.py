"""`hisbridge city report --batch D [--json]`: the city platform's per-hospital report of batch D — what the
city's second check rejected and why, so it can go back to each hospital (delivery.city_relay). It reads the
worker's decisions from staging: batch D's staged rows per organisation and its quarantine entries."""
from __future__ import annotations

import json

import click
from hisbridge.cli.common import batch_name, group, pass_settings
from hisbridge.settings import Settings


@group("city", help="city.help")
def cli() -> None:
    pass


@cli.command("report", help="city.report.help")
@click.option("--batch", "batch", required=True, help="city.batch")
@click.option("--json", "as_json", is_flag=True, help="city.json")
@pass_settings
def report(settings: Settings, batch: str, as_json: bool) -> None:
    from datetime import date

    from hisbridge.chain.batch import period_by_name
    from hisbridge.chain.quality.cross_hospital import deadline_of, load_hospital_list
    from hisbridge.clock import SHANGHAI
    from hisbridge.delivery import quarantine, staging
    from hisbridge.delivery.city_relay import REJECTED_STATES, hospital_report, rejected_from, render_report
    from hisbridge.delivery.schedule import load_schedule, with_window
    from hisbridge.ops.reach import connect_postgres
    batch_name(batch, "daily", "city")
    hospitals = load_hospital_list(settings.deployment.city_hospitals)
    schedule = load_schedule(settings.paths.schedule, settings.worker.schedule_mode or "city_relay")
    period = with_window(period_by_name("daily", batch), schedule.windows)
    cutoff = deadline_of(date.fromisoformat(batch), settings.deployment.city_deadline, SHANGHAI)
    conn = connect_postgres(settings.connections.staging_dsn, "HISBRIDGE_STAGING_DSN")
    try:
        staging.ensure_schema(conn)        # before the worker's first batch: an empty report, not an error
        accepted = staging.org_counts(conn, batch, "daily")
        rejected = [rejected_from(e) for state in REJECTED_STATES
                    for e in quarantine.entries(conn, batch=batch, state=state)]
    finally:
        conn.close()
    result = hospital_report(period, cutoff, accepted, rejected, hospitals)
    click.echo(json.dumps(result, ensure_ascii=False, indent=2) if as_json else "\n".join(render_report(result)))
