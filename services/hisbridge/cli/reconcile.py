"""`hisbridge reconcile`: the HIS ↔ staging ↔ ledger ↔ front-end ↔ quarantine for a batch, key by key (or, for
the simulated HIS, against what the simulator says it holds). Exit status 1 when anything does not reconcile."""
from __future__ import annotations

from datetime import date, datetime, time

import click
from hisbridge.cli.common import (batch_name, cadence_of_batch, catalog_table,
                                  command, pass_settings)
from hisbridge.delivery import ledger
from hisbridge.messages import EXIT_CHECK_FAILED, OperatorError, text
from hisbridge.ops import reconcile
from hisbridge.ops.reach import connect_postgres, require_kafka
from hisbridge.settings import Settings
from hisbridge.sim import expectations


@command("reconcile", help="reconcile.help")
@click.option("--batch", "batch", required=True, help="reconcile.batch")
@click.option("--table", "tables", multiple=True, help="reconcile.table")
@click.option("--show", type=int, default=20, show_default=True, help="reconcile.show")
@click.option("--sim-seed", type=int, default=None, help="reconcile.sim_seed")
@click.option("--sim-visits", type=int, default=1000, show_default=True, help="reconcile.sim_visits")
@click.option("--sim-bad-share", type=float, default=0.02, show_default=True, help="reconcile.sim_bad_share")
@click.option("--sim-until", type=click.Choice(["18", "22"]), default="22", show_default=True,
              help="reconcile.sim_until")
@pass_settings
def cli(settings: Settings, batch: str, tables: tuple[str, ...], show: int, sim_seed: int | None, sim_visits: int,
        sim_bad_share: float, sim_until: str) -> None:
    from hisbridge.catalog import catalog_for
    from hisbridge.chain.mapping import load_mapping
    catalog = catalog_for(settings.paths)
    cadence = cadence_of_batch(batch)
    chosen = [catalog_table(catalog, name) for name in tables]
    for table in chosen:
        batch_name(batch, table.cadence, table.name)
    names = [t.name for t in chosen] or sorted(n for n, t in catalog.tables.items() if t.cadence == cadence)
    mapping = load_mapping(catalog, settings.paths.mapping, settings.org)
    expected = _sim_expected(catalog, mapping, batch, sim_seed, sim_visits, sim_bad_share, int(sim_until)) \
        if sim_seed is not None else None
    c = settings.connections
    require_kafka(c.kafka_bootstrap)
    front = connect_postgres(c.frontend_dsn, "HISBRIDGE_FRONTEND_DSN")
    stage = connect_postgres(c.staging_dsn, "HISBRIDGE_STAGING_DSN")
    # before the first flush neither schema exists: what the worker would create (idempotent), so an empty
    # delivery reconciles against the HIS instead of failing on a missing ledger table
    from hisbridge.delivery import staging
    from hisbridge.delivery.flush import ensure_frontend
    ensure_frontend(front, settings.paths.frontend_sql / "frontend.sql")
    staging.ensure_schema(stage)
    entries = reconcile.open_entries(stage)        # only open entries count
    try:
        if expected is not None:
            reports = [reconcile.reconcile_table(catalog.table(n), batch, expected.get((n, batch), reconcile.Expected()),
                                                 front, stage, ledger.rows(front, n, batch),
                                                 reconcile.quarantine_pairs(entries, n, {batch})) for n in names]
        else:
            reports = _his_reports(settings, catalog, mapping, batch, names, entries, front, stage)
    finally:
        front.close()
        stage.close()
    s = settings.source
    click.echo(text("reconcile.expected_sim", seed=sim_seed) if expected is not None
               else text("reconcile.expected_his", kind=s.kind, address=f"{s.host}:{s.port}", user=s.user))
    for line in reconcile.format_report(reports, show=show):
        click.echo(line)
    unmatched = reconcile.unmatched_entries(entries, catalog.tables)
    if unmatched:
        click.echo(text("reconcile.unmatched", count=len(unmatched), where=", ".join(_where(e) for e in unmatched[:3])))
    failed = [r.table for r in reports if not r.ok]
    if failed:
        raise OperatorError("reconcile.not_ok", exit_code=EXIT_CHECK_FAILED, batch=batch, tables=", ".join(failed))
    click.echo(text("reconcile.ok", batch=batch, count=len(reports)))


def _where(entry) -> str:
    src = entry.source or {}
    return f"{entry.table} {src.get('topic', '?')}[{src.get('partition', '?')}]@{src.get('offset', '?')}"


def _his_reports(settings: Settings, catalog, mapping, batch: str, names: list[str], entries, front, stage):
    """Expected = the HIS itself, read with the CDC role (ops.source_keys); HisConnectionError reaches the
    top-level handler, which names the address."""
    from hisbridge import hisdb
    from hisbridge.ops import source_keys
    his = hisdb.connect(source_keys.cdc_dsn(settings), settings.source.kind)
    try:
        columns = source_keys.read_columns(his, mapping.sources)
        reports = []
        for name in (n for n in names if n in mapping.tables):      # tables this hospital's mapping feeds
            table = catalog.table(name)
            start, end = reconcile.batch_range(table, batch)
            try:
                keys = source_keys.source_keys(his, settings.source.kind, mapping, table, batch, start, end, columns)
            except source_keys.ReconcileSourceError as exc:
                raise OperatorError("reconcile.no_his_query", detail=str(exc)) from None
            reports.append(reconcile.reconcile_with_source(table, batch, keys, front, stage,
                                                           ledger.rows(front, name, batch),
                                                           reconcile.quarantine_triples(entries, name)))
        return reports
    finally:
        his.close()


def _sim_expected(catalog, mapping, batch: str, seed: int, visits: int, bad_share: float, until: int):
    from hisbridge.sim import generate
    if cadence_of_batch(batch) != "daily":
        raise OperatorError("reconcile.sim_daily")
    day = date.fromisoformat(batch)
    activity = generate.activity(seed, generate.batch_window(day)[0], datetime.combine(day, time(until)),
                                 visits, bad_share)
    return expectations.sim_expectations(activity, mapping, catalog, generate.PRIMARY_KEYS)
