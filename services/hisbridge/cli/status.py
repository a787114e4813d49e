"""`hisbridge status`: one operator view — stack, connectors, consumer lag, staging, ledger, quarantine.

Every section reads through the same settings as the worker (hisbridge.settings, HISBRIDGE_* variables),
and a section whose service is down says so instead of failing the whole command. Nothing here prints an
identity value: staging and ledger are shown as counts, quarantine as a count per topic.
"""
from __future__ import annotations

from typing import Callable

import click
from hisbridge.cli.common import pass_settings
from hisbridge.settings import Settings


def _section(title: str, body: Callable[[], list[str]]) -> None:
    click.echo(f"== {title}")
    try:
        lines = body()
    except Exception as exc:  # noqa: BLE001 — a down service is a status, not a crash
        lines = [f"unavailable: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ''}"]
    for line in lines or ["(nothing)"]:
        click.echo(f"  {line}")


def stack_lines(settings: Settings) -> list[str]:
    import devstack
    return [f"{s.name:<12} {'running' if s.running else 'stopped':<8} port {s.port:<6} pid {s.pid or '-'}"
            for _, s in devstack.status(settings)]


def connector_lines(settings: Settings) -> list[str]:
    from hisbridge.ops import connectors
    client = connectors.ConnectClient(settings.connections.connect_url)
    out = []
    for name in sorted(client.names()):
        ok, failure = connectors.running_or_failure(client.status(name))
        out.append(f"{name}: {'RUNNING' if ok else failure or 'not running'}")
    return out


def lag_lines(bootstrap: str, show_all: bool) -> list[str]:
    from hisbridge.ops.lag import lag_by_topic, partition_lags
    from kafka.admin import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="hisbridge-status",
                             request_timeout_ms=10000)
    try:
        states = {g["group_id"]: g.get("group_state") or "?" for g in admin.list_groups()}
        groups = sorted(g for g in states if not g.startswith("connect-"))   # Connect's own sink groups
        lag = lag_by_topic(partition_lags(admin, groups))
    finally:
        admin.close()
    out = []
    for group in groups:
        topics = lag.get(group, {})
        total = sum(topics.values())
        if not show_all and total == 0 and states[group] == "Empty":
            continue   # a finished run's group (tests, old demo runs): --all-topics lists it
        out.append(f"{group} ({states[group]}): lag {total}")
        for topic, n in sorted(topics.items()):
            if n or show_all:
                out.append(f"    {topic}: {n}")
    return out


def _fetch(conn, sql: str, params: tuple = ()) -> list[tuple]:
    with conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def _read(dsn: str, relation: str, *reads: Callable) -> list | None:
    """Each read's result (a function of the connection), or None while `relation` does not exist yet
    (nothing has written there)."""
    import psycopg2
    conn = psycopg2.connect(dsn, connect_timeout=5)
    try:
        if _fetch(conn, "SELECT to_regclass(%s)", (relation,))[0][0] is None:
            return None
        return [read(conn) for read in reads]
    finally:
        conn.close()


def staging_lines(dsn: str, limit: int) -> list[str]:
    from hisbridge.delivery import staging
    found = _read(dsn, "hisbridge.staged", lambda conn: staging.batch_counts(conn, limit=limit),
                  lambda conn: _fetch(conn, "SELECT connector, min(commit_ms) FROM hisbridge.progress "
                                            "GROUP BY connector ORDER BY connector"))
    if found is None:
        return ["no staging schema yet (the sink has not run)"]
    rows, marks = found
    from hisbridge.runtime.watermark import from_ms
    out = [f"{'table':<10} {'batch':<10} {'staged':>7} {'pending':>7} {'flushed':>7} {'revoked':>7}"]
    out += [f"{r.table:<10} {r.batch:<10} {r.staged:>7} {r.pending:>7} {r.flushed:>7} {r.revoked:>7}" for r in rows]
    from hisbridge.clock import SHANGHAI
    out += [f"watermark {c}: {from_ms(ms).astimezone(SHANGHAI).isoformat(timespec='seconds')} (min over core partitions)"
            for c, ms in marks]
    return out


def ledger_lines(dsn: str, limit: int) -> list[str]:
    found = _read(dsn, "hisbridge.ledger",
                  lambda conn: _fetch(conn, """SELECT tbl, batch, report_datetime, row_count, kind, written_at
                                               FROM hisbridge.ledger ORDER BY written_at DESC, tbl LIMIT %s""", (limit,)))
    if found is None:
        return ["no ledger yet (nothing flushed)"]
    rows, = found
    return [f"{t:<10} {b:<10} report_datetime {r}  {n:>7} rows  {k}" for t, b, r, n, k, _ in rows]


def quarantine_lines(bootstrap: str) -> list[str]:
    """Messages on every `<prefix>.quarantine` topic (end − start offsets: entries, not distinct records)."""
    from kafka import TopicPartition
    from kafka.admin import KafkaAdminClient, OffsetSpec
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="hisbridge-status")
    try:
        topics = sorted(t for t in admin.list_topics() if t.endswith(".quarantine"))
        out = []
        for topic in topics:
            parts = admin.describe_topics([topic])[0]["partitions"]
            tps = [TopicPartition(topic, p["partition_index"]) for p in parts]
            end = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in tps})
            start = admin.list_partition_offsets({tp: OffsetSpec.EARLIEST for tp in tps})
            out.append(f"{topic}: {sum(end[tp].offset - start[tp].offset for tp in tps)} entries")
        return out or ["no quarantine topic yet"]
    finally:
        admin.close()


def workbench_lines(settings: Settings) -> list[str]:
    """Open quarantine by rule and table, records held for a reference row (and the oldest), replays in flight."""
    from hisbridge.clock import SHANGHAI
    from hisbridge.delivery import quarantine, replay
    from hisbridge.ops.replay import held_waiting
    from hisbridge.runtime.watermark import from_ms
    found = _read(settings.connections.staging_dsn, "hisbridge.quarantine", quarantine.counts, replay.in_flight)
    counts, flying = found if found is not None else ([], [])
    out = [f"open {rule} {table}: {n}" for rule, table, _, n in counts] or ["no open quarantine entries"]
    held, given_up, oldest = held_waiting(settings.connections.kafka_bootstrap, settings.worker.app_id)
    since = from_ms(oldest).astimezone(SHANGHAI).isoformat(timespec="seconds") if oldest else "-"
    out.append(f"held for a reference row: {held} ({given_up} already quarantined), oldest since {since}")
    out += [f"replay {r.id} {r.kind} by {r.operator}: {r.sent} sent, requested "
            f"{r.requested_at.astimezone(SHANGHAI).isoformat(timespec='seconds')} ({r.reason})" for r in flying]
    return out


@click.command("status")
@click.option("--batches", default=20, show_default=True, help="staging rows to show (newest batches first)")
@click.option("--ledger", "ledger_rows", default=10, show_default=True, help="last ledger rows to show")
@click.option("--all-topics", is_flag=True, help="list idle groups and topics with zero lag too")
@pass_settings
def cli(settings: Settings, batches: int, ledger_rows: int, all_topics: bool) -> None:
    """Operator view: stack, connectors, consumer lag, staging per table and batch, ledger, quarantine."""
    c = settings.connections
    _section("stack", lambda: stack_lines(settings))
    _section(f"connectors ({c.connect_url})", lambda: connector_lines(settings))
    _section(f"consumer lag ({c.kafka_bootstrap})", lambda: lag_lines(c.kafka_bootstrap, all_topics))
    _section("staging (hospital side): rows per table and batch", lambda: staging_lines(c.staging_dsn, batches))
    _section("front-end ledger: last flushes", lambda: ledger_lines(c.frontend_dsn, ledger_rows))
    _section("quarantine", lambda: quarantine_lines(c.kafka_bootstrap))
    _section("quarantine entries, held records, replays", lambda: workbench_lines(settings))
