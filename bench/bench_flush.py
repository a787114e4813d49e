"""Benchmark: staging upsert and windowed flush of one big 门急诊诊疗信息 (mjzzlxx) batch, against the raw
PostgreSQL COPY of the same rows into an identical table measured in the same run (the upper limit).

    .venv/bin/python bench/bench_flush.py [--rows 200000] [--chunk 20000] [--rounds 3]

Each round stages the rows (a fresh organisation code and far-future batch day), then times the flush and
the raw COPY, the order alternating round by round; the raw COPY's input is the COPY text of the rows the
first flush delivered. Prints the median flush / raw COPY ratio (goal >= 0.8).

DSNs from HISBRIDGE_FRONTEND_DSN / HISBRIDGE_STAGING_DSN (default: the local stack's). Uses a fresh
organisation code and a batch day in the far future; removes its rows afterwards.
Targets: flush >= 50,000 rows/s, staging upsert >= 10,000 rows/s.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import date, datetime, timedelta

import psycopg2
from hisbridge.catalog import load_catalog
from hisbridge.catalog.sample import sample_records
from hisbridge.clock import SHANGHAI
from hisbridge.delivery import staging
from hisbridge.delivery.flush import ensure_frontend, flush_batch
from hisbridge.delivery.schedule import parse
from hisbridge.settings import load_settings

SETTINGS = load_settings()


def rows_for(table, org: str, day: date, n: int, chunk: int):
    """n distinct records of batch `day`, cycling over a few thousand sampled ones."""
    base = sample_records(table, 2000, seed=7)
    produced = datetime(day.year, day.month, day.day, 8)
    batch = day.isoformat()
    for start in range(0, n, chunk):
        out = []
        for i in range(start, min(n, start + chunk)):
            rec = dict(base[i % len(base)])
            rec.update(yljgdm=org, jzlsh=f"B{i:09d}", scsj=produced + timedelta(microseconds=i), xgbz="0")
            out.append(staging.staged_row(table, rec, batch, i + 1, i + 1))
        yield out


def server_counters(conn) -> tuple[int, int, int]:
    """(WAL position, timed checkpoints, requested checkpoints) of the server (staging shares it)."""
    with conn, conn.cursor() as cur:
        cur.execute("""SELECT pg_current_wal_lsn() - '0/0', checkpoints_timed, checkpoints_req
                       FROM pg_stat_bgwriter""")
        return tuple(int(v) for v in cur.fetchone())


def counters_delta(before, after) -> str:
    wal, timed, req = (a - b for a, b in zip(after, before))
    return f"WAL {wal / 2**20:,.0f} MiB, checkpoints {timed} timed + {req} requested (WAL full)"


def stage_rows(stage, table, org: str, day: date, n: int, chunk: int) -> tuple[float, float]:
    """(upsert seconds, record-building seconds) of staging n rows of (org, batch day)."""
    staged_s = build_s = 0.0
    gen = rows_for(table, org, day, n, chunk)
    while True:
        t0 = time.perf_counter()
        rows = next(gen, None)
        t1 = time.perf_counter()
        build_s += t1 - t0
        if rows is None:
            return staged_s, build_s
        staging.upsert_rows(stage, rows)
        staged_s += time.perf_counter() - t1


def timed_flush(stage, front, table, day: date, rows: int) -> tuple[float, str]:
    now = datetime(day.year, day.month, day.day, 18, 30, tzinfo=SHANGHAI)
    before = server_counters(front)
    t0 = time.perf_counter()
    result = flush_batch(stage, front, table, day.isoformat(), now, parse({}))
    seconds = time.perf_counter() - t0
    assert result.row_count == rows, result
    return seconds, counters_delta(before, server_counters(front))


def timed_raw_copy(front, spool) -> tuple[float, str]:
    with front, front.cursor() as cur:
        cur.execute("TRUNCATE bench_raw_copy")
    spool.seek(0)
    before = server_counters(front)
    t0 = time.perf_counter()
    with front, front.cursor() as cur:
        cur.copy_expert("COPY bench_raw_copy FROM STDIN", spool)
    return time.perf_counter() - t0, counters_delta(before, server_counters(front))


def cleanup(front, stage, org: str, day: date) -> None:
    with front, front.cursor() as cur:
        cur.execute("DELETE FROM mjzzlxx WHERE yljgdm = %s", (org,))
        cur.execute("DELETE FROM hisbridge.ledger WHERE tbl = 'mjzzlxx' AND batch = %s", (day.isoformat(),))
    with stage, stage.cursor() as cur:
        cur.execute("DELETE FROM hisbridge.staged WHERE tbl = 'mjzzlxx' AND org = %s", (org,))
        for done in ("ledger", "flushed"):
            cur.execute(f"DELETE FROM hisbridge.{done} WHERE tbl = 'mjzzlxx' AND batch = %s", (day.isoformat(),))
    front.autocommit = True       # the next round's flush meets the table as the first one did
    with front.cursor() as cur:
        cur.execute("VACUUM mjzzlxx")
    front.autocommit = False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--chunk", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3,
                        help="flush vs raw COPY pairs, the order alternating (round 1: flush first)")
    args = parser.parse_args()
    table = load_catalog().table("mjzzlxx")
    front, stage = psycopg2.connect(SETTINGS.connections.frontend_dsn), psycopg2.connect(SETTINGS.connections.staging_dsn)
    ensure_frontend(front)
    staging.ensure_schema(stage)
    print(f"front-end {SETTINGS.connections.frontend_dsn!r}, staging {SETTINGS.connections.staging_dsn!r}, "
          f"{args.rows:,} rows, {args.rounds} rounds, load {os.getloadavg()[0]:.2f} (1 min)")
    with front, front.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS bench_raw_copy (LIKE mjzzlxx INCLUDING ALL)")
    ratios = []
    with tempfile.TemporaryFile() as spool:
        for r in range(args.rounds):
            # every round its own organisation and batch day: a first delivery into the front-end each time
            org = "BENCH" + uuid.uuid4().hex[:13].upper()
            day = date(2900, 1, 1) + timedelta(days=random.randrange(30000))
            staged_s, build_s = stage_rows(stage, table, org, day, args.rows, args.chunk)
            print(f"round {r + 1}: staging upsert {args.rows / staged_s:,.0f} rows/s ({staged_s:.1f} s; building "
                  f"records {build_s:.1f} s not counted)   target >= 10,000")
            order = ("flush", "raw") if r % 2 == 0 else ("raw", "flush")
            seconds = {}
            for what in order:
                if what == "flush":
                    seconds["flush"], wal = timed_flush(stage, front, table, day, args.rows)
                    if r == 0:   # the raw COPY's input: the rows the first flush delivered, as COPY text
                        with front, front.cursor() as cur:
                            cur.copy_expert(cur.mogrify("COPY (SELECT * FROM mjzzlxx WHERE yljgdm = %s) TO STDOUT",
                                                        (org,)), spool)
                else:
                    seconds["raw"], wal = timed_raw_copy(front, spool)
                print(f"  {what:<5} {args.rows / seconds[what]:>9,.0f} rows/s ({seconds[what]:.2f} s)   {wal}")
            ratios.append(seconds["raw"] / seconds["flush"])
            print(f"  flush / raw COPY {ratios[-1]:.2f}× (order {' → '.join(order)}); flush target >= 50,000 rows/s")
            cleanup(front, stage, org, day)
    print(f"flush (staging COPY out → front-end COPY + ledger + mark, one front-end commit) / raw COPY of the same "
          f"rows into an identical table: median {statistics.median(ratios):.2f}× over {len(ratios)} rounds "
          f"({', '.join(f'{x:.2f}' for x in ratios)})   goal >= 0.8×")
    with front, front.cursor() as cur:
        cur.execute("DROP TABLE bench_raw_copy")


if __name__ == "__main__":
    main()
