"""`make demo` (first version): one HIS change travels PostgreSQL → Debezium → Kafka → the Faust worker.

Expects the stack up (make demo runs `make up` first). Leaves the stack, the connector and the background
worker running; `make down` stops everything.
"""
from __future__ import annotations

import json
import time
from datetime import datetime
from decimal import Decimal

from hisbridge import app, connectors
from hisbridge.stack import probe, procs, worker

SPEC = probe.SPEC


def insert_row() -> int:
    row_id = time.time_ns() // 1000
    conn = probe.his_connection()
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO stackprobe.probe VALUES (%s, %s, %s, %s, NULL)",
                        (row_id, datetime.now(), Decimal("128.50"), "门诊挂号 演示"))
    finally:
        conn.close()
    return row_id


def wait_for(row_id: int, timeout: float = 90.0) -> dict | None:
    out = app.received_file()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out.exists():
            for line in out.read_text(encoding="utf-8").splitlines():
                rec = json.loads(line)
                if rec["key"] and rec["key"]["payload"].get("id") == row_id:
                    return rec
        time.sleep(0.5)
    return None


def main() -> None:
    probe.ensure_table()
    print(f"connector {SPEC.name}: {connectors.apply(SPEC)}, RUNNING")
    print("worker:", "started" if worker.start_background() else "already running",
          f"(pid {worker.pid()}, log {procs.log_file(worker.NAME)})")
    row_id = insert_row()
    print(f"HIS: inserted stackprobe.probe id={row_id}; waiting for the Faust worker …")
    rec = wait_for(row_id)
    if rec is None:
        raise SystemExit(f"the worker did not receive id={row_id}; see {procs.log_file(worker.NAME)}")
    payload = rec["value"]["payload"]
    print(f"worker received {rec['topic']}@{rec['offset']}: op={payload['op']} "
          f"after={json.dumps(payload['after'], ensure_ascii=False)}")
    print("stack left running: `hisbridge stack status`, `make down` to stop")


if __name__ == "__main__":
    main()
