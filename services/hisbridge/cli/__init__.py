"""`hisbridge` command line: one click group, each concept's commands in its own module. The group resolves
the settings once (hisbridge.settings) and hands them to every command (`cli.common.pass_settings`).

Errors: a command raises `messages.OperatorError` (or lets a known library error through: cli.errors
translates it); `cli.common.Command.main` prints it as one line per language on stderr and exits with its code — 2 for
usage, configuration or an unreachable service, 1 for a failed check. Never a traceback, unless the operator
asks with `hisbridge --debug …`.
"""
from __future__ import annotations

import importlib

import click
from hisbridge.cli.common import Group, current_settings
from hisbridge.messages import OperatorError
from hisbridge.settings import load_settings

# Each module exposes a click group or command named `cli`; kept as data so adding a concept is one line.
_COMMAND_MODULES = ("config", "stack", "connectors", "worker", "catalog", "crypto", "sim", "flush", "mappings",
                    "reconcile", "status")


@click.group(cls=Group, help="cli.help")
@click.version_option(package_name="hisbridge", help="cli.version")
@click.option("--debug", is_flag=True, help="cli.debug")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    ctx.obj = load_settings()


for _name in _COMMAND_MODULES:
    main.add_command(importlib.import_module(f"hisbridge.cli.{_name}").cli)

__all__ = ["main", "current_settings", "OperatorError"]
