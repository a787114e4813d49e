"""The local Prometheus runs the deployment's config with the local worker, interval and rule paths."""
from pathlib import Path

import yaml
from devstack.prometheus import JOB, local_config
from hisbridge.settings import defaults


def test_the_local_config_is_the_deployments_with_the_local_worker():
    folder = defaults().paths.deploy / "prometheus"
    template = yaml.safe_load((folder / "prometheus.yml").read_text())
    config = local_config(template, folder, "127.0.0.1:63066", "5s")
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == JOB]
    assert job["static_configs"] == [{"targets": ["127.0.0.1:63066"]}] and job["metrics_path"] == "/metrics"
    assert config["global"]["scrape_interval"] == config["global"]["evaluation_interval"] == "5s"
    assert [Path(p) for p in config["rule_files"]] == [folder / "hisbridge.rules.yml"]
    assert template["scrape_configs"][0]["static_configs"] == [{"targets": ["worker:6066"]}]   # untouched
