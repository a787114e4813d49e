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
                    "reconcile", "status", "quarantine", "replay", "city", "indicators")


class Main(Group):
    """The program's group: a command's module is imported when the command is used (or listed), so a module
    run as a process (`python -m hisbridge.cli.worker`) is never imported twice through this package."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._pending = list(_COMMAND_MODULES)

    @property
    def commands(self) -> dict:
        pending = getattr(self, "_pending", [])
        while pending:
            command = importlib.import_module(f"hisbridge.cli.{pending.pop(0)}").cli
            self._commands[command.name] = command
        return self._commands

    @commands.setter
    def commands(self, value: dict) -> None:
        self._commands = value


@click.group("hisbridge", cls=Main, help="cli.help")
@click.version_option(package_name="hisbridge", help="cli.version")
@click.option("--debug", is_flag=True, help="cli.debug")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    ctx.obj = load_settings()



__all__ = ["main", "current_settings", "OperatorError"]
