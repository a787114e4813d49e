"""`hisbridge flush` — flush one staged (table, batch) to the front-end database.

Without --force the window guard decides (the clock is real time, or the settings' clock/--now for the
demo). --force is the one operator bypass: it needs --operator and --reason, is logged and is ledgered
with kind 'forced'. `hisbridge flush --plan` shows what the planner would flush now. Every time printed is
Asia/Shanghai with its offset.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime

import click
from hisbridge import logs
from hisbridge.catalog import catalog_for
from hisbridge.cli.common import batch_name, catalog_table, command, pass_settings
from hisbridge.clock import clock_for, local_text, wall_text
from hisbridge.delivery import staging
from hisbridge.delivery.flush import (Forced, WindowClosed, ensure_frontend,
                                      flush_batch, plan_flushes, recover)
from hisbridge.delivery.schedule import load_schedule
from hisbridge.messages import EXIT_CHECK_FAILED, OperatorError
from hisbridge.ops.reach import connect_postgres
from hisbridge.settings import Settings

EXAMPLE_MOMENT = "2026-12-01 18:30:00+08:00"


def parse_moment(text: str, option: str) -> datetime:
    """An ISO moment with an offset (space or T between date and time); anything else is a usage error."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise OperatorError("moment.invalid", option=option, value=text, example=EXAMPLE_MOMENT)
    return moment


def _plan(settings: Settings, stage, moment: datetime, watermark: str | None, schedule) -> None:
    mark = parse_moment(watermark, "--watermark") if watermark else None
    batches = staging.staged_batches(stage)
    plans, alerts = plan_flushes(moment, batches, {b.table: mark for b in batches}, schedule)
    click.echo(json.dumps({"now": local_text(moment), "watermark": local_text(mark) if mark else None,
                           "flush": [asdict(p) for p in plans], "alerts": [asdict(a) for a in alerts]},
                          ensure_ascii=False, indent=2))


@command("flush", help="flush.help")
@click.option("--table", "table_name", help="flush.table")
@click.option("--batch", help="flush.batch")
@click.option("--force", is_flag=True, help="flush.force")
@click.option("--operator", help="flush.operator")
@click.option("--reason", help="flush.reason")
@click.option("--now", help="flush.now")
@click.option("--plan", "show_plan", is_flag=True, help="flush.plan")
@click.option("--watermark", help="flush.watermark")
@pass_settings
def cli(settings: Settings, table_name, batch, force, operator, reason, now, show_plan, watermark) -> None:
    schedule = load_schedule(settings.paths.schedule, settings.worker.schedule_mode)
    moment = parse_moment(now, "--now") if now else clock_for(settings.clock).now()
    table = None
    if not show_plan:
        if not table_name or not batch:
            raise OperatorError("flush.needs_target")
        if force and (not operator or not reason):
            raise OperatorError("flush.force_needs_who")
        table = catalog_table(catalog_for(settings.paths), table_name)
        batch_name(batch, table.cadence, table.name)
    stage = connect_postgres(settings.connections.staging_dsn, "HISBRIDGE_STAGING_DSN")
    staging.ensure_schema(stage)
    if show_plan:
        _plan(settings, stage, moment, watermark, schedule)
        return
    front = connect_postgres(settings.connections.frontend_dsn, "HISBRIDGE_FRONTEND_DSN")
    ensure_frontend(front, settings.paths.frontend_sql / "frontend.sql")
    logs.configure(settings.display, click.get_text_stream("stderr"))
    for done in recover(stage, front):
        click.echo(json.dumps({"recovered": done.table, "batch": done.batch,
                               "report_datetime": wall_text(done.report_datetime, "microseconds")}))
    try:
        result = flush_batch(stage, front, table, batch, moment, schedule,
                             forced=Forced(operator, reason) if force else None)
    except WindowClosed as exc:
        raise OperatorError(exc.decision.message_id, exit_code=EXIT_CHECK_FAILED, **exc.decision.params) from None
    click.echo(json.dumps({"table": result.table, "batch": result.batch, "outcome": result.outcome,
                           "kind": result.kind, "rows": result.row_count,
                           "report_datetime": wall_text(result.report_datetime, "microseconds")
                           if result.report_datetime else None}, ensure_ascii=False))
