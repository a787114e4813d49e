"""`hisbridge sim`: the simulated hospital HIS (schema, a day of activity, evaluation indicators)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import click
from hisbridge import hisdb
from hisbridge.cli.common import pass_settings
from hisbridge.settings import Settings
from hisbridge.sim import generate, load


@click.group("sim")
def cli() -> None:
    """Simulated hospital HIS in PostgreSQL (schema `his`) or MariaDB/MySQL (database `his`)."""


def _dsn_option(func):
    func = click.option("--dsn", default=None, help="HIS database DSN (default: connections.his_dsn, or "
                                                    "connections.his_mariadb_dsn for MariaDB/MySQL).")(func)
    return click.option("--engine", type=click.Choice(load.ENGINES), default=None,
                        help="HIS database engine [default: source.kind]")(func)


def _connect(settings: Settings, dsn: str | None, engine: str | None):
    engine = engine or settings.source.kind
    try:
        return load.connect(dsn or hisdb.admin_dsn(settings, engine), engine)
    except hisdb.HisConnectionError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command("init")
@_dsn_option
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--reset", is_flag=True, help="Drop schema `his` first (all simulated data is lost).")
@pass_settings
def init(settings: Settings, engine: str | None, dsn: str | None, seed: int, reset: bool) -> None:
    """Create schema `his` with its dictionaries (idempotent)."""
    conn = _connect(settings, dsn, engine)
    try:
        load.init_schema(conn, seed, reset)
    finally:
        conn.close()
    full = "REPLICA IDENTITY FULL" if hisdb.engine_of(conn) == "postgres" else "binlog row image FULL"
    click.echo(f"schema his ready ({len(generate.PRIMARY_KEYS)} tables, {full})")


@cli.command("day")
@_dsn_option
@click.option("--date", "day", required=True, type=click.DateTime(["%Y-%m-%d"]),
              help="Report day D: activity in [D-1 18:00, D 18:00).")
@click.option("--days", default=1, show_default=True, type=click.IntRange(1), help="Simulate D, D+1, …")
@click.option("--visits", default=1000, show_default=True, type=click.IntRange(1, 200_000),
              help="Outpatient visits a day (admissions = visits/25).")
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--bad-share", default=0.02, show_default=True, type=click.FloatRange(0, 0.5, max_open=True))
@click.option("--start", type=click.DateTime(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]),
              help="Override the window start (local time).")
@click.option("--end", type=click.DateTime(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]),
              help="Override the window end (e.g. D 22:00 to run across 18:00 into the delivery window).")
@click.option("--live", is_flag=True, help="Insert on an accelerated clock instead of back-dating at once.")
@click.option("--speed", default=600.0, show_default=True, help="Simulated seconds per real second (--live).")
@click.option("--manifest", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the manifest (entities, defects) here; default var/sim/manifest-<start>.json.")
@pass_settings
def day(settings: Settings, engine, dsn, day, days, visits, seed, bad_share, start, end, live, speed, manifest) -> None:
    """Generate and load activity for one or more report days."""
    first, last = generate.batch_window(day.date())[0], generate.batch_window(day.date() + timedelta(days=days - 1))[1]
    start, end = start or first, end or last
    if end <= start:
        raise click.BadParameter("--end must be after --start")
    activity = generate.activity(seed, start, end, visits, bad_share)
    path = manifest or settings.paths.var / "sim" / f"manifest-{start:%Y%m%dT%H%M}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(activity.manifest, ensure_ascii=False, default=str, indent=1), encoding="utf-8")
    bad = sum(1 for e in activity.manifest["entities"] if e["defects"])
    click.echo(f"window [{start}, {end}): {len(activity.events)} events, "
               f"{len(activity.manifest['entities'])} entities ({bad} with a planted defect); manifest {path}")
    conn = _connect(settings, dsn, engine)
    try:
        if live:
            report = lambda at, n: click.echo(f"  sim clock {at:%Y-%m-%d %H:%M}  {n} changes applied")
            n = load.load_live(conn, activity.events, start, speed, report)
            click.echo(f"applied {n} changes live")
        else:
            began = datetime.now()
            counts = load.load_backdated(conn, activity.events)
            seconds = (datetime.now() - began).total_seconds()
            click.echo(f"back-dated {sum(counts.values())} changes in {seconds:.1f}s")
    finally:
        conn.close()


@cli.command("indicators")
@_dsn_option
@click.option("--from", "first", required=True, help="First month YYYY-MM (the notice back-fills from 2022-01).")
@click.option("--to", "last", required=True, help="Last month YYYY-MM.")
@click.option("--seed", default=1, show_default=True, type=int)
@pass_settings
def indicators(settings: Settings, engine, dsn, first, last, seed) -> None:
    """Back-fill monthly (and, for December, yearly) evaluation indicators."""
    year, month = map(int, first.split("-"))
    end_year, end_month = map(int, last.split("-"))
    events = []
    while (year, month) <= (end_year, end_month):
        at = datetime(year + month // 12, month % 12 + 1, generate.INDICATOR_DAY, 10)
        periods = [f"{year:04d}-{month:02d}"] + ([f"{year:04d}"] if month == 12 else [])
        events += [generate.Event(at, "eval_indicator", "ensure", row)
                   for p in periods for row in generate.indicator_rows(seed, p, at)]
        year, month = year + month // 12, month % 12 + 1
    conn = _connect(settings, dsn, engine)
    try:
        counts = load.load_backdated(conn, events)
    finally:
        conn.close()
    click.echo(f"indicators: {sum(counts.values())} rows offered (existing periods kept)")
