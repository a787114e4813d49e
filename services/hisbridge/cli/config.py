"""`hisbridge config show`: every setting as resolved, with where it came from (env / file / default)."""
from __future__ import annotations

import json

import click
from hisbridge.cli.common import group, pass_settings
from hisbridge.settings import Settings, describe


@group("config", help="config.help")
def cli() -> None:
    pass


@cli.command("show", help="config.show")
@click.option("--json", "as_json", is_flag=True, help="config.json")
@pass_settings
def show(settings: Settings, as_json: bool) -> None:
    rows = describe(settings)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    width = max(len(r["key"]) for r in rows)
    for r in rows:
        click.echo(f"{r['key']:<{width}}  {r['value'] or '-'}   [{r['source']}]")
