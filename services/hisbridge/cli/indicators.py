"""`hisbridge indicators derive|check`: the evaluation indicators of a month derived from the detail rows
(hisbridge.indicators — definitions as data, one generic evaluator) and compared with the reported rows."""
from __future__ import annotations

import json
import re

import click
from hisbridge.cli.common import group, pass_settings
from hisbridge.indicators import compare as comparing
from hisbridge.indicators import definitions, evaluate, source
from hisbridge.messages import EXIT_CHECK_FAILED, OperatorError, text
from hisbridge.ops.reach import connect_postgres
from hisbridge.settings import Settings

def _month(value: str) -> str:
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value or "") or value < "2022-01":
        raise OperatorError("indicators.bad_month", month=value)
    return value


def load_definitions(settings: Settings) -> definitions.Definitions:
    from hisbridge.catalog import catalog_for
    try:
        return definitions.load(settings.paths.indicators, catalog_for(settings.paths))
    except definitions.DefinitionError as exc:
        raise OperatorError("indicators.bad_definitions", detail=str(exc)) from None


def _connect(settings: Settings, where: str):
    """The source's database, its schema ensured (a fresh deployment answers with zeros, not an error)."""
    from hisbridge.delivery import staging
    from hisbridge.delivery.flush import ensure_frontend
    if where == "delivered":
        conn = connect_postgres(settings.connections.frontend_dsn, "HISBRIDGE_FRONTEND_DSN")
        ensure_frontend(conn, settings.paths.frontend_sql / "frontend.sql")
    else:
        conn = connect_postgres(settings.connections.staging_dsn, "HISBRIDGE_STAGING_DSN")
        staging.ensure_schema(conn)
    return conn


def _fmt(value) -> str:
    return "-" if value is None else str(value)


@group("indicators", help="indicators.help")
def cli() -> None:
    pass


def _month_command(name: str, default_source: str, compute, show):
    """A subcommand over one month: --month, --source (its default), --json; `compute(cursor, definitions,
    month, source)` on the source's database, then `show(result, month, source, as_json)`."""
    @cli.command(name, help=f"indicators.{name}")
    @click.option("--month", required=True, help="indicators.month")
    @click.option("--source", "where", type=click.Choice(source.SOURCES), default=default_source,
                  show_default=True, help="indicators.source")
    @click.option("--json", "as_json", is_flag=True, help="indicators.json")
    @pass_settings
    def run(settings: Settings, month: str, where: str, as_json: bool) -> None:
        month = _month(month)
        defs = load_definitions(settings)
        conn = _connect(settings, where)
        try:
            with conn.cursor() as cur:
                found = compute(cur, defs, month, where)
        finally:
            conn.close()
        show(found, month, where, as_json)
    return run


def derived(cur, defs: definitions.Definitions, month: str, where: str) -> list[evaluate.Derived]:
    """Every defined indicator of the month from the source's detail rows."""
    return evaluate.derive_all(defs.indicators, month, source.detail_rows(cur, defs.indicators, month, where))


def comparisons(cur, defs: definitions.Definitions, month: str, where: str) -> list[comparing.Comparison]:
    """The month's reported rows of every monthly evaluation table against the derived figures."""
    figures = derived(cur, defs, month, where)
    found = []
    for table, period_field in defs.periods.items():
        found += comparing.compare(table, source.reported_rows(cur, table, period_field, month, where), defs, figures)
    return found


def _show_derived(found: list[evaluate.Derived], month: str, where: str, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"month": month, "source": where, "indicators": [d.as_dict() for d in found]},
                              ensure_ascii=False, indent=2))
        return
    click.echo(f"{month} ({where})")
    click.echo(f"{'code':<9} {'indicator':<24} {'numerator':>12} {'denominator':>12} {'value':>12} unit")
    for d in found:
        if d.why:
            click.echo(f"{_fmt(d.code):<9} {d.name:<24} {'':>12} {'':>12} {'-':>12} {d.unit}  ({d.why})")
        else:
            click.echo(f"{_fmt(d.code):<9} {d.name:<24} {_fmt(d.numerator):>12} {_fmt(d.denominator):>12} "
                       f"{_fmt(d.value):>12} {d.unit}")


def _figures(values) -> str:
    return "/".join(_fmt(comparing.figure(values.get(k))) for k in ("value", "numerator", "denominator"))


def _show_comparisons(found: list[comparing.Comparison], month: str, where: str, as_json: bool) -> None:
    checked = [c for c in found if c.status in (comparing.OK, comparing.MISMATCH)]
    mismatched = [c for c in found if c.status == comparing.MISMATCH]
    if as_json:
        click.echo(json.dumps({"month": month, "source": where, "rows": [c.as_dict() for c in found]},
                              ensure_ascii=False, indent=2))
    else:
        click.echo(f"{'table':<7} {'code':<9} {'indicator':<24} {'status':<13} {'reported value/num/den':<30} "
                   "derived value/num/den")
        for c in found:
            click.echo(f"{c.table:<7} {c.code:<9} {c.name:<24} {c.status:<13} {_figures(c.reported):<30} "
                       f"{_figures(c.derived) if c.derived else '-'}")
        click.echo(text("indicators.summary", month=month, checked=len(checked), mismatched=len(mismatched)))
    if mismatched:
        raise SystemExit(EXIT_CHECK_FAILED)


derive_cmd = _month_command("derive", "delivered", derived, _show_derived)
check_cmd = _month_command("check", "staged", comparisons, _show_comparisons)
