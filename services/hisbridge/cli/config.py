"""`hisbridge config show`: every setting as resolved, with where it came from (env / file / default)."""
from __future__ import annotations

import json

import click
from hisbridge.cli.common import pass_settings
from hisbridge.settings import Settings, describe


@click.group("config")
def cli() -> None:
    """The resolved settings (environment over the settings file over defaults)."""


@cli.command("show")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per setting")
@pass_settings
def show(settings: Settings, as_json: bool) -> None:
    """Print every setting, its value (secrets masked) and its source."""
    rows = describe(settings)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    width = max(len(r["key"]) for r in rows)
    for r in rows:
        click.echo(f"{r['key']:<{width}}  {r['value'] or '-'}   [{r['source']}]")
