"""`hisbridge reconcile`: staging ↔ ledger ↔ front-end ↔ quarantine for a batch (and, for the simulated HIS,
against what the simulator says the HIS holds). Exit status 1 when anything does not reconcile."""
from __future__ import annotations

from datetime import date, datetime, time

import click
import psycopg2
from hisbridge.cli.common import pass_settings
from hisbridge.delivery import ledger
from hisbridge.ops import reconcile
from hisbridge.settings import Settings
from hisbridge.sim import expectations


@click.command("reconcile")
@click.option("--batch", "batch", required=True, help="batch name: YYYY-MM-DD (daily), YYYY-MM, YYYY")
@click.option("--table", "tables", multiple=True, help="catalog table(s); default: every table with that cadence")
@click.option("--sim-seed", type=int, default=None,
              help="compare with the simulated HIS of this seed (the demo): expected keys and planted defects")
@click.option("--sim-visits", type=int, default=1000, show_default=True)
@click.option("--sim-bad-share", type=float, default=0.02, show_default=True)
@click.option("--sim-until", type=click.Choice(["18", "22"]), default="22", show_default=True,
              help="where the simulated activity stopped on day D (22 = the demo's evening included)")
@pass_settings
def cli(settings: Settings, batch: str, tables: tuple[str, ...], sim_seed: int | None, sim_visits: int,
        sim_bad_share: float, sim_until: str) -> None:
    """Per table: expected, staged, pending, delivered, quarantined; every flush against the front-end.

    Without --sim-seed there is no HIS expectation: what is delivered and quarantined is taken as expected
    and only staging, ledger and front-end are compared."""
    from hisbridge.catalog import catalog_for
    catalog = catalog_for(settings.paths)
    cadence = {10: "daily", 7: "monthly", 4: "yearly"}.get(len(batch))
    if cadence is None:
        raise click.BadParameter("batch must be YYYY-MM-DD, YYYY-MM or YYYY", param_hint="--batch")
    names = list(tables) or sorted(n for n, t in catalog.tables.items() if t.cadence == cadence)
    expected = _sim_expected(settings, catalog, batch, sim_seed, sim_visits, sim_bad_share, int(sim_until)) \
        if sim_seed is not None else None
    front = psycopg2.connect(settings.connections.frontend_dsn, connect_timeout=5)
    stage = psycopg2.connect(settings.connections.staging_dsn, connect_timeout=5)
    reports = []
    try:
        for name in names:
            table = catalog.table(name)
            quarantined = reconcile.open_quarantine(stage, name, batch)
            want = (expected or {}).get((name, batch))
            if want is None:
                want = reconcile.Expected(frozenset(reconcile.frontend_keys(front, table, batch)),
                                          frozenset(quarantined)) if expected is None else reconcile.Expected()
            reports.append(reconcile.reconcile_table(table, batch, want, front, stage,
                                                     ledger.rows(front, name, batch), quarantined))
    finally:
        front.close()
        stage.close()
    click.echo("expected = " + ("the simulated HIS (seed %d)" % sim_seed if expected is not None
                                else "delivered + quarantined (no HIS expectation)"))
    for line in reconcile.format_report(reports):
        click.echo(line)
    ok = all(r.ok for r in reports)
    click.echo(f"reconciliation: {'OK' if ok else 'NOT OK'}")
    if not ok:
        raise SystemExit(1)


def _sim_expected(settings: Settings, catalog, batch: str, seed: int, visits: int, bad_share: float, until: int):
    from hisbridge.chain.mapping import load_mapping
    from hisbridge.sim import generate
    day = date.fromisoformat(batch) if len(batch) == 10 else None
    if day is None:
        raise click.UsageError("--sim-seed compares daily batches only")
    activity = generate.activity(seed, generate.batch_window(day)[0], datetime.combine(day, time(until)),
                                 visits, bad_share)
    return expectations.sim_expectations(activity, load_mapping(catalog, settings.paths.mapping, settings.org), catalog,
                                      generate.PRIMARY_KEYS)
