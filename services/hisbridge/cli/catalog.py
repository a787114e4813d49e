"""`hisbridge catalog …` — show, sample, validate, build, diff, batch. A thin shell over hisbridge.catalog."""
from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import click
from hisbridge.catalog import (Catalog, CatalogError, Table, catalog_for,
                               load_catalog)
from hisbridge.catalog.build import build
from hisbridge.catalog.diff import diff_catalogs, render_diff
from hisbridge.catalog.records import from_json, to_json, to_json_value
from hisbridge.catalog.sample import sample_records
from hisbridge.chain.quality import Reason, check_record
from hisbridge.cli.common import current_settings


def _load(path: str | None = None) -> Catalog:
    try:
        return load_catalog(path) if path else catalog_for(current_settings().paths)
    except CatalogError as exc:
        raise click.ClickException(str(exc)) from None


def _table(catalog: Catalog, name: str) -> Table:
    try:
        return catalog.table(name)
    except KeyError as exc:
        raise click.ClickException(exc.args[0]) from None


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


@click.group("catalog")
def cli() -> None:
    """The catalog: tables, fields, value sets, quality rules and what is generated from them."""


@cli.command("show")
@click.argument("table", required=False)
@click.option("--json", "as_json", is_flag=True, help="machine-readable list of tables")
def show(table: str | None, as_json: bool) -> None:
    """Print the catalog (or one TABLE)."""
    catalog = _load()
    tables = [_table(catalog, table)] if table else list(catalog.tables.values())
    if as_json:
        click.echo(json.dumps([table_summary(t) for t in tables], ensure_ascii=False, indent=2))
        return
    if not table:
        click.echo(f"catalog {catalog.version} ({len(tables)} tables, namespace {catalog.namespace})")
    click.echo("\n\n".join(_render_table(t) for t in tables))


@cli.command("sample")
@click.argument("table")
@click.option("--n", "count", default=1, show_default=True, type=click.IntRange(min=0))
@click.option("--seed", default=0, show_default=True, type=int)
def sample(table: str, count: int, seed: int) -> None:
    """N valid plain records of TABLE as JSON lines."""
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


@cli.command("validate")
@click.argument("table")
@click.option("--report-time", default=None, help="ISO time the records are reported at (default now)")
def validate(table: str, report_time: str | None) -> None:
    """Check plain records (JSON lines on stdin); one {"ok","reasons"} line per record; exit 0."""
    target = _table(_load(), table)
    moment = dt.datetime.fromisoformat(report_time) if report_time else None
    for line in sys.stdin:
        if line.strip():
            click.echo(json.dumps(validate_line(target, line, moment), ensure_ascii=False))


@cli.command("build")
@click.option("--check", is_flag=True, help="write nothing; exit 1 if generated files are out of date")
def build_cmd(check: bool) -> None:
    """Write schemas/avro/<table>.avsc and schemas/frontend/frontend.sql from the catalog."""
    paths = current_settings().paths
    changed = build(_load(), paths.avro, paths.frontend_sql, check=check)
    for path in changed:
        click.echo(f"{'stale' if check else 'wrote'} {path}")
    if check and changed:
        raise SystemExit(1)
    if not changed:
        click.echo("generated files are up to date")


@cli.command("diff")
@click.argument("old", type=click.Path(exists=True, path_type=Path))
@click.argument("new", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def diff(old: Path, new: Path, as_json: bool) -> None:
    """What catalog NEW changes relative to OLD (folders or single files)."""
    result = diff_catalogs(_load(str(old)), _load(str(new)))
    click.echo(json.dumps(result, ensure_ascii=False, indent=2, default=to_json_value) if as_json
               else render_diff(result))


def _moment(text: str) -> dt.date | dt.datetime:
    try:
        return dt.date.fromisoformat(text) if len(text) == 10 else dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO date or date-time") from None


@cli.command("batch")
@click.argument("table")
@click.argument("moment")
def batch(table: str, moment: str) -> None:
    """The batch a record of TABLE with batch-time MOMENT belongs to."""
    from hisbridge.delivery.schedule import batch_for

    target = _table(_load(), table)
    try:
        result = batch_for(target.cadence, _moment(moment))
    except ValueError as exc:  # batching's own errors (BatchError is a ValueError)
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps({"batch": result.name, "window_start": result.window_start.isoformat(),
                           "window_end": result.window_end.isoformat()}, ensure_ascii=False))
