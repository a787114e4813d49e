"""Single-node KRaft Kafka broker (broker + controller in one JVM), run from deploy/lib/kafka."""
from __future__ import annotations

import base64
import subprocess
import uuid
from pathlib import Path

from devstack import jars, procs
from devstack.procs import Procs, StackError
from hisbridge.settings import Settings

MAIN = "kafka.Kafka"


def server_properties(port: int, controller_port: int, data_dir: Path) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        # one node: every internal topic has a single replica
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
        "log.retention.hours": "168",
    }
    return "".join(f"{k}={v}\n" for k, v in settings.items())


def cluster_id() -> str:
    """Kafka's Uuid text form: URL-safe base64 of 16 random bytes, unpadded. Like Kafka's own
    Uuid.randomUuid, never one starting with '-': the storage tool would read it as an option."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def broker_ready(bootstrap: str, port: int) -> bool:
    """The broker answers a metadata request (not just an open port)."""
    if not procs.port_open(port):
        return False
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


class Kafka:
    name = "kafka"
    in_stack = True

    def __init__(self, settings: Settings) -> None:
        self.settings, self.procs = settings, Procs(settings.paths.var)
        self.home = settings.paths.var / "kafka"
        self.properties_file = self.home / "server.properties"

    @property
    def port(self) -> int:
        return self.settings.stack.kafka_port

    def pid(self) -> int | None:
        return self.procs.pid(self.name)

    def is_running(self) -> bool:
        return procs.is_alive(self.pid(), str(self.properties_file))

    def ready(self) -> bool:
        return broker_ready(self.settings.connections.kafka_bootstrap, self.port)

    def _format_storage(self) -> None:
        """Format the KRaft log dir once (meta.properties marks it formatted)."""
        if (self.home / "data" / "meta.properties").exists():
            return
        argv = [*jars.jvm(self.settings, "256m", self.procs.log_dir), "-cp",
                jars.classpath(jars.kafka_lib(self.settings)), "kafka.tools.StorageTool", "format",
                "-t", cluster_id(), "-c", str(self.properties_file)]
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            raise StackError(f"formatting Kafka storage failed: {proc.stderr.strip() or proc.stdout.strip()}")

    def start(self) -> bool:
        log = self.procs.log_file(self.name)
        if self.is_running():
            procs.wait_until(self.ready, 60, "kafka readiness", log)
            return False
        stack = self.settings.stack
        for port in (stack.kafka_port, stack.kafka_controller_port):
            if not procs.port_bindable(port):
                raise StackError(f"kafka: port {port} is taken by another process")
        jars.ensure(self.settings)
        self.home.mkdir(parents=True, exist_ok=True)
        self.properties_file.write_text(server_properties(stack.kafka_port, stack.kafka_controller_port,
                                                          self.home / "data"))
        self._format_storage()
        new_pid = self.procs.spawn(self.name, [*jars.jvm(self.settings, stack.kafka_heap, self.procs.log_dir), "-cp",
                                               jars.classpath(jars.kafka_lib(self.settings)), MAIN,
                                               str(self.properties_file)])
        procs.wait_until(self.ready, 90, "kafka readiness", log, alive=lambda: procs.is_running_pid(new_pid))
        return True

    def stop(self) -> bool:
        return self.procs.stop_component(self.name, str(self.properties_file), timeout=60)
