"""The worker's metrics during and after the session's shared demo day (support.demo_day; tests/support/e2e:
200 visits, 5 % bad), scraped by a real Prometheus (Debian's binary with deploy/prometheus/'s config and alert
rules, its own port and data folder): lag rises and returns to exactly 0, the quarantine and held gauges match
`hisbridge quarantine list` and the held-records topic, the window countdown matches the schedule on the steered
clock, the last-flush gauge is the ledger's report_datetime, and every dashboard panel's and every alert's PromQL
is valid and returns series."""
from __future__ import annotations

import json
import os
import re
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

import pytest
import yaml
from hisbridge.clock import as_shanghai
from hisbridge.contract import held_topic, transform_group
from hisbridge.delivery.schedule import batch_by_name, load_schedule
from click.testing import CliRunner
from hisbridge.cli import main as cli_main
from hisbridge.runtime.topics import read_topic
from hisbridge.settings import environment_for
from support import wait_for
from support.demo_day import scrape

pytestmark = pytest.mark.stack
DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
# series that exist only while something is broken; their alerts' other parts are checked here, and the
# series themselves by tests/stack/ops/test_connector_health.py
FAILURE_ONLY = {"hisbridge_connector_task_failed_info"}
UP = 'up{job="hisbridge-worker"}'
METRIC = re.compile(r"\b((?:hisbridge|kafka)_[a-z_]+|up)\b(?=\s*[{\[)]|\s*$|\s*[=!<>*+/-]|\s+(?:and|or|unless)\b)")


def series(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        m = re.match(rf"^{name}(?:{{(.*)}})? (\S+)$", line)
        if m:
            out.append((dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or "")), float(m.group(2))))
    return out


def query(url: str, expr: str) -> dict:
    with urllib.request.urlopen(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}), timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def scenario(demo_day):
    """The session's shared demo day (support.demo_day), sampled while it ran and scraped by Prometheus."""
    return demo_day.run, demo_day.web, demo_day.prometheus_url, demo_day.sampled


def group_lags(text: str, app_id: str) -> dict[str, float]:
    return {s["consumergroup"]: v for s, v in series(text, "kafka_consumergroup_lag_sum")
            if s["consumergroup"] in (app_id, transform_group(app_id))}


def test_lag_rises_during_the_day_and_returns_to_exactly_zero(scenario):
    run, web, url, texts = scenario
    app_id = run.settings.worker.app_id
    assert max((sum(group_lags(t, app_id).values()) for t in texts), default=0) > 0
    wait_for("lag 0 on the raw and the core topics", lambda: (lags := group_lags(scrape(web), app_id))
             and len(lags) == 2 and all(v == 0 for v in lags.values()), 120, 0.5)
    assert float(query(url, f'max_over_time(sum(kafka_consumergroup_lag_sum{{consumergroup="{app_id}"}})[30m:1s])')
                 ["data"]["result"][0]["value"][1]) > 0


def test_quarantine_and_held_gauges_match_quarantine_list_and_the_held_topic(scenario):
    run, web, url, _ = scenario
    env = {**os.environ, **environment_for(run.settings)}
    listed = json.loads(CliRunner().invoke(cli_main, ["quarantine", "list", "--json"], env=env,
                                           catch_exceptions=False).output)["counts"]
    want = {(c["table"], c["rule"]): float(c["entries"]) for c in listed if c["state"] == "open"}
    assert want, "the scenario plants bad data"

    def gauges() -> dict:
        return {(s["table"], s["rule"]): v for s, v in series(scrape(web), "hisbridge_quarantine_open")}
    wait_for("quarantine gauges equal to `quarantine list`", lambda: gauges() == want, 60, 1)
    latest: dict = {}
    for _, key, value in read_topic(run.settings.connections.kafka_bootstrap, held_topic(run.settings.worker.app_id)):
        latest[key] = value
    (held,) = series(scrape(web), "hisbridge_held_records")
    assert held[1] == sum(v is not None for v in latest.values()) == 0


def test_the_window_countdown_follows_the_schedule_on_the_steered_clock(scenario):
    run, web, _, sampled = scenario

    def inside_the_window() -> str | None:      # the clock stays in D's window after the run
        text = scrape(web)
        return text if any(labels["cadence"] == "daily" and v == 1.0
                           for labels, v in series(text, "hisbridge_window_open")) else None
    texts = [*sampled, wait_for("a refresh inside D's window", inside_the_window, 60, 0.5)]
    schedule = load_schedule(run.settings.paths.schedule)
    checked = 0
    for text in texts:
        clock = series(text, "hisbridge_sink_clock_timestamp_seconds")
        for labels, seconds in series(text, "hisbridge_window_close_seconds"):
            if labels["cadence"] != "daily" or not clock:
                continue
            end = batch_by_name("daily", labels["batch"], schedule.windows).window_end.timestamp()
            assert abs(end - clock[0][1] - seconds) < 1e-3
            assert 0 < seconds <= 24 * 3600      # the current or the next window, never a past one
            checked += 1
    opened = {v for text in texts for labels, v in series(text, "hisbridge_window_open") if labels["cadence"] == "daily"}
    assert checked > 10 and opened == {0.0, 1.0}   # held before 18:00, then moved into D's window


def test_prometheus_scrapes_the_worker(scenario):
    _, web, url, _ = scenario
    result = wait_for("the worker as an up target", lambda: query(url, 'up{job="hisbridge-worker"} == 1')
                      ["data"]["result"], 60, 1)
    assert result[0]["metric"]["instance"] == f"127.0.0.1:{web}"
    rules = json.loads(urllib.request.urlopen(f"{url}/api/v1/rules", timeout=10).read())["data"]["groups"]
    assert {r["name"] for g in rules for r in g["rules"]} >= {"HisbridgeBatchAtRisk", "HisbridgeSlotLost"}


def dashboard_exprs() -> list[tuple[str, str]]:
    doc = json.loads((DEPLOY / "grafana" / "dashboards" / "hisbridge.json").read_text(encoding="utf-8"))
    return [(p["title"], t["expr"].replace("$__rate_interval", "10m")) for p in doc["panels"]
            for t in p.get("targets", [])]


def still_missing(what: str, find: Callable[[], list]) -> list:
    """What `find` reports once it has stayed empty, or what it still reports after 15 s: one failed scrape
    (its timeout is the 1 s interval, on a loaded machine) leaves every series of the target stale until the
    next one."""
    try:
        wait_for(what, lambda: not find(), 15, 1)
        return []
    except AssertionError:
        return find()


def test_every_dashboard_expression_returns_series(scenario):
    _, web, url, _ = scenario
    exprs = dashboard_exprs()
    assert len(exprs) > 20

    def empty() -> list[tuple[str, str]]:
        out = []
        for title, expr in exprs:
            answer = query(url, expr)
            assert answer["status"] == "success", (title, expr, answer)
            if not answer["data"]["result"]:
                out.append((title, expr))
        return out
    missing = still_missing("every dashboard expression with series", empty)
    assert not missing, absent_series(web, url, {m for _, e in missing for m in METRIC.findall(e)})


def absent_series(web: int, url: str, names: set[str]) -> str:
    """What the worker serves and Prometheus holds of the series a check found missing: which of the two lost
    them."""
    direct = [line for line in scrape(web).splitlines() if line.startswith(tuple(names))]
    history = {q: query(url, q)["data"]["result"] for q in (
        f"count_over_time({UP}[1m]) - sum_over_time({UP}[1m])",      # failed scrapes in the last minute
        *(f"count_over_time({n}[10m])" for n in sorted(names)))}
    return f"the worker's /metrics: {direct}; Prometheus: {history}"


def test_the_last_flush_gauge_is_the_ledgers_report_datetime(scenario):
    """Read from the staging ledger, not counted in memory: a restarted worker, a recovered flush and one the
    CLI forced all show; the value is the batch's stamp (the steered clock here), not the scrape's time."""
    run, web, _, _ = scenario
    latest: dict[str, float] = {}     # a table's reports are one per batch
    for r in run.out.reports:
        for f in r.flushes:
            latest[r.table] = max(latest.get(r.table, 0.0), as_shanghai(f.report_datetime).timestamp())
    want = set(latest.items())
    assert want, "the demo day flushes"

    def differing() -> list[tuple[str, float]]:   # entries of only one side: the gauge's or the ledger's
        gauge = {(labels["table"], v) for labels, v in series(scrape(web), "hisbridge_last_flush_timestamp_seconds")}
        return sorted(gauge ^ want)
    # the refresh that reads the ledger after the last flush's mark may still be under way
    assert not still_missing("the last-flush gauge equal to the ledger", differing)


def test_every_alert_expression_is_valid_and_its_series_exist(scenario):
    _, _, url, _ = scenario
    rules = yaml.safe_load((DEPLOY / "prometheus" / "hisbridge.rules.yml").read_text(encoding="utf-8"))
    alerts = [(r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]

    def missing() -> list[tuple[str, str]]:
        out = []
        for name, expr in alerts:
            assert query(url, expr)["status"] == "success", (name, expr)
            metrics = set(METRIC.findall(expr))
            assert metrics, (name, expr)
            out += [(name, m) for m in metrics - FAILURE_ONLY if not query(url, f"count({m})")["data"]["result"]]
        return out
    assert not still_missing("every alert's series", missing)
