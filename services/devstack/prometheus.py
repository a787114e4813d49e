"""The local Prometheus (Debian's package, `make prometheus`): deploy/prometheus/prometheus.yml with the
worker's local address, the stack's scrape interval and absolute rule paths, data under var/prometheus/."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from devstack import procs
from devstack.procs import Procs, StackError
from hisbridge.settings import Settings

JOB = "hisbridge-worker"


def local_config(template: dict[str, Any], rules_dir: Path, worker_target: str, interval: str) -> dict[str, Any]:
    """The deployment's config for this machine: same jobs and rules, the local worker as target."""
    config = json.loads(json.dumps(template))      # a deep copy of plain YAML data
    config["global"] = {**config.get("global", {}), "scrape_interval": interval, "evaluation_interval": interval}
    config["rule_files"] = [str(rules_dir / name) for name in config.get("rule_files", [])]
    for job in config["scrape_configs"]:
        if job["job_name"] == JOB:
            job["static_configs"] = [{"targets": [worker_target]}]
    return config


class Prometheus:
    name = "prometheus"
    in_stack = True

    def __init__(self, settings: Settings) -> None:
        self.settings, self.procs = settings, Procs(settings.paths.var)
        self.home = settings.paths.var / "prometheus"
        self.config_file = self.home / "prometheus.yml"
        self.rules_dir = settings.paths.deploy / "prometheus"

    @property
    def port(self) -> int:
        return self.settings.stack.prometheus_port

    @property
    def url(self) -> str:
        return self.settings.connections.prometheus_url

    def pid(self) -> int | None:
        return self.procs.pid(self.name)

    def is_running(self) -> bool:
        return procs.is_alive(self.pid(), str(self.config_file))

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def write_config(self) -> None:
        template = yaml.safe_load((self.rules_dir / "prometheus.yml").read_text(encoding="utf-8"))
        target = f"127.0.0.1:{self.settings.worker.web_port}"
        config = local_config(template, self.rules_dir, target, self.settings.stack.prometheus_scrape)
        self.home.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    def start(self) -> bool:
        log = self.procs.log_file(self.name)
        if self.is_running():
            procs.wait_until(self.ready, 60, "prometheus readiness", log)
            return False
        binary = self.settings.stack.prometheus
        if not binary.exists():
            raise StackError(f"prometheus: {binary} is missing; run `make prometheus` (deploy/install-prometheus.sh)")
        if not procs.port_bindable(self.port):
            raise StackError(f"prometheus: port {self.port} is taken by another process")
        self.write_config()
        argv = [str(binary), f"--config.file={self.config_file}", f"--storage.tsdb.path={self.home / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=3d"]
        new_pid = self.procs.spawn(self.name, argv)
        procs.wait_until(self.ready, 60, "prometheus readiness", log, alive=lambda: procs.is_running_pid(new_pid))
        return True

    def stop(self) -> bool:
        return self.procs.stop_component(self.name, str(self.config_file), timeout=30)
