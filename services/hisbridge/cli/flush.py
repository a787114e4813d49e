"""`hisbridge flush` — flush one staged (table, batch) to the front-end database.

Without --force the window guard decides (the clock is real time, or the settings' clock/--now for the
demo). --force is the one operator bypass: it needs --operator and --reason, is logged and is ledgered
with kind 'forced'. `hisbridge flush --plan` shows what the planner would flush now.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime

import click
import psycopg2
from hisbridge.catalog import catalog_for
from hisbridge.cli.common import pass_settings
from hisbridge.clock import clock_for
from hisbridge.delivery import staging
from hisbridge.delivery.flush import (Forced, WindowClosed, ensure_frontend,
                                      flush_batch, plan_flushes, recover)
from hisbridge.delivery.schedule import ScheduleError, load_schedule
from hisbridge.settings import Settings


def _now(settings: Settings, now: str | None) -> datetime:
    if now:
        moment = datetime.fromisoformat(now)
        if moment.tzinfo is None:
            raise click.BadParameter("--now needs an offset, e.g. 2026-03-01T18:30:00+08:00")
        return moment
    return clock_for(settings.clock).now()


def _connect(dsn: str, what: str):
    try:
        return psycopg2.connect(dsn, connect_timeout=10)
    except psycopg2.OperationalError as exc:
        raise click.ClickException(f"cannot reach the {what} database ({exc.args[0].strip()})") from None


@click.command("flush")
@click.option("--table", "table_name", help="catalog table, e.g. mjzzlxx")
@click.option("--batch", help="batch name: YYYY-MM-DD, YYYY-MM or YYYY")
@click.option("--force", is_flag=True, help="bypass the delivery window (operator only; logged and ledgered)")
@click.option("--operator", help="who forces the flush (required with --force)")
@click.option("--reason", help="why the flush is forced (required with --force)")
@click.option("--now", help="ISO moment with offset instead of the clock (demo/testing)")
@click.option("--plan", "show_plan", is_flag=True, help="only show what may be flushed now")
@click.option("--watermark", help="ISO moment to assume as every table's source watermark (with --plan)")
@pass_settings
def cli(settings: Settings, table_name, batch, force, operator, reason, now, show_plan, watermark) -> None:
    """Flush a staged batch into its front-end table inside its delivery window."""
    try:
        schedule = load_schedule(settings.paths.schedule, settings.worker.schedule_mode)
    except ScheduleError as exc:
        raise click.ClickException(str(exc)) from None
    moment = _now(settings, now)
    stage = _connect(settings.connections.staging_dsn, "staging")
    staging.ensure_schema(stage)
    if show_plan:
        mark = datetime.fromisoformat(watermark) if watermark else None
        batches = staging.staged_batches(stage)
        plans, alerts = plan_flushes(moment, batches, {b.table: mark for b in batches}, schedule)
        click.echo(json.dumps({"now": moment.isoformat(), "flush": [p.__dict__ for p in plans],
                               "alerts": [a.__dict__ for a in alerts]}, ensure_ascii=False, indent=2))
        return
    if not table_name or not batch:
        raise click.UsageError("--table and --batch are required (or use --plan)")
    forced = None
    if force:
        if not operator or not reason:
            raise click.UsageError("--force needs --operator and --reason (they go into the ledger)")
        forced = Forced(operator, reason)
    try:
        table = catalog_for(settings.paths).table(table_name)
    except KeyError as exc:
        raise click.ClickException(exc.args[0]) from None
    front = _connect(settings.connections.frontend_dsn, "front-end")
    ensure_frontend(front, settings.paths.frontend_sql / "frontend.sql")
    logging.basicConfig(level=logging.INFO)
    for done in recover(stage, front):
        click.echo(f"recovered {done.table} {done.batch} report_datetime={done.report_datetime}")
    try:
        result = flush_batch(stage, front, table, batch, moment, schedule, forced=forced)
    except WindowClosed as exc:
        raise click.ClickException(f"refused by the delivery window: {exc} (operators may use --force)") from None
    click.echo(json.dumps({"table": result.table, "batch": result.batch, "outcome": result.outcome,
                           "kind": result.kind, "rows": result.row_count,
                           "report_datetime": result.report_datetime.isoformat() if result.report_datetime else None},
                          ensure_ascii=False))
