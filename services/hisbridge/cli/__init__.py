"""`hisbridge` command line: one click group, each concept's commands in its own module. The group resolves
the settings once (hisbridge.settings) and hands them to every command (`cli.common.pass_settings`).

Errors: a command raises `messages.OperatorError` (or lets a known library error through: cli.errors
translates it); `Main.main` prints it as one line per language on stderr and exits with its code — 2 for
usage, configuration or an unreachable service, 1 for a failed check. Never a traceback, unless the operator
asks with `hisbridge --debug …`.
"""
from __future__ import annotations

import importlib
import sys
import traceback
from typing import Any, Sequence

import click
from hisbridge.cli.common import Group, current_settings
from hisbridge.messages import OperatorError
from hisbridge.settings import load_settings

# Each module exposes a click group or command named `cli`; kept as data so adding a concept is one line.
_COMMAND_MODULES = ("config", "stack", "connectors", "worker", "catalog", "crypto", "sim", "flush", "mappings",
                    "reconcile", "status")


def _debug_requested(args: Sequence[str]) -> bool:
    """--debug among the group's own options (before the command name): known even when parsing fails."""
    for arg in args:
        if not arg.startswith("-"):
            return False
        if arg == "--debug":
            return True
    return False


class Main(Group):
    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        from hisbridge.cli.errors import operator_error
        args = list(sys.argv[1:] if args is None else args)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except Exception as exc:  # noqa: BLE001 — every failure ends here, as one or two lines
            if _debug_requested(args):
                traceback.print_exc()
            error = operator_error(exc, prog_name or "hisbridge")
            click.echo(error.text(), err=True)
            code = error.exit_code
        if standalone_mode:
            sys.exit(code or 0)
        return code


@click.group(cls=Main, help="cli.help")
@click.version_option(package_name="hisbridge", help="cli.version")
@click.option("--debug", is_flag=True, help="cli.debug")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    ctx.obj = load_settings()


for _name in _COMMAND_MODULES:
    main.add_command(importlib.import_module(f"hisbridge.cli.{_name}").cli)

__all__ = ["main", "current_settings", "OperatorError"]
