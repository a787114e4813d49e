"""`hisbridge` command line: one click group, each concept's commands in its own module. The group resolves
the settings once (hisbridge.settings) and hands them to every command (`cli.common.pass_settings`)."""
from __future__ import annotations

import importlib

import click
from hisbridge.settings import SettingsError, load_settings

# Each module exposes a click group or command named `cli`; kept as data so adding a concept is one line.
_COMMAND_MODULES = ("config", "stack", "connectors", "worker", "catalog", "crypto", "sim", "flush", "mappings",
                    "reconcile", "status", "quarantine", "replay")


@click.group()
@click.version_option(package_name="hisbridge")
@click.pass_context
def main(ctx: click.Context) -> None:
    """hisbridge: HIS CDC → national value sets → SM4 → Avro → front-end database."""
    try:
        ctx.obj = load_settings()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


for _name in _COMMAND_MODULES:
    main.add_command(importlib.import_module(f"hisbridge.cli.{_name}").cli)
