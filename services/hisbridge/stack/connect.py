"""Kafka Connect in distributed mode (one worker) with the Debezium connectors on its plugin path."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from hisbridge import config
from hisbridge.stack import jars, kafka, procs
from hisbridge.stack.procs import StackError

NAME = "connect"
MAIN = "org.apache.kafka.connect.cli.ConnectDistributed"
REQUIRED_PLUGIN = "io.debezium.connector.postgresql.PostgresConnector"


def home() -> Path:
    return config.var_dir() / "connect"


def properties_file() -> Path:
    return home() / "connect-distributed.properties"


def worker_properties() -> str:
    port = config.connect_port()
    settings = {
        "bootstrap.servers": config.kafka_bootstrap(),
        "group.id": "hisbridge-connect",
        # JSON with schemas: the decode stage needs Debezium's semantic types (MicroTimestamp, Decimal…)
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "true",
        "value.converter.schemas.enable": "true",
        "config.storage.topic": "hisbridge-connect-configs",
        "offset.storage.topic": "hisbridge-connect-offsets",
        "status.storage.topic": "hisbridge-connect-status",
        "config.storage.replication.factor": "1",
        "offset.storage.replication.factor": "1",
        "status.storage.replication.factor": "1",
        "offset.storage.partitions": "5",
        "status.storage.partitions": "1",
        "offset.flush.interval.ms": "5000",
        "listeners": f"http://127.0.0.1:{port}",
        "rest.advertised.host.name": "127.0.0.1",
        "rest.advertised.port": str(port),
        "plugin.path": str(jars.plugin_path()),
        "topic.creation.enable": "true",
        # Connector passwords stay out of Connect's config topic and REST answers: a connector config holds
        # ${file:<secrets>/connectors/<name>.properties:password}, resolved by the worker at start-up.
        "config.providers": "file",
        "config.providers.file.class": "org.apache.kafka.common.config.provider.FileConfigProvider",
        "config.providers.file.param.allowed.paths": str(config.secrets_dir()),
    }
    return "".join(f"{k}={v}\n" for k, v in settings.items())


def pid() -> int | None:
    return procs.read_pid(procs.pid_file(NAME))


def marker() -> str:
    return str(properties_file())


def is_running() -> bool:
    return procs.is_alive(pid(), marker())


def get_json(path: str, timeout: float = 3.0):
    with urllib.request.urlopen(config.connect_url() + path, timeout=timeout) as resp:
        return json.loads(resp.read())


def ready() -> bool:
    """REST answers, the worker joined its group (/connectors) and Debezium is on the plugin path."""
    if not procs.port_open(config.connect_port()):
        return False
    try:
        get_json("/connectors")
        plugins = get_json("/connector-plugins")
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return any(p.get("class") == REQUIRED_PLUGIN for p in plugins)


def start() -> bool:
    if is_running():
        procs.wait_until(ready, 120, "connect readiness", procs.log_file(NAME))
        return False
    if not procs.port_bindable(config.connect_port()):
        raise StackError(f"connect: port {config.connect_port()} is taken by another process")
    if not kafka.ready():
        raise StackError("connect needs the Kafka broker: start it first (`hisbridge stack up`)")
    jars.ensure()
    home().mkdir(parents=True, exist_ok=True)
    properties_file().write_text(worker_properties())
    heap = config.env_str("HISBRIDGE_CONNECT_HEAP", "768m")
    new_pid = procs.spawn(NAME, [*kafka.jvm(heap), "-cp", jars.classpath(jars.connect_lib()), MAIN,
                                 str(properties_file())])
    procs.wait_until(ready, 180, "connect readiness", procs.log_file(NAME),
                     alive=lambda: procs.is_running_pid(new_pid))
    return True


def stop() -> bool:
    return procs.stop_component(NAME, marker(), timeout=60)
