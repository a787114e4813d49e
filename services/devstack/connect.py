"""Kafka Connect in distributed mode (one worker) with the Debezium connectors on its plugin path."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

from devstack import jars, procs
from devstack.kafka import broker_ready
from devstack.procs import Procs, StackError
from hisbridge.settings import Settings

MAIN = "org.apache.kafka.connect.cli.ConnectDistributed"
REQUIRED_PLUGIN = "io.debezium.connector.postgresql.PostgresConnector"


def worker_properties(settings: Settings) -> str:
    port = settings.stack.connect_port
    values = {
        "bootstrap.servers": settings.connections.kafka_bootstrap,
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
        "plugin.path": str(jars.plugin_path(settings)),
        "topic.creation.enable": "true",
        # Connector passwords stay out of Connect's config topic and REST answers: a connector config holds
        # ${file:<secrets>/connectors/<name>.properties:password}, resolved by the worker at start-up.
        # connectors set their own producer limits (producer.override.max.request.size in connectors/)
        "connector.client.config.override.policy": "All",
        "config.providers": "file",
        "config.providers.file.class": "org.apache.kafka.common.config.provider.FileConfigProvider",
        "config.providers.file.param.allowed.paths": str(settings.paths.secrets),
    }
    return "".join(f"{k}={v}\n" for k, v in values.items())


class Connect:
    name = "connect"
    in_stack = True

    def __init__(self, settings: Settings) -> None:
        self.settings, self.procs = settings, Procs(settings.paths.var)
        self.home = settings.paths.var / "connect"
        self.properties_file = self.home / "connect-distributed.properties"

    @property
    def port(self) -> int:
        return self.settings.stack.connect_port

    def pid(self) -> int | None:
        return self.procs.pid(self.name)

    def is_running(self) -> bool:
        return procs.is_alive(self.pid(), str(self.properties_file))

    def _get_json(self, path: str, timeout: float = 3.0):
        with urllib.request.urlopen(self.settings.connections.connect_url + path, timeout=timeout) as resp:
            return json.loads(resp.read())

    def ready(self) -> bool:
        """REST answers, the worker joined its group (/connectors) and Debezium is on the plugin path."""
        if not procs.port_open(self.port):
            return False
        try:
            self._get_json("/connectors")
            plugins = self._get_json("/connector-plugins")
        except (urllib.error.URLError, OSError, ValueError):
            return False
        return any(p.get("class") == REQUIRED_PLUGIN for p in plugins)

    def start(self) -> bool:
        log = self.procs.log_file(self.name)
        if self.is_running():
            procs.wait_until(self.ready, 120, "connect readiness", log)
            return False
        if not procs.port_bindable(self.port):
            raise StackError(f"connect: port {self.port} is taken by another process")
        if not broker_ready(self.settings.connections.kafka_bootstrap, self.settings.stack.kafka_port):
            raise StackError("connect needs the Kafka broker: start it first (`hisbridge stack up`)")
        jars.ensure(self.settings)
        self.home.mkdir(parents=True, exist_ok=True)
        self.properties_file.write_text(worker_properties(self.settings))
        argv = [*jars.jvm(self.settings, self.settings.stack.connect_heap, self.procs.log_dir), "-cp",
                jars.classpath(jars.connect_lib(self.settings)), MAIN, str(self.properties_file)]
        new_pid = self.procs.spawn(self.name, argv)
        procs.wait_until(self.ready, 180, "connect readiness", log, alive=lambda: procs.is_running_pid(new_pid))
        return True

    def stop(self) -> bool:
        return self.procs.stop_component(self.name, str(self.properties_file), timeout=60)
