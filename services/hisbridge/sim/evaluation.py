"""The simulated statistics office: a month's evaluation figures DERIVED from the simulated detail, as the
province derives them — the HIS rows mapped to catalog records by the source mapping (the same map and
transcode stages the worker runs), then the indicator definitions' evaluator — so that the cross-check before
submission agrees with them; `plant` makes chosen indicators differ beyond their tolerance.

A month M's detail is the activity of [M-1's last day 18:00, M+1's INDICATOR_DAY 10:00): every stay
discharged in M is archived by then (its front page is reportable), and the office enters M's figures at that
moment. The window's own random evaluation rows (M-1's, entered on M's INDICATOR_DAY) are left out."""
from __future__ import annotations

import dataclasses
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Iterable, Mapping

from hisbridge.chain.chain import business_key
from hisbridge.chain.decode import Change, SourcePosition
from hisbridge.chain.mapping import Mapped, SourceMapping, lookup_updates, map_change
from hisbridge.chain.transcode import transcode
from hisbridge.indicators import evaluate, source
from hisbridge.indicators.definitions import Definitions
from hisbridge.sim import generate
from hisbridge.state.lookups import ReferenceStore, TableLookups

PLANTS = ("value", "numerator")      # what a planted mismatch changes: the value by 1 unit, or the numerator by 1


def first_day(month: str) -> date:
    return date(int(month[:4]), int(month[5:7]), 1)


def entry_moment(month: str) -> datetime:
    """When the office enters M's figures: M+1's INDICATOR_DAY, 10:00 local."""
    nxt = date.fromisoformat(source.month_range(month)[1])
    return datetime.combine(nxt.replace(day=generate.INDICATOR_DAY), time(10))


def month_activity(seed: int, month: str, visits_per_day: int, bad_share: float = 0.0) -> generate.Activity:
    """The detail behind month M's figures (without evaluation rows)."""
    start = generate.batch_window(first_day(month))[0]
    activity = generate.activity(seed, start, entry_moment(month), visits_per_day, bad_share)
    return dataclasses.replace(activity, events=[e for e in activity.events if e.table != "eval_indicator"])


def _lookups(mapping: SourceMapping, rows: Mapping[str, list[dict]]) -> TableLookups:
    """The worker's lookup tables once every row is captured: its reference store, fed as the worker feeds it."""
    store = ReferenceStore()
    for table, table_rows in rows.items():
        for row in table_rows:
            store.apply(lookup_updates(mapping, _read(table, row)))
    return TableLookups(store, mapping.lookups)


def _read(table: str, row: dict) -> Change:
    position = SourcePosition("postgresql", "his", "his", table, None, None, None, True)
    return Change("r", None, row, position, None)


def catalog_records(mapping: SourceMapping, rows: Mapping[str, list[dict]], tables: Iterable[str]
                    ) -> dict[str, list[dict]]:
    """Catalog table → its records (national codes, newest per business key) from the HIS rows, through the
    source mapping: what the pipeline delivers of them when nothing is quarantined."""
    tables = set(tables)
    lookups = _lookups(mapping, rows)
    sources = {d.source.split(".")[-1] for t in tables for d in mapping.tables[t].drivers}
    found: dict[str, dict[str, dict]] = {t: {} for t in tables}
    for table in sorted(sources):
        for row in rows.get(table, ()):
            for result in map_change(mapping, _read(table, row), lookups):
                if isinstance(result, Mapped) and result.table in tables:
                    tm = mapping.tables[result.table]
                    record, _ = transcode(tm, result.record)
                    found[result.table][business_key(tm.target, record)] = record
    return {t: list(records.values()) for t, records in found.items()}


def derived_figures(defs: Definitions, month: str, records: Mapping[str, list[dict]]
                    ) -> dict[str, generate.Figures | None]:
    """Evaluation code → (value, numerator, denominator) of every derivable indicator the month's detail
    has; None for a ratio over an empty denominator (0/0 has no value: the office reports no row)."""
    return {d.code: (d.value, d.numerator, d.denominator) if d.value is not None else None
            for d in evaluate.derive_all(defs.indicators, month, records) if d.code and not d.why}


def planted(figures: Mapping[str, generate.Figures], plant: Mapping[str, str]) -> dict[str, generate.Figures]:
    """The figures with the planted indicators changed beyond any tolerance (value + 1 in its unit, or
    numerator + 1 with the value left as it was)."""
    out = dict(figures)
    for code, what in plant.items():
        if what not in PLANTS:
            raise ValueError(f"a plant changes one of {PLANTS}, not {what!r}")
        value, num, den = out[code]
        out[code] = (value + 1, num, den) if what == "value" else (value, (num or Decimal(0)) + 1, den)
    return out


def detail_tables(defs: Definitions) -> set[str]:
    """The catalog tables the derivable indicators read (period tables and their children)."""
    return {t for ind in defs.indicators if ind.derivable
            for t in (ind.period_table, *source.reads([ind]).get((ind.period_table, ind.period_field), {}))}


def month_evaluation(seed: int, month: str, records: Mapping[str, list[dict]], defs: Definitions,
                     plant: Mapping[str, str] | None = None) -> tuple[list[dict], dict[str, generate.Figures]]:
    """(the office's evaluation rows of month M, the derived figures) from the catalog records of the HIS
    (catalog_records over detail_tables); derivable indicators carry the derived figures, the `plant`ed
    ones a mismatch, and one without a value (empty denominator) is not reported."""
    derived = derived_figures(defs, month, records)
    figures = {code: f for code, f in derived.items() if f is not None}
    rows = generate.indicator_rows(seed, month, entry_moment(month), planted(figures, plant or {}))
    return [r for r in rows if r["indicator_code"] not in derived or derived[r["indicator_code"]]], figures


SAMPLE_FROM_DAY = 11     # mid-month: the front pages archived then are of stays discharged earlier that month


def sample_windows(seed: int, months: Iterable[str], visits_per_day: int, days: int = 3
                   ) -> list[list[generate.Event]]:
    """A scaled-down detail history: per month, the activity of `days` batch days from its 11th (no evaluation
    rows) — archiving takes 2–10 days, so those days archive the month's own discharges and every month,
    the last one too, has detail of its own. The windows leave gaps, so a stay may enter a later window with
    its rows as of that window's start ("ensure": the HIS keeps what it has) — load them one window at a time
    (sim.load.load_backdated takes one window); final_rows of all their events, in order, is what the HIS
    then holds."""
    windows = []
    for month in months:
        first = first_day(month).replace(day=SAMPLE_FROM_DAY)
        start, end = generate.batch_window(first)[0], generate.batch_window(first + timedelta(days=days - 1))[1]
        windows.append([e for e in generate.activity(seed, start, end, visits_per_day).events
                        if e.table != "eval_indicator"])
    return windows


def history(seed: int, today: date, records: Mapping[str, list[dict]], defs: Definitions) -> list[dict]:
    """The office's evaluation rows of every period since 2022 finished before `today`: months with the
    figures derived from `records`, years (资源配置, reported only) as drawn, entered on 11 January."""
    rows: list[dict] = []
    for period in generate.evaluation_periods(today):
        if len(period) == 4:
            rows += generate.indicator_rows(seed, period, datetime(int(period) + 1, 1, generate.INDICATOR_DAY, 10))
        else:
            rows += month_evaluation(seed, period, records, defs)[0]
    return rows
