"""`hisbridge sim`: the simulated hospital HIS (schema, a day of activity, evaluation indicators)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import click
from hisbridge import hisdb
from hisbridge.clock import as_shanghai
from hisbridge.cli.common import group, pass_settings
from hisbridge.messages import OperatorError, text
from hisbridge.settings import Settings
from hisbridge.sim import generate, load


@group("sim", help="sim.help")
def cli() -> None:
    pass


def _dsn_option(func):
    func = click.option("--dsn", default=None, help="mappings.dsn")(func)
    return click.option("--engine", type=click.Choice(load.ENGINES), default=None, help="mappings.engine")(func)


def _connect(settings: Settings, dsn: str | None, engine: str | None):
    engine = engine or settings.source.kind
    return load.connect(dsn or hisdb.admin_dsn(settings, engine), engine)


@cli.command("init", help="sim.init")
@_dsn_option
@click.option("--seed", default=1, show_default=True, type=int, help="sim.seed")
@click.option("--reset", is_flag=True, help="sim.reset")
@pass_settings
def init(settings: Settings, engine: str | None, dsn: str | None, seed: int, reset: bool) -> None:
    conn = _connect(settings, dsn, engine)
    try:
        load.init_schema(conn, seed, reset)
    finally:
        conn.close()
    full = "REPLICA IDENTITY FULL" if hisdb.engine_of(conn) == "postgres" else "binlog row image FULL"
    click.echo(text("sim.ready", tables=len(generate.PRIMARY_KEYS), full=full))


@cli.command("day", help="sim.day")
@_dsn_option
@click.option("--date", "day", required=True, type=click.DateTime(["%Y-%m-%d"]), help="sim.date")
@click.option("--days", default=1, show_default=True, type=click.IntRange(1), help="sim.days")
@click.option("--visits", default=1000, show_default=True, type=click.IntRange(1, 200_000), help="sim.visits")
@click.option("--seed", default=1, show_default=True, type=int, help="sim.seed")
@click.option("--bad-share", default=0.02, show_default=True, type=click.FloatRange(0, 0.5, max_open=True),
              help="sim.bad_share")
@click.option("--start", type=click.DateTime(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]), help="sim.start")
@click.option("--end", type=click.DateTime(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]), help="sim.end")
@click.option("--live", is_flag=True, help="sim.live")
@click.option("--speed", default=600.0, show_default=True, help="sim.speed")
@click.option("--manifest", type=click.Path(dir_okay=False, path_type=Path), help="sim.manifest")
@pass_settings
def day(settings: Settings, engine, dsn, day, days, visits, seed, bad_share, start, end, live, speed, manifest) -> None:
    first, last = generate.batch_window(day.date())[0], generate.batch_window(day.date() + timedelta(days=days - 1))[1]
    start, end = start or first, end or last
    if end <= start:
        raise OperatorError("sim.end_before_start")
    activity = generate.activity(seed, start, end, visits, bad_share)
    path = manifest or settings.paths.var / "sim" / f"manifest-{start:%Y%m%dT%H%M}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(activity.manifest, ensure_ascii=False, default=str, indent=1), encoding="utf-8")
    bad = sum(1 for e in activity.manifest["entities"] if e["defects"])
    click.echo(text("sim.window", start=as_shanghai(start), end=as_shanghai(end), events=len(activity.events),
                    entities=len(activity.manifest["entities"]), bad=bad, manifest=path))
    conn = _connect(settings, dsn, engine)
    try:
        if live:
            report = lambda at, n: click.echo(text("sim.progress", at=as_shanghai(at), count=n))
            n = load.load_live(conn, activity.events, start, speed, report)
            click.echo(text("sim.live_done", count=n))
        else:
            began = datetime.now()
            counts = load.load_backdated(conn, activity.events)
            seconds = (datetime.now() - began).total_seconds()
            click.echo(text("sim.backdated", count=sum(counts.values()), seconds=f"{seconds:.1f}"))
    finally:
        conn.close()


@cli.command("indicators", help="sim.indicators")
@_dsn_option
@click.option("--from", "first", required=True, help="sim.from")
@click.option("--to", "last", required=True, help="sim.to")
@click.option("--seed", default=1, show_default=True, type=int, help="sim.seed")
@click.option("--detail", "visits", default=None, type=click.IntRange(1, 1000), help="sim.detail")
@pass_settings
def indicators(settings: Settings, engine, dsn, first, last, seed, visits) -> None:
    from hisbridge.cli.common import batch_name
    year, month = map(int, batch_name(first, "monthly", "eval_indicator").split("-"))
    end_year, end_month = map(int, batch_name(last, "monthly", "eval_indicator").split("-"))
    months = []
    while (year, month) <= (end_year, end_month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = year + month // 12, month % 12 + 1
    conn = _connect(settings, dsn, engine)
    try:
        figures = _detail(settings, conn, seed, months, visits) if visits else {}
        events = []
        for m in months:
            at = datetime(int(m[:4]) + (m[5:] == "12"), int(m[5:]) % 12 + 1, generate.INDICATOR_DAY, 10)
            periods = [m] + ([m[:4]] if m[5:] == "12" else [])
            events += [generate.Event(at, "eval_indicator", "ensure", row)
                       for p in periods for row in figures.get(p) or generate.indicator_rows(seed, p, at)]
        counts = load.load_backdated(conn, events)
    finally:
        conn.close()
    click.echo(text("sim.indicators_done", count=sum(counts.values())))


def _detail(settings: Settings, conn, seed: int, months: list[str], visits: int) -> dict[str, list[dict]]:
    """Load a scaled-down detail history (three mid-month batch days of each month) and return each month's
    evaluation rows derived from it (sim.evaluation), as the statistics office would enter them."""
    from hisbridge.catalog import catalog_for
    from hisbridge.chain.mapping import load_mapping
    from hisbridge.indicators import definitions
    from hisbridge.sim import evaluation
    catalog = catalog_for(settings.paths)
    mapping = load_mapping(catalog, settings.paths.mapping, settings.org)
    defs = definitions.load(settings.paths.indicators, catalog)
    windows = evaluation.sample_windows(seed, months, visits)
    for window in windows:                    # one window per transaction (load_backdated takes one window)
        load.load_backdated(conn, window)
    rows = {**generate.dictionary_rows(seed), **generate.final_rows([e for w in windows for e in w])}
    records = evaluation.catalog_records(mapping, rows, evaluation.detail_tables(defs))
    click.echo(text("sim.detail_done", count=sum(map(len, windows)), months=len(months)))
    return {m: evaluation.month_evaluation(seed, m, records, defs)[0] for m in months}
