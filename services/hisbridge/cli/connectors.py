"""`hisbridge connectors apply|status|delete|render`: Debezium connectors through the Connect REST API."""
from __future__ import annotations

import json

import click

from hisbridge import config, connectors


def default_tables() -> str:
    # The source mapping will provide the captured tables; until then they come from the environment.
    return config.env_str("HISBRIDGE_CAPTURE_TABLES", "")


def spec_options(func):
    options = [
        click.option("--name", default=lambda: config.env_str("HISBRIDGE_CONNECTOR_NAME", "his-postgres"),
                     show_default="his-postgres", help="connector name (also names slot and publication)"),
        click.option("--kind", type=click.Choice(["postgres", "mariadb", "mysql"]),
                     default=lambda: config.env_str("HISBRIDGE_HIS_KIND", "postgres"), show_default="postgres",
                     help="HIS database kind = template connectors/his-<kind>.json"),
        click.option("--tables", default=default_tables, show_default="$HISBRIDGE_CAPTURE_TABLES",
                     help="comma-separated schema.table list to capture"),
        click.option("--heartbeat-ms", type=int, default=lambda: config.env_int("HISBRIDGE_HEARTBEAT_MS", 10000),
                     show_default="10000"),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def to_spec(name: str, kind: str, tables: str, heartbeat_ms: int) -> connectors.ConnectorSpec:
    listed = tuple(t.strip() for t in tables.split(",") if t.strip())
    if not listed:
        raise click.UsageError("no tables to capture: pass --tables schema.table,... or set HISBRIDGE_CAPTURE_TABLES")
    return connectors.ConnectorSpec(name, kind, listed, heartbeat_ms)


@click.group("connectors")
def cli() -> None:
    """Debezium source connectors on Kafka Connect."""


@cli.command()
@spec_options
@click.option("--prepare/--no-prepare", default=True,
              help="(PostgreSQL) hand the tables to the capture group and set REPLICA IDENTITY FULL first")
@click.option("--timeout", type=float, default=90.0, show_default=True, help="seconds to wait for RUNNING")
def apply(name: str, kind: str, tables: str, heartbeat_ms: int, prepare: bool, timeout: float) -> None:
    """Create or update the connector and wait until connector and task are RUNNING."""
    try:
        outcome = connectors.apply(to_spec(name, kind, tables, heartbeat_ms), timeout, prepare)
    except (connectors.ConnectorError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"connector {name}: {outcome}, RUNNING")


@cli.command()
@click.argument("name", required=False)
def status(name: str | None) -> None:
    """Show the state of one or all connectors."""
    try:
        names = [name] if name else connectors.connect_request("GET", "/connectors")[1]
        for each in names:
            ok, failure = connectors.running_or_failure(connectors.connector_status(each))
            click.echo(f"{each}: {'RUNNING' if ok else failure or 'not running'}")
    except connectors.ConnectorError as exc:
        raise click.ClickException(str(exc)) from exc


@cli.command()
@click.argument("name")
def delete(name: str) -> None:
    """Delete a connector (its replication slot stays; drop it in the HIS when retiring it)."""
    try:
        click.echo(f"connector {name}: {'deleted' if connectors.delete(name) else 'did not exist'}")
    except connectors.ConnectorError as exc:
        raise click.ClickException(str(exc)) from exc


@cli.command()
@spec_options
def render(name: str, kind: str, tables: str, heartbeat_ms: int) -> None:
    """Print the configuration `apply` would PUT (the password is a file reference)."""
    spec = to_spec(name, kind, tables, heartbeat_ms)
    template = json.loads(connectors.template_path(kind).read_text(encoding="utf-8"))
    reference = connectors.password_reference(connectors.secret_file(name))
    click.echo(json.dumps(connectors.render(template, connectors.template_values(spec, reference)), indent=2))
