"""`hisbridge connectors apply|status|delete|render`: Debezium connectors through the Connect REST API."""
from __future__ import annotations

import json

import click
from hisbridge.cli.common import pass_settings
from hisbridge.ops import connectors
from hisbridge.settings import Settings


def spec_options(func):
    options = [
        click.option("--name", default=None, help="connector name (also names slot and publication) "
                                                  "[default: source.connector, HISBRIDGE_CONNECTOR_NAME]"),
        click.option("--kind", type=click.Choice(["postgres", "mariadb", "mysql"]), default=None,
                     help="HIS database kind = template connectors/his-<kind>.json [default: source.kind]"),
        click.option("--tables", default=None, help="comma-separated schema.table list to capture "
                                                    "[default: HISBRIDGE_CAPTURE_TABLES]"),
        click.option("--heartbeat-ms", type=int, default=None, help="[default: source.heartbeat_ms]"),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def to_spec(settings: Settings, name: str | None, kind: str | None, tables: str | None,
            heartbeat_ms: int | None) -> connectors.ConnectorSpec:
    source = settings.source
    listed = tuple(t.strip() for t in tables.split(",") if t.strip()) if tables else source.capture_tables
    if not listed:
        raise click.UsageError("no tables to capture: pass --tables schema.table,... or set HISBRIDGE_CAPTURE_TABLES")
    return connectors.ConnectorSpec(name or source.connector, kind or source.kind, listed,
                                    heartbeat_ms if heartbeat_ms is not None else source.heartbeat_ms)


@click.group("connectors")
def cli() -> None:
    """Debezium source connectors on Kafka Connect."""


@cli.command()
@spec_options
@click.option("--prepare/--no-prepare", default=True,
              help="prepare the HIS first: PostgreSQL hands the tables to the capture group and sets REPLICA "
                   "IDENTITY FULL; MariaDB/MySQL checks the server time zone and grants SELECT on the tables")
@click.option("--timeout", type=float, default=90.0, show_default=True, help="seconds to wait for RUNNING")
@pass_settings
def apply(settings: Settings, name, kind, tables, heartbeat_ms, prepare: bool, timeout: float) -> None:
    """Create or update the connector and wait until connector and task are RUNNING."""
    spec = to_spec(settings, name, kind, tables, heartbeat_ms)
    try:
        outcome = connectors.apply(settings, spec, timeout, prepare)
    except (connectors.ConnectorError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"connector {spec.name}: {outcome}, RUNNING")


@cli.command()
@click.argument("name", required=False)
@pass_settings
def status(settings: Settings, name: str | None) -> None:
    """Show the state of one or all connectors."""
    client = connectors.ConnectClient(settings.connections.connect_url)
    try:
        for each in [name] if name else client.names():
            ok, failure = connectors.running_or_failure(client.status(each))
            click.echo(f"{each}: {'RUNNING' if ok else failure or 'not running'}")
    except connectors.ConnectorError as exc:
        raise click.ClickException(str(exc)) from exc


@cli.command()
@click.argument("name")
@pass_settings
def delete(settings: Settings, name: str) -> None:
    """Delete a connector (its replication slot stays; drop it in the HIS when retiring it)."""
    try:
        click.echo(f"connector {name}: {'deleted' if connectors.delete(settings, name) else 'did not exist'}")
    except connectors.ConnectorError as exc:
        raise click.ClickException(str(exc)) from exc


@cli.command()
@spec_options
@pass_settings
def render(settings: Settings, name, kind, tables, heartbeat_ms) -> None:
    """Print the configuration `apply` would PUT (the password is a file reference)."""
    spec = to_spec(settings, name, kind, tables, heartbeat_ms)
    click.echo(json.dumps(connectors.desired_config(settings, spec), indent=2))
