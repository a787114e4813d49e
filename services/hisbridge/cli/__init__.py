"""`hisbridge` command line: one click group, each concept's commands in its own module."""
from __future__ import annotations

import importlib

import click

# Each module exposes a click group or command named `cli`; kept as data so adding a concept is one line.
_COMMAND_MODULES = ("stack", "connectors", "worker", "catalog", "crypto", "sim", "flush", "mappings", "reconcile", "status")


@click.group()
@click.version_option(package_name="hisbridge")
def main() -> None:
    """hisbridge: HIS CDC → national value sets → SM4 → Avro → front-end database."""


for _name in _COMMAND_MODULES:
    try:
        _module = importlib.import_module(f"hisbridge.cli.{_name}")
    except ModuleNotFoundError as exc:  # a concept not built yet must not break the others
        if exc.name != f"hisbridge.cli.{_name}":
            raise
        continue
    main.add_command(_module.cli)
