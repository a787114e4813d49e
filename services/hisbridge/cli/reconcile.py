"""`hisbridge reconcile`: the HIS ↔ staging ↔ ledger ↔ front-end ↔ quarantine for a batch, key by key (or, for
the simulated HIS, against what the simulator says it holds). Exit status 1 when anything does not reconcile."""
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
@click.option("--show", type=int, default=20, show_default=True, help="missing / unexpected keys listed per table")
@click.option("--sim-seed", type=int, default=None,
              help="compare with the simulated HIS of this seed (the demo): expected keys and planted defects")
@click.option("--sim-visits", type=int, default=1000, show_default=True)
@click.option("--sim-bad-share", type=float, default=0.02, show_default=True)
@click.option("--sim-until", type=click.Choice(["18", "22"]), default="22", show_default=True,
              help="where the simulated activity stopped on day D (22 = the demo's evening included)")
@pass_settings
def cli(settings: Settings, batch: str, tables: tuple[str, ...], show: int, sim_seed: int | None, sim_visits: int,
        sim_bad_share: float, sim_until: str) -> None:
    """Per table: expected, staged, pending, delivered, quarantined; every flush against the front-end.

    Expected = the HIS itself: the batch's business keys read from the mapping's driver tables with the CDC
    role (hisbridge.ops.source_keys); a key found nowhere downstream is missing. With --sim-seed: the
    simulator's manifest (keys to deliver and the planted defects' rules)."""
    from hisbridge.catalog import catalog_for
    from hisbridge.chain.mapping import load_mapping
    catalog = catalog_for(settings.paths)
    cadence = {10: "daily", 7: "monthly", 4: "yearly"}.get(len(batch))
    if cadence is None:
        raise click.BadParameter("batch must be YYYY-MM-DD, YYYY-MM or YYYY", param_hint="--batch")
    names = list(tables) or sorted(n for n, t in catalog.tables.items() if t.cadence == cadence)
    mapping = load_mapping(catalog, settings.paths.mapping, settings.org)
    from hisbridge.contract import quarantine_topic
    entries = reconcile.read_quarantine(settings.connections.kafka_bootstrap,
                                        quarantine_topic(settings.worker.core_prefix))
    front = psycopg2.connect(settings.connections.frontend_dsn, connect_timeout=5)
    stage = psycopg2.connect(settings.connections.staging_dsn, connect_timeout=5)
    try:
        if sim_seed is not None:
            expected = _sim_expected(settings, catalog, mapping, batch, sim_seed, sim_visits, sim_bad_share,
                                     int(sim_until))
            reports = [reconcile.reconcile_table(catalog.table(n), batch, expected.get((n, batch), reconcile.Expected()),
                                                 front, stage, ledger.rows(front, n, batch),
                                                 reconcile.quarantine_pairs(entries, n, {batch})) for n in names]
            click.echo(f"expected = the simulated HIS (seed {sim_seed})")
        else:
            reports = _his_reports(settings, catalog, mapping, batch, names, entries, front, stage)
            click.echo(f"expected = the HIS ({settings.source.kind} {settings.source.host}:{settings.source.port} "
                       f"as {settings.source.user})")
    finally:
        front.close()
        stage.close()
    for line in reconcile.format_report(reports, show=show):
        click.echo(line)
    unmatched = reconcile.unmatched_entries(entries, catalog.tables)
    if unmatched:
        click.echo(f"  note: {len(unmatched)} quarantine entr(y/ies) without a catalog table or key "
                   f"(not matched to a HIS key), e.g. {[_where(e) for e in unmatched[:3]]}")
    ok = all(r.ok for r in reports)
    click.echo(f"reconciliation: {'OK' if ok else 'NOT OK'}")
    if not ok:
        raise SystemExit(1)


def _where(entry) -> str:
    src = entry.source or {}
    return f"{entry.table} {src.get('topic', '?')}[{src.get('partition', '?')}]@{src.get('offset', '?')}"


def _his_reports(settings: Settings, catalog, mapping, batch: str, names: list[str], entries, front, stage):
    from hisbridge import hisdb
    from hisbridge.ops import source_keys
    try:
        his = hisdb.connect(source_keys.cdc_dsn(settings), settings.source.kind)
    except hisdb.HisConnectionError as exc:
        raise click.ClickException(f"无法连接 HIS 数据库，无法对账 / cannot reach the HIS to reconcile: {exc}") from None
    try:
        columns = source_keys.read_columns(his, mapping.sources)
        reports = []
        for name in names:
            table = catalog.table(name)
            if name not in mapping.tables:
                continue                           # a catalog table this hospital's mapping does not feed
            start, end = reconcile.batch_range(table, batch)
            try:
                keys = source_keys.source_keys(his, settings.source.kind, mapping, table, batch, start, end, columns)
            except source_keys.ReconcileSourceError as exc:
                raise click.ClickException(f"无法从映射推导 HIS 查询 / cannot derive the HIS query: {exc}") from None
            reports.append(reconcile.reconcile_with_source(table, batch, keys, front, stage,
                                                           ledger.rows(front, name, batch),
                                                           reconcile.quarantine_triples(entries, name)))
        return reports
    finally:
        his.close()


def _sim_expected(settings: Settings, catalog, mapping, batch: str, seed: int, visits: int, bad_share: float,
                  until: int):
    from hisbridge.sim import generate
    day = date.fromisoformat(batch) if len(batch) == 10 else None
    if day is None:
        raise click.UsageError("--sim-seed compares daily batches only")
    activity = generate.activity(seed, generate.batch_window(day)[0], datetime.combine(day, time(until)),
                                 visits, bad_share)
    return expectations.sim_expectations(activity, mapping, catalog, generate.PRIMARY_KEYS)
