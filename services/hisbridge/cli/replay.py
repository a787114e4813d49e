"""`hisbridge replay batch --table T --batch D` (a delivered batch sent again, every row with a new
report_datetime in the next window) and `hisbridge replay --from-raw --connector C --since TS` (raw changes
re-run after a mapping fix). Both go through the replay topic (ops.replay) and are ledgered as `replay`
with the operator and the reason (delivery.replay)."""
from __future__ import annotations

from datetime import datetime

import click
from hisbridge.cli.common import group, pass_settings
from hisbridge.cli.quarantine import _connect
from hisbridge.clock import as_shanghai
from hisbridge.messages import OperatorError
from hisbridge.settings import Settings


def _moment(text: str) -> datetime:
    """An ISO moment; without an offset it is Asia/Shanghai wall-clock."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise OperatorError("replay.since_invalid", value=text) from None
    return as_shanghai(moment)


def _topic_prefix(settings: Settings, connector: str) -> str:
    """The connector's topic.prefix (from Connect), the configured one for the configured connector."""
    from hisbridge.ops.connectors import ConnectClient
    try:
        config = ConnectClient(settings.connections.connect_url).current_config(connector)
    except Exception:  # noqa: BLE001 — Connect down: the configured connector is still known
        config = None
    if config and config.get("topic.prefix"):
        return config["topic.prefix"]
    if connector == settings.source.connector:
        return settings.source.topic_prefix
    raise OperatorError("replay.no_connector", connector=connector, url=settings.connections.connect_url)


@group("replay", invoke_without_command=True, help="replay.help")
@click.option("--from-raw", is_flag=True, help="replay.from_raw")
@click.option("--connector", help="replay.connector")
@click.option("--since", help="replay.since")
@click.option("--operator", help="replay.operator")
@click.option("--reason", help="replay.reason")
@click.pass_context
def cli(ctx: click.Context, from_raw: bool, connector, since, operator, reason) -> None:
    if ctx.invoked_subcommand is not None:
        return
    if not from_raw:
        click.echo(ctx.get_help())
        return
    if not (connector and since and operator and reason):
        raise OperatorError("replay.raw_needs")
    settings: Settings = ctx.find_object(Settings)
    from hisbridge.delivery import replay
    from hisbridge.ops.replay import Replayer, ReplaySender, replay_raw
    since_at = _moment(since)
    prefix = _topic_prefix(settings, connector)
    conn = _connect(settings.connections.staging_dsn)
    try:
        rid = replay.request(conn, "raw", operator, reason, {"connector": connector, "since": since_at.isoformat()})
        sender = ReplaySender(settings.connections.kafka_bootstrap, settings.worker.core_prefix)
        try:
            with Replayer(settings, prefix) as replayer:
                outcome = replay_raw(replayer, sender, rid, int(since_at.timestamp() * 1000))
        finally:
            sender.close()
        replay.record_sent(conn, rid, outcome.sent)
    finally:
        conn.close()
    click.echo(f"replay {rid}: {outcome.sent} records to the replay topic (only changed ones are staged again), "
               f"{len(outcome.still_failing)} quarantined")


@cli.command("batch", help="replay.batch")
@click.option("--table", "table_name", required=True, help="replay.table")
@click.option("--batch", required=True, help="replay.batch_name")
@click.option("--operator", required=True, help="replay.operator")
@click.option("--reason", default="province asked for the batch again", show_default=True, help="replay.reason")
@pass_settings
def batch_cmd(settings: Settings, table_name: str, batch: str, operator: str, reason: str) -> None:
    from hisbridge.catalog import catalog_for
    from hisbridge.cli.common import batch_name, catalog_table
    from hisbridge.delivery import ledger, replay
    from hisbridge.ops.replay import ReplaySender
    table = catalog_table(catalog_for(settings.paths), table_name)   # errors before anything is sent
    batch_name(batch, table.cadence, table.name)
    conn = _connect(settings.connections.staging_dsn)
    try:
        if not ledger.rows(conn, table_name, batch):
            raise OperatorError("replay.not_delivered", table=table_name, batch=batch)
        rid = replay.request(conn, "batch", operator, reason, {"table": table_name, "batch": batch})
        sender = ReplaySender(settings.connections.kafka_bootstrap, settings.worker.core_prefix)
        try:
            sender.request_batch(rid, table_name, batch)
        finally:
            sender.close()
        replay.record_sent(conn, rid, 1)
    finally:
        conn.close()
    click.echo(f"replay {rid}: {table_name} batch {batch} requested; it goes out in the next delivery window "
               f"(ledger kind replay, operator {operator})")
