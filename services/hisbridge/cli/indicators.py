"""`hisbridge indicators derive|check`: the evaluation indicators of a month derived from the detail rows
(hisbridge.indicators — definitions as data, one generic evaluator) and compared with the reported rows."""
from __future__ import annotations

import json
import re

import click
from hisbridge.cli.common import group, pass_settings
from hisbridge.indicators import compare as comparing
from hisbridge.indicators import crosscheck, definitions, evaluate, source
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
        return definitions.load(settings.paths.indicators, definitions.catalog_columns(catalog_for(settings.paths)))
    except definitions.DefinitionError as exc:
        raise OperatorError("indicators.bad_definitions", detail=str(exc)) from None


def _connect(settings: Settings, where: str):
    if where == "delivered":
        return connect_postgres(settings.connections.frontend_dsn, "HISBRIDGE_FRONTEND_DSN")
    return connect_postgres(settings.connections.staging_dsn, "HISBRIDGE_STAGING_DSN")


def _fmt(value) -> str:
    return "-" if value is None else str(value)


@group("indicators", help="indicators.help")
def cli() -> None:
    pass


_month_option = click.option("--month", required=True, help="indicators.month")
_source_option = click.option("--source", "where", type=click.Choice(source.SOURCES), default="delivered",
                              show_default=True, help="indicators.source")
_json_option = click.option("--json", "as_json", is_flag=True, help="indicators.json")


@cli.command("derive", help="indicators.derive")
@_month_option
@_source_option
@_json_option
@pass_settings
def derive(settings: Settings, month: str, where: str, as_json: bool) -> None:
    month = _month(month)
    defs = load_definitions(settings)
    conn = _connect(settings, where)
    try:
        with conn.cursor() as cur:
            rows = source.detail_rows(cur, defs.indicators, month, where)
    finally:
        conn.close()
    derived = evaluate.derive_all(defs.indicators, month, rows)
    if as_json:
        click.echo(json.dumps({"month": month, "source": where, "indicators": [d.as_dict() for d in derived]},
                              ensure_ascii=False, indent=2))
        return
    click.echo(f"{month} ({where})")
    click.echo(f"{'code':<9} {'indicator':<24} {'numerator':>12} {'denominator':>12} {'value':>12} unit")
    for d in derived:
        if d.why:
            click.echo(f"{_fmt(d.code):<9} {d.name:<24} {'':>12} {'':>12} {'-':>12} {d.unit}  ({d.why})")
        else:
            click.echo(f"{_fmt(d.code):<9} {d.name:<24} {_fmt(d.numerator):>12} {_fmt(d.denominator):>12} "
                       f"{_fmt(d.value):>12} {d.unit}")


def comparisons(cur, defs: definitions.Definitions, month: str, where: str) -> list[comparing.Comparison]:
    """The month's reported rows of every monthly evaluation table against the derived figures."""
    derived = evaluate.derive_all(defs.indicators, month, source.detail_rows(cur, defs.indicators, month, where))
    found = []
    for table, period_field in crosscheck.EVAL_TABLES.items():
        found += comparing.compare(table, source.reported_rows(cur, table, period_field, month, where), defs, derived)
    return found


@cli.command("check", help="indicators.check")
@_month_option
@click.option("--source", "where", type=click.Choice(source.SOURCES), default="staged", show_default=True,
              help="indicators.source")
@_json_option
@pass_settings
def check(settings: Settings, month: str, where: str, as_json: bool) -> None:
    month = _month(month)
    defs = load_definitions(settings)
    conn = _connect(settings, where)
    try:
        with conn.cursor() as cur:
            found = comparisons(cur, defs, month, where)
    finally:
        conn.close()
    checked = [c for c in found if c.status in (comparing.OK, comparing.MISMATCH)]
    mismatched = [c for c in found if c.status == comparing.MISMATCH]
    if as_json:
        click.echo(json.dumps({"month": month, "source": where, "rows": [c.as_dict() for c in found]},
                              ensure_ascii=False, indent=2))
    else:
        click.echo(f"{'table':<7} {'code':<9} {'indicator':<24} {'status':<13} {'reported value/num/den':<30} derived value/num/den")
        for c in found:
            rep = "/".join(_fmt(comparing.figure(c.reported.get(k))) for k in ("value", "numerator", "denominator"))
            der = "/".join(_fmt(comparing.figure(c.derived.get(k))) for k in ("value", "numerator", "denominator")) \
                if c.derived else "-"
            click.echo(f"{c.table:<7} {c.code:<9} {c.name:<24} {c.status:<13} {rep:<30} {der}")
        click.echo(text("indicators.summary", month=month, checked=len(checked), mismatched=len(mismatched)))
    if mismatched:
        raise SystemExit(EXIT_CHECK_FAILED)
