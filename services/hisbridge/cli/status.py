"""`hisbridge status`: one operator screen (or `--json`) — stack, connectors and tasks, replication slots,
consumer lag, the watermark and what holds it back, the sink's clock, today's batches per table with their
state and window countdown, the last flushes, open quarantine by rule.

Every section is read by ops.observe with a short timeout (connections.connect_timeout, 3 s), all sections at
once, so a service that is down is reported as down within a few seconds and never hides the others. Nothing
here prints an identity value: counts, states, tables, rules and times only (Asia/Shanghai).
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, Callable

import click
from hisbridge.cli.common import command, pass_settings
from hisbridge.clock import SHANGHAI, wall_text
from hisbridge.messages import render
from hisbridge.ops import observe
from hisbridge.settings import Settings



def _local(moment: datetime | None) -> str:
    """Aware moments in Asia/Shanghai; a naive one is front-end wall clock (report_datetime), already local —
    astimezone would read it in the machine's zone."""
    return wall_text(moment) if moment else "-"


def _countdown(seconds: float) -> str:
    sign, s = ("-" if seconds < 0 else ""), int(abs(seconds))
    d, rest = divmod(s, 86400)
    return f"{sign}{d}d{rest // 3600:02d}h{rest % 3600 // 60:02d}m" if d else f"{sign}{s // 3600}h{s % 3600 // 60:02d}m"


# --- sections: each returns JSON-ready data; an exception means the service is down --------------------

def stack_data(settings: Settings) -> list[dict[str, Any]]:
    import devstack
    return [{"name": s.name, "running": s.running, "port": s.port, "pid": s.pid} for _, s in devstack.status(settings)]


def connectors_data(settings: Settings) -> list[dict[str, Any]]:
    c = settings.connections
    return [{"name": v.name, "state": v.shown_state, "connector_state": v.state, "reason": v.reason,
             "tasks": [{"id": t.id, "state": t.state, "reason": t.reason} for t in v.tasks]}
            for v in observe.read_connectors(c.connect_url, c.connect_timeout)]


def slots_data(settings: Settings) -> list[dict[str, Any]]:
    if settings.source.kind != "postgres":
        return []
    from hisbridge.runtime.monitor import his_monitor_dsn
    dsn = his_monitor_dsn(settings) or settings.connections.his_dsn
    return [observe.as_json(s) for s in observe.read_slots(dsn, settings.connections.connect_timeout)]


def lag_data(settings: Settings, show_all: bool) -> list[dict[str, Any]]:
    c = settings.connections
    out = []
    for g in observe.read_lag(c.kafka_bootstrap, c.connect_timeout):
        if not show_all and g.total == 0 and g.state == "Empty":
            continue   # a finished run's group (tests, old demo runs): --all-topics lists it
        topics: dict[str, dict[str, float]] = {}
        for p in g.partitions:
            t = topics.setdefault(p.topic, {"lag": 0, "oldest_seconds": 0.0})
            t["lag"] += p.lag
            t["oldest_seconds"] = max(t["oldest_seconds"], g.ages.get((p.topic, p.partition), 0.0))
        out.append({"group": g.group, "state": g.state, "lag": g.total,
                    "topics": {k: v for k, v in sorted(topics.items()) if show_all or v["lag"]}})
    return out


def delivery_data(settings: Settings) -> dict[str, Any]:
    """Watermark, the sink's clock, and the batches of today's windows (and any with rows still waiting)."""
    from hisbridge.catalog import catalog_for
    from hisbridge.delivery.schedule import load_schedule
    c = settings.connections
    view = observe.read_staging(c.staging_dsn, c.connect_timeout)
    if view is None:
        return {"staging": "no staging schema yet (the sink has not run)", "batches": [], "watermarks": {}}
    schedule = load_schedule(settings.paths.schedule, settings.worker.schedule_mode)
    cadence_of = {n: t.cadence for n, t in catalog_for(settings.paths).tables.items()}
    now = view.sink_clock or datetime.now(SHANGHAI)
    mark = min(view.watermarks.values()) if view.watermarks else None
    batches = observe.batch_views(view.counts, cadence_of, mark, schedule, now, keep=timedelta(days=1))
    return {"watermarks": {k: _local(v) for k, v in view.watermarks.items()},
            "sink_clock": _local(view.sink_clock), "sink_tick_at": _local(view.sink_tick_at),
            "batches": [{**observe.as_json(b), "window_seconds_left": b.window_seconds_left(now)} for b in batches]}


def ledger_data(settings: Settings, limit: int) -> list[dict[str, Any]]:
    c = settings.connections
    rows = observe.query_if_exists(c.frontend_dsn, c.connect_timeout, "hisbridge.ledger", """
        SELECT tbl, batch, report_datetime, row_count, kind FROM hisbridge.ledger
        ORDER BY written_at DESC, tbl LIMIT %s""", (limit,))
    return [{"table": t, "batch": b, "report_datetime": _local(r), "rows": n, "kind": k} for t, b, r, n, k in rows]


def quarantine_data(settings: Settings) -> list[dict[str, Any]]:
    c = settings.connections
    counts = observe.read_open_quarantine(c.staging_dsn, c.connect_timeout)
    return [{"table": t, "rule": r, "open": n} for (t, r), n in sorted(counts.items())]


def replays_data(settings: Settings) -> dict[str, Any]:
    """Records held for a reference row (of which already quarantined) and the oldest; replays in flight."""
    from hisbridge.delivery import replay
    from hisbridge.ops.replay import held_waiting
    c = settings.connections
    observe.admin_client(c.kafka_bootstrap, c.connect_timeout, "hisbridge-status").close()   # down: said in 3 s
    held, given_up, oldest = held_waiting(c.kafka_bootstrap, settings.worker.app_id)
    found = observe.query_if_exists(c.staging_dsn, c.connect_timeout, "hisbridge.replays", "SELECT 1")
    flying = _in_flight(c.staging_dsn, replay.in_flight) if found else []
    return {"held": held, "held_quarantined": given_up,
            "oldest_held": _local(datetime.fromtimestamp(oldest / 1000, SHANGHAI)) if oldest else None,
            "in_flight": [{"id": r.id, "kind": r.kind, "operator": r.operator, "reason": r.reason, "sent": r.sent,
                           "requested": _local(r.requested_at)} for r in flying]}


def _in_flight(dsn: str, read: Callable) -> list:
    import psycopg2
    conn = psycopg2.connect(dsn, connect_timeout=5)
    try:
        return read(conn)
    finally:
        conn.close()


def worker_data(settings: Settings) -> dict[str, Any]:
    """The worker's own view (/health): held records and the oldest one's wait, which hold the watermark."""
    port = settings.worker.web_port
    if not port:
        return {"running": None, "note": "web server off (HISBRIDGE_WORKER_WEB_PORT=0)"}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health",
                                    timeout=settings.connections.connect_timeout) as resp:
            return {"running": True, **json.loads(resp.read())}
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise observe.Unreachable(f"worker web port {port}: {getattr(exc, 'reason', exc)}") from None


def collect(settings: Settings, batches: int, ledger_rows: int, show_all: bool) -> dict[str, dict[str, Any]]:
    """Every section at once: {"ok": True, "data": …} or {"ok": False, "error": "…"}."""
    readers: dict[str, Callable[[], Any]] = {
        "stack": lambda: stack_data(settings),
        "connectors": lambda: connectors_data(settings),
        "slots": lambda: slots_data(settings),
        "lag": lambda: lag_data(settings, show_all),
        "worker": lambda: worker_data(settings),
        "delivery": lambda: delivery_data(settings),
        "ledger": lambda: ledger_data(settings, ledger_rows),
        "quarantine": lambda: quarantine_data(settings),
        "replays": lambda: replays_data(settings),
    }
    with ThreadPoolExecutor(max_workers=len(readers)) as pool:
        futures = {name: pool.submit(read) for name, read in readers.items()}
        out = {}
        for name, future in futures.items():
            try:
                out[name] = {"ok": True, "data": future.result()}
            except Exception as exc:  # noqa: BLE001 — a down service is a status line, not a crash
                out[name] = {"ok": False, "error": observe.first_line(exc)}
    return out


# --- the screen --------------------------------------------------------------------------------------------

def _lines(name: str, data: Any, limit: int) -> list[str]:
    if name == "stack":
        return [f"{s['name']:<12} {'running' if s['running'] else 'stopped':<8} port {s['port']:<6} pid {s['pid'] or '-'}"
                for s in data]
    if name == "connectors":
        out = []
        for c in data:
            out.append(f"{c['name']}: {c['state']}" + (f" — {c['reason']}" if c["reason"] else ""))
            out += [f"    task {t['id']}: {t['state']}" + (f" — {t['reason']}" if t["reason"] else "")
                    for t in c["tasks"]]
        return out
    if name == "slots":
        return [f"{s['name']}: {'active' if s['active'] else 'inactive'}, wal_status {s['wal_status']}, "
                f"retained WAL {(s['retained_bytes'] or 0) / 1048576:.1f} MiB"
                + (f", {s['safe_wal_size'] / 1048576:.0f} MiB before invalidation" if s["safe_wal_size"] is not None else "")
                + (" — " + _line("status.slot_lost") if s["wal_status"] == "lost" else "")
                for s in data]
    if name == "lag":
        out = []
        for g in data:
            out.append(f"{g['group']} ({g['state']}): lag {g['lag']}")
            out += [f"    {t}: {v['lag']}" + (f" (oldest {v['oldest_seconds']:.0f}s)" if v["lag"] else "")
                    for t, v in g["topics"].items()]
        return out
    if name == "worker":
        if not data.get("running"):
            return [data.get("note", "not running")]
        held = data.get("held") or {}
        return [f"{data.get('app')}: stages {', '.join(data.get('agents', []))}; held records {held.get('records', '-')}"
                + (f", oldest waiting {held['oldest_seconds']:.0f}s (holds the watermark)" if held.get("oldest_seconds") else "")]
    if name == "delivery":
        if "staging" in data:
            return [data["staging"]]
        out = [f"watermark {c}: {m}" for c, m in sorted(data["watermarks"].items())] or ["watermark: none yet"]
        out.append(f"sink clock {data['sink_clock']} (last tick {data['sink_tick_at']})")
        out.append(f"{'table':<10} {'batch':<10} {'state':<21} {'staged':>7} {'pending':>7}  window closes in")
        out += [f"{b['table']:<10} {b['batch']:<10} {b['state']:<21} {b['staged']:>7} {b['pending']:>7}  "
                f"{_countdown(b['window_seconds_left'])}" for b in data["batches"][:limit]]
        return out
    if name == "ledger":
        return [f"{r['table']:<10} {r['batch']:<10} report_datetime {r['report_datetime']}  {r['rows']:>7} rows  {r['kind']}"
                for r in data]
    if name == "quarantine":
        return [f"{q['table']:<10} {q['rule']:<24} {q['open']:>6} open" for q in data]
    if name == "replays":
        return ([f"held for a reference row: {data['held']} ({data['held_quarantined']} already quarantined), "
                 f"oldest since {data['oldest_held'] or '-'}"]
                + [f"replay {r['id']} {r['kind']} by {r['operator']}: {r['sent']} sent, requested {r['requested']} "
                   f"({r['reason']})" for r in data["in_flight"]])
    return [str(data)]


def _line(message_id: str, **params: Any) -> str:
    """A catalogue message on one line (both languages: Chinese / English)."""
    return render(message_id, params, joiner=" / ")


def screen(sections: dict[str, dict[str, Any]], limit: int) -> list[str]:
    out = []
    for name, result in sections.items():
        out.append(f"== {_line('status.' + name)}")
        lines = _lines(name, result["data"], limit) if result["ok"] else [_line("status.unreachable",
                                                                               detail=result["error"])]
        out += [f"  {line}" for line in lines or ["(nothing)"]]
    return out


@command("status", help="status.help")
@click.option("--batches", default=40, show_default=True, help="status.batches")
@click.option("--ledger", "ledger_rows", default=10, show_default=True, help="status.ledger_rows")
@click.option("--all-topics", is_flag=True, help="status.all_topics")
@click.option("--json", "as_json", is_flag=True, help="status.json")
@pass_settings
def cli(settings: Settings, batches: int, ledger_rows: int, all_topics: bool, as_json: bool) -> None:
    sections = collect(settings, batches, ledger_rows, all_topics)
    if as_json:
        click.echo(json.dumps(sections, ensure_ascii=False, indent=2, default=str))
        return
    for line in screen(sections, batches):
        click.echo(line)
