"""What every command shares: the settings the `hisbridge` group resolved once (`pass_settings`)."""
from __future__ import annotations

import click
from hisbridge.settings import Settings, load_settings

pass_settings = click.make_pass_decorator(Settings)


def current_settings() -> Settings:
    """The group's settings; a command run on its own (a CliRunner test) resolves them itself."""
    ctx = click.get_current_context(silent=True)
    found = ctx.find_object(Settings) if ctx is not None else None
    return found if found is not None else load_settings()
