"""`hisbridge connectors apply|status|delete|render`: Debezium connectors through the Connect REST API.

The tables to capture are the ones the source mapping reads — drivers and reference (lookup) tables —
unless --tables (or HISBRIDGE_CAPTURE_TABLES) names them; `apply` says which tables it added or removed
compared with the running connector.
"""
from __future__ import annotations

import json

import click
from hisbridge.cli.common import group, pass_settings
from hisbridge.messages import OperatorError, text
from hisbridge.ops import connectors
from hisbridge.ops.reach import require_connect
from hisbridge.settings import Settings


def spec_options(func):
    options = [
        click.option("--name", default=None, help="connectors.name"),
        click.option("--kind", type=click.Choice(["postgres", "mariadb", "mysql"]), default=None,
                     help="connectors.kind"),
        click.option("--tables", default=None, help="connectors.tables"),
        click.option("--heartbeat-ms", type=int, default=None, help="connectors.heartbeat"),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def mapped_tables(settings: Settings) -> tuple[str, ...]:
    """Every HIS table the source mapping reads (drivers and lookups)."""
    from hisbridge.catalog import catalog_for
    from hisbridge.chain.identity_mapping import mapping_for_role
    return mapping_for_role(catalog_for(settings.paths), settings).sources


def to_spec(settings: Settings, name: str | None, kind: str | None, tables: str | None,
            heartbeat_ms: int | None) -> connectors.ConnectorSpec:
    source = settings.source
    listed = tuple(t.strip() for t in tables.split(",") if t.strip()) if tables else \
        source.capture_tables or mapped_tables(settings)
    if not listed:
        raise OperatorError("connectors.no_tables")
    return connectors.ConnectorSpec(name or source.connector, kind or source.kind, listed,
                                    heartbeat_ms if heartbeat_ms is not None else source.heartbeat_ms)


def _connector_error(exc: Exception) -> OperatorError:
    return OperatorError("connectors.error", detail=str(exc).strip().splitlines()[0] if str(exc).strip() else
                         type(exc).__name__)


@group("connectors", help="connectors.help")
def cli() -> None:
    pass


@cli.command(help="connectors.apply")
@spec_options
@click.option("--prepare/--no-prepare", default=True, help="connectors.prepare")
@click.option("--timeout", type=float, default=90.0, show_default=True, help="connectors.timeout")
@pass_settings
def apply(settings: Settings, name, kind, tables, heartbeat_ms, prepare: bool, timeout: float) -> None:
    spec = to_spec(settings, name, kind, tables, heartbeat_ms)
    require_connect(settings.connections.connect_url)
    client = connectors.ConnectClient(settings.connections.connect_url)
    try:
        before = connectors.captured_tables(client.current_config(spec.name))
        outcome = connectors.apply(settings, spec, timeout, prepare)
    except (connectors.ConnectorError, RuntimeError) as exc:
        raise _connector_error(exc) from None
    added, removed = connectors.table_changes(before, spec.tables)
    click.echo(text("connectors.applied", name=spec.name, outcome=outcome, count=len(spec.tables),
                    added=", ".join(added) or "-", removed=", ".join(removed) or "-"))


@cli.command(help="connectors.status")
@click.argument("name", required=False)
@pass_settings
def status(settings: Settings, name: str | None) -> None:
    require_connect(settings.connections.connect_url)
    client = connectors.ConnectClient(settings.connections.connect_url)
    try:
        for each in [name] if name else client.names():
            ok, failure = connectors.running_or_failure(client.status(each))
            click.echo(f"{each}: {'RUNNING' if ok else failure or 'not running'}")
    except connectors.ConnectorError as exc:
        raise _connector_error(exc) from None


@cli.command(help="connectors.delete")
@click.argument("name")
@pass_settings
def delete(settings: Settings, name: str) -> None:
    require_connect(settings.connections.connect_url)
    try:
        deleted = connectors.delete(settings, name)
    except connectors.ConnectorError as exc:
        raise _connector_error(exc) from None
    click.echo(text("connectors.deleted" if deleted else "connectors.absent", name=name))


@cli.command(help="connectors.render")
@spec_options
@pass_settings
def render(settings: Settings, name, kind, tables, heartbeat_ms) -> None:
    spec = to_spec(settings, name, kind, tables, heartbeat_ms)
    click.echo(json.dumps(connectors.desired_config(settings, spec), indent=2))
