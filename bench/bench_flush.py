"""Benchmark: staging upsert and windowed flush of one big 门急诊诊疗信息 (mjzzlxx) batch, against the raw
PostgreSQL COPY of the same rows into an identical table measured in the same run (the upper limit).

    .venv/bin/python bench/bench_flush.py [--rows 1000000] [--chunk 20000]

DSNs from HISBRIDGE_FRONTEND_DSN / HISBRIDGE_STAGING_DSN (default: the local stack's). Uses a fresh
organisation code and a batch day in the far future; removes its rows afterwards.
Targets: flush >= 50,000 rows/s, staging upsert >= 10,000 rows/s.
"""
from __future__ import annotations

import argparse
import random
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=20_000)
    args = parser.parse_args()
    table = load_catalog().table("mjzzlxx")
    front, stage = psycopg2.connect(SETTINGS.connections.frontend_dsn), psycopg2.connect(SETTINGS.connections.staging_dsn)
    ensure_frontend(front)
    staging.ensure_schema(stage)
    org = "BENCH" + uuid.uuid4().hex[:13].upper()
    day = date(2900, 1, 1) + timedelta(days=random.randrange(30000))
    print(f"front-end {SETTINGS.connections.frontend_dsn!r}, staging {SETTINGS.connections.staging_dsn!r}, {args.rows:,} rows")

    staged_s = build_s = 0.0
    gen = rows_for(table, org, day, args.rows, args.chunk)
    while True:
        t0 = time.perf_counter()
        chunk = next(gen, None)
        t1 = time.perf_counter()
        build_s += t1 - t0
        if chunk is None:
            break
        staging.upsert_rows(stage, chunk)
        staged_s += time.perf_counter() - t1
    print(f"staging upsert: {args.rows / staged_s:,.0f} rows/s ({staged_s:.1f} s; building records "
          f"{build_s:.1f} s not counted)   target >= 10,000")

    now = datetime(day.year, day.month, day.day, 18, 30, tzinfo=SHANGHAI)
    before = server_counters(front)
    t0 = time.perf_counter()
    result = flush_batch(stage, front, table, day.isoformat(), now, parse({}))
    flush_s = time.perf_counter() - t0
    assert result.row_count == args.rows, result
    print(f"flush (staging COPY out → front-end COPY + ledger + mark, one front-end commit): "
          f"{args.rows / flush_s:,.0f} rows/s ({flush_s:.1f} s)   target >= 50,000")
    print(f"  server during the flush: {counters_delta(before, server_counters(front))}")

    with tempfile.TemporaryFile() as spool:
        with front, front.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS bench_raw_copy (LIKE mjzzlxx INCLUDING ALL)")
            cur.execute("TRUNCATE bench_raw_copy")
            cur.copy_expert(cur.mogrify("COPY (SELECT * FROM mjzzlxx WHERE yljgdm = %s) TO STDOUT", (org,)), spool)
        spool.seek(0)
        before = server_counters(front)
        t0 = time.perf_counter()
        with front, front.cursor() as cur:
            cur.copy_expert("COPY bench_raw_copy FROM STDIN", spool)
        raw_s = time.perf_counter() - t0
    print(f"raw COPY of the same rows into an identical table: {args.rows / raw_s:,.0f} rows/s ({raw_s:.1f} s) "
          f"— flush reaches {raw_s / flush_s:.0%} of it")
    print(f"  server during the raw COPY: {counters_delta(before, server_counters(front))}")

    with front, front.cursor() as cur:
        cur.execute("DROP TABLE bench_raw_copy")
        cur.execute("DELETE FROM mjzzlxx WHERE yljgdm = %s", (org,))
        cur.execute("DELETE FROM hisbridge.ledger WHERE tbl = 'mjzzlxx' AND batch = %s", (day.isoformat(),))
    with stage, stage.cursor() as cur:
        cur.execute("DELETE FROM hisbridge.staged WHERE tbl = 'mjzzlxx' AND org = %s", (org,))
        for done in ("ledger", "flushed"):
            cur.execute(f"DELETE FROM hisbridge.{done} WHERE tbl = 'mjzzlxx' AND batch = %s", (day.isoformat(),))


if __name__ == "__main__":
    main()
