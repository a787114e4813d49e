"""The one demo day the stack tests share (tests/support/e2e: seed 7, 200 visits, 5 % bad, the PostgreSQL
HIS): run once per session with its worker's web port, metrics every second and its connector watched, its
/metrics sampled every half second while it runs and scraped by a real Prometheus (Debian's binary with
deploy/prometheus/'s config and rules, its own port and data folder). The demo checks (test_e2e_demo), the
metrics checks (ops/test_metrics_e2e) and the replay tests (test_e2e_replay, which change the day and so run
after the others: marker demo_day_mutates) all read it: one day instead of three."""
from __future__ import annotations

import threading
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from devstack.prometheus import Prometheus
from hisbridge.settings import Settings
from support import Resources, free_port
from support.e2e import DemoRun, run_demo


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


class Sampler(threading.Thread):
    """Scrapes the worker every half second while the demo runs."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port, self.texts, self.stop = port, [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.texts.append(scrape(self.port))
            except OSError:
                pass          # the worker is not up yet, or restarting
            self.stop.wait(0.5)


@dataclass
class DemoDay:
    run: DemoRun
    web: int                                         # the worker's web port (/metrics)
    prometheus_url: str
    sampled: list[str] = field(default_factory=list)  # /metrics texts taken while the day ran


def run_demo_day(settings: Settings, res: Resources, tmp: Path) -> DemoDay:
    web, prom_port = free_port(), free_port()
    prom = Prometheus(settings.with_values(paths={"var": tmp / "var"}, worker={"web_port": web},
                                           stack={"prometheus_port": prom_port, "prometheus_scrape": "1s"},
                                           connections={"prometheus_url": f"http://127.0.0.1:{prom_port}"}))
    res.finally_(prom.stop)
    prom.start()
    sampler = Sampler(web)
    sampler.start()
    try:
        run = run_demo(res, tmp, "day", {"HISBRIDGE_HIS_DSN": res.database("his", f"his_day_{res.id}", create=False),
                                         "HISBRIDGE_WORKER_WEB_PORT": str(web), "HISBRIDGE_METRICS_EVERY": "1",
                                         "HISBRIDGE_WATCH_CONNECTORS": f"his-day-{res.id}"})
    finally:
        sampler.stop.set()
        sampler.join()
    return DemoDay(run, web, prom.url, sampler.texts)
