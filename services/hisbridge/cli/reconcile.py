"""`hisbridge reconcile`: staging ↔ ledger ↔ front-end ↔ quarantine for a batch (and, for the simulated HIS,
against what the simulator says the HIS holds). Exit status 1 when anything does not reconcile."""
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
@click.option("--sim-seed", type=int, default=None, help="reconcile.sim_seed")
@click.option("--sim-visits", type=int, default=1000, show_default=True, help="reconcile.sim_visits")
@click.option("--sim-bad-share", type=float, default=0.02, show_default=True, help="reconcile.sim_bad_share")
@click.option("--sim-until", type=click.Choice(["18", "22"]), default="22", show_default=True,
              help="reconcile.sim_until")
@pass_settings
def cli(settings: Settings, batch: str, tables: tuple[str, ...], sim_seed: int | None, sim_visits: int,
        sim_bad_share: float, sim_until: str) -> None:
    from hisbridge.catalog import catalog_for
    catalog = catalog_for(settings.paths)
    cadence = cadence_of_batch(batch)
    chosen = [catalog_table(catalog, name) for name in tables]
    for table in chosen:
        batch_name(batch, table.cadence, table.name)
    names = [t.name for t in chosen] or sorted(n for n, t in catalog.tables.items() if t.cadence == cadence)
    expected = _sim_expected(settings, catalog, batch, sim_seed, sim_visits, sim_bad_share, int(sim_until)) \
        if sim_seed is not None else None
    from hisbridge.contract import quarantine_topic
    c = settings.connections
    require_kafka(c.kafka_bootstrap)
    front = connect_postgres(c.frontend_dsn, "HISBRIDGE_FRONTEND_DSN")
    stage = connect_postgres(c.staging_dsn, "HISBRIDGE_STAGING_DSN")
    entries = reconcile.read_quarantine(c.kafka_bootstrap, quarantine_topic(settings.worker.core_prefix))
    reports = []
    try:
        for name in names:
            table = catalog.table(name)
            quarantined = reconcile.quarantine_pairs(entries, name, {batch})
            want = (expected or {}).get((name, batch))
            if want is None:
                want = reconcile.Expected(frozenset(reconcile.frontend_keys(front, table, batch)),
                                          frozenset(quarantined)) if expected is None else reconcile.Expected()
            reports.append(reconcile.reconcile_table(table, batch, want, front, stage,
                                                     ledger.rows(front, name, batch), quarantined))
    finally:
        front.close()
        stage.close()
    click.echo(text("reconcile.expected_sim", seed=sim_seed) if expected is not None
               else text("reconcile.expected_none"))
    for line in reconcile.format_report(reports):
        click.echo(line)
    failed = [r.table for r in reports if not r.ok]
    if failed:
        raise OperatorError("reconcile.not_ok", exit_code=EXIT_CHECK_FAILED, batch=batch, tables=", ".join(failed))
    click.echo(text("reconcile.ok", batch=batch, count=len(reports)))


def _sim_expected(settings: Settings, catalog, batch: str, seed: int, visits: int, bad_share: float, until: int):
    from hisbridge.chain.mapping import load_mapping
    from hisbridge.sim import generate
    if cadence_of_batch(batch) != "daily":
        raise OperatorError("reconcile.sim_daily")
    day = date.fromisoformat(batch)
    activity = generate.activity(seed, generate.batch_window(day)[0], datetime.combine(day, time(until)),
                                 visits, bad_share)
    return expectations.sim_expectations(activity, load_mapping(catalog, settings.paths.mapping, settings.org), catalog,
                                         generate.PRIMARY_KEYS)
