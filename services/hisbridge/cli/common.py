"""What every command shares: the settings the `hisbridge` group resolved once (`pass_settings`), help texts
from the message catalogue (`command`, `group`: help= and an option's help= are message ids, rendered in
display.lang when help is shown), and the catalogue lookups every command needs (`catalog_table`, `batch_name`).
"""
from __future__ import annotations

import difflib
import re
import sys
import traceback
from typing import Any, Callable, Sequence

import click
from hisbridge.messages import CATALOGUE, OperatorError, cadence_name, help_text
from hisbridge.settings import Settings, load_settings

pass_settings = click.make_pass_decorator(Settings)


def current_settings() -> Settings:
    """The group's settings; a command run on its own (a CliRunner test) resolves them itself."""
    ctx = click.get_current_context(silent=True)
    found = ctx.find_object(Settings) if ctx is not None else None
    return found if found is not None else load_settings()


def _debug_requested(args: Sequence[str]) -> bool:
    """--debug among the group's own options (before the command name): known even when parsing fails."""
    for arg in args:
        if not arg.startswith("-"):
            return False
        if arg == "--debug":
            return True
    return False


def _rendered(source: Any) -> Any:
    return help_text(source) if isinstance(source, str) and source in CATALOGUE else source


class _CatalogueHelp:
    """`help` as a message id, rendered each time it is read (the language is the operator's, not the
    importer's). A data descriptor, so it wins over the instance attribute click assigns."""

    @property
    def help(self) -> Any:
        return _rendered(self.__dict__.get("_help_source"))

    @help.setter
    def help(self, value: Any) -> None:
        self.__dict__["_help_source"] = value


class Option(_CatalogueHelp, click.Option):
    pass


class Argument(click.Argument):
    pass


class Command(_CatalogueHelp, click.Command):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if type(param) is click.Option:    # options made by @click.option: same object, help from the catalogue
                help_source = param.help
                param.__class__ = Option
                param.help = help_source

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """The top-level handler (this command run as the program): any failure → one line per language on
        stderr and its exit code; the traceback only after --debug."""
        from hisbridge.cli.errors import operator_error
        args = list(sys.argv[1:] if args is None else args)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except Exception as exc:  # noqa: BLE001 — every failure ends here, as one or two lines
            if _debug_requested(args):
                traceback.print_exc()
            error = operator_error(exc, prog_name or self.name or "hisbridge")
            click.echo(error.text(), err=True)
            code = error.exit_code
        if standalone_mode:
            sys.exit(code or 0)
        return code

    def get_help_option(self, ctx: click.Context) -> click.Option | None:
        option = super().get_help_option(ctx)
        if option is not None and not isinstance(option, Option):
            option.__class__ = Option
            option.help = "cli.help_option"
        return option

    def get_short_help_str(self, limit: int = 150) -> str:
        """The command list's line: each language's first clause (click would cut both at 45 characters)."""
        source = self.__dict__.get("_help_source")
        if self.short_help or not (isinstance(source, str) and source in CATALOGUE):
            text = self.short_help or self.help or ""
            return text.splitlines()[0] if text else ""
        return help_text(source, clause=True)


class Group(Command, click.Group):
    command_class = Command
    group_class = type      # sub-groups are of this same class


def group(name: str | None = None, **kwargs: Any) -> Callable[[Callable], Group]:
    return click.group(name, cls=Group, **kwargs)


def command(name: str | None = None, **kwargs: Any) -> Callable[[Callable], Command]:
    return click.command(name, cls=Command, **kwargs)


def _hint(name: str, known: list[str]) -> dict[str, str]:
    close = difflib.get_close_matches(name, known, n=1)
    return {"hint": f"（是否要写 {close[0]}？）" if close else "",
            "hint_en": f" (did you mean {close[0]}?)" if close else ""}


def catalog_table(catalog: Any, name: str) -> Any:
    """The catalog table `name`, or the operator error naming the closest one."""
    if name in catalog.tables:
        return catalog.tables[name]
    known = sorted(catalog.tables)
    raise OperatorError("table.unknown", table=name, known=", ".join(known), **_hint(name, known))


_PATTERNS = {"daily": (r"\d{4}-\d{2}-\d{2}", "YYYY-MM-DD", "2026-12-01"), "monthly": (r"\d{4}-\d{2}", "YYYY-MM", "2026-11"),
             "yearly": (r"\d{4}", "YYYY", "2025")}


def batch_name(text: str, cadence: str | None = None, table: str | None = None) -> str:
    """A batch name as the pipeline spells it, checked before it reaches batching (whose errors name
    internals); `cadence`: the one the table is batched by."""
    from hisbridge.delivery.schedule import batch_by_name
    found = next((c for c, (rx, _, _) in _PATTERNS.items() if re.fullmatch(rx, text)), None)
    if found is None:
        raise OperatorError("batch.invalid", batch=text, example=_PATTERNS[cadence or "daily"][2])
    if cadence is not None and found != cadence:
        raise OperatorError("batch.cadence", table=table, cadence=cadence_name(cadence),
                            batch=text, pattern=_PATTERNS[cadence][1])
    try:
        batch_by_name(found, text)
    except ValueError:      # 2026-13-01, 2026-02-30: the right shape, not a day
        raise OperatorError("batch.invalid", batch=text, example=_PATTERNS[found][2]) from None
    return text


def cadence_of_batch(text: str) -> str:
    batch_name(text)
    return next(c for c, (rx, _, _) in _PATTERNS.items() if re.fullmatch(rx, text))
