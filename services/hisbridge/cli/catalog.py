"""`hisbridge catalog …` — show, sample, validate, build, diff, migrate-frontend, batch. A thin shell over
hisbridge.catalog (and delivery.migrate for the front-end's tables)."""
from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import click
from hisbridge.catalog import (Catalog, Table, catalog_for,
                               load_catalog)
from hisbridge.catalog.build import build
from hisbridge.catalog.ddl import FrontendMigration
from hisbridge.catalog.diff import diff_catalogs, render_diff
from hisbridge.catalog.records import from_json, to_json, to_json_value
from hisbridge.catalog.sample import sample_records
from hisbridge.chain.quality import Reason, check_record
from hisbridge.cli.common import catalog_table, current_settings, group
from hisbridge.clock import local_text
from hisbridge.messages import EXIT_CHECK_FAILED, OperatorError, text


def _load(path: str | None = None) -> Catalog:
    return load_catalog(path) if path else catalog_for(current_settings().paths)


def _table(catalog: Catalog, name: str) -> Table:
    return catalog_table(catalog, name)


def table_summary(table: Table) -> dict[str, Any]:
    return {
        "name": table.name, "title": table.title, "family": table.family, "cadence": table.cadence,
        "batch_time": table.batch_time, "key": list(table.key), "parent": table.parent,
        "encrypted_fields": list(table.encrypted_fields),
        "fields": [{"name": f.name, "title": f.title, "type": f.type, "required": f.required,
                    "valueset": f.valueset, "encrypt": f.encrypt} for f in table.fields],
    }


def _render_table(table: Table) -> str:
    head = (f"{table.name}  {table.title}  [{table.family} · {table.cadence} · batch by {table.batch_time} · "
            f"key {'+'.join(table.key)}]")
    rows = [f"  {f.name:<16} {f.type:<14} {'必填' if f.required else '    '} "
            f"{'加密' if f.encrypt else '    '} {f.valueset or '':<24} {f.title}" for f in table.fields]
    return "\n".join([head, *rows])


@group("catalog", help="catalog.help")
def cli() -> None:
    pass


@cli.command("show", help="catalog.show")
@click.argument("table", required=False)
@click.option("--json", "as_json", is_flag=True, help="catalog.json")
def show(table: str | None, as_json: bool) -> None:
    catalog = _load()
    tables = [_table(catalog, table)] if table else list(catalog.tables.values())
    if as_json:
        click.echo(json.dumps([table_summary(t) for t in tables], ensure_ascii=False, indent=2))
        return
    if not table:
        click.echo(f"catalog {catalog.version} ({len(tables)} tables, namespace {catalog.namespace})")
    click.echo("\n\n".join(_render_table(t) for t in tables))


@cli.command("sample", help="catalog.sample")
@click.argument("table")
@click.option("--n", "count", default=1, show_default=True, type=click.IntRange(min=0), help="catalog.count")
@click.option("--seed", default=0, show_default=True, type=int, help="catalog.seed")
def sample(table: str, count: int, seed: int) -> None:
    target = _table(_load(), table)
    for record in sample_records(target, count, seed):
        click.echo(json.dumps(to_json(record), ensure_ascii=False))


def validate_line(table: Table, line: str, report_time: dt.datetime | None = None) -> dict[str, Any]:
    """One JSON line → {"ok", "reasons"}; a line that is not JSON is a reason, not an error."""
    try:
        data = json.loads(line)
    except ValueError as exc:
        reasons = [Reason("malformed_line", None, f"不是合法的 JSON（{exc.msg}）", f"not valid JSON ({exc.msg})")]
    else:
        record = from_json(table, data) if isinstance(data, dict) else data
        reasons = check_record(table, record, report_time=report_time)
    return {"ok": not reasons, "reasons": [r.as_dict() for r in reasons]}


@cli.command("validate", help="catalog.validate")
@click.argument("table")
@click.option("--report-time", default=None, help="catalog.report_time")
def validate(table: str, report_time: str | None) -> None:
    from hisbridge.cli.flush import parse_moment
    target = _table(_load(), table)
    moment = parse_moment(report_time, "--report-time") if report_time else None
    for line in sys.stdin:
        if line.strip():
            click.echo(json.dumps(validate_line(target, line, moment), ensure_ascii=False))


@cli.command("build", help="catalog.build")
@click.option("--check", is_flag=True, help="catalog.check")
def build_cmd(check: bool) -> None:
    paths = current_settings().paths
    changed = build(_load(), paths.avro, paths.frontend_sql, check=check)
    for path in changed:
        click.echo(text("catalog.stale" if check else "catalog.wrote", path=path))
    if check and changed:
        raise OperatorError("catalog.out_of_date", exit_code=EXIT_CHECK_FAILED, count=len(changed))
    if not changed:
        click.echo(text("catalog.up_to_date"))


@cli.command("diff", help="catalog.diff")
@click.argument("old", type=click.Path(exists=True, path_type=Path))
@click.argument("new", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="catalog.json")
def diff(old: Path, new: Path, as_json: bool) -> None:
    result = diff_catalogs(_load(str(old)), _load(str(new)))
    click.echo(json.dumps(result, ensure_ascii=False, indent=2, default=to_json_value) if as_json
               else render_diff(result))


@cli.command("migrate-frontend", help="catalog.migrate_frontend")
@click.option("--apply", "apply_", is_flag=True, help="catalog.migrate_apply")
def migrate_frontend(apply_: bool) -> None:
    from hisbridge.delivery import migrate
    from hisbridge.ops.reach import connect_postgres
    settings = current_settings()
    front = connect_postgres(settings.connections.frontend_dsn, "HISBRIDGE_FRONTEND_DSN")
    try:
        migrations = migrate.plan(front, _load().tables.values())
        for m in migrations:
            _say_migration(m)
        needed = [m for m in migrations if m.needed]
        if any(m.key_columns for m in needed):
            raise OperatorError("catalog.migrate_key", exit_code=EXIT_CHECK_FAILED,
                                tables=", ".join(m.table for m in needed if m.key_columns))
        if not needed:
            click.echo(text("catalog.migrate_none"))
        elif apply_:
            click.echo(text("catalog.migrate_applied", columns=migrate.apply(front, needed), tables=len(needed)))
        else:
            raise OperatorError("catalog.migrate_pending", exit_code=EXIT_CHECK_FAILED, tables=len(needed))
    finally:
        front.close()


def _say_migration(m: FrontendMigration) -> None:
    if m.missing_table:
        click.echo(text("catalog.migrate_missing_table", table=m.table))
    for statement in m.statements:
        click.echo(statement)
    if m.left_nullable:
        click.echo(text("catalog.migrate_nullable", table=m.table, columns=", ".join(m.left_nullable)))
    if m.extra:
        click.echo(text("catalog.migrate_extra", table=m.table, columns=", ".join(m.extra)))


def _moment(value: str) -> dt.date | dt.datetime:
    try:
        return dt.date.fromisoformat(value) if len(value) == 10 else dt.datetime.fromisoformat(value)
    except ValueError:
        raise OperatorError("moment.invalid", option="MOMENT", value=value, example="2026-12-01 17:59:59") from None


@cli.command("batch", help="catalog.batch")
@click.argument("table")
@click.argument("moment")
def batch(table: str, moment: str) -> None:
    from hisbridge.delivery.schedule import batch_for

    target = _table(_load(), table)
    try:
        result = batch_for(target.cadence, _moment(moment))
    except ValueError as exc:  # batching's own errors (BatchError is a ValueError)
        raise OperatorError("catalog.batch_error", detail=str(exc)) from None
    click.echo(json.dumps({"batch": result.name, "window_start": local_text(result.window_start),
                           "window_end": local_text(result.window_end)}, ensure_ascii=False))
