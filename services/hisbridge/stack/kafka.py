"""Single-node KRaft Kafka broker (broker + controller in one JVM), run from deploy/lib/kafka."""
from __future__ import annotations

import base64
import subprocess
import uuid
from pathlib import Path

from hisbridge import config
from hisbridge.stack import jars, procs
from hisbridge.stack.procs import StackError

NAME = "kafka"
MAIN = "kafka.Kafka"


def home() -> Path:
    return config.var_dir() / "kafka"


def properties_file() -> Path:
    return home() / "server.properties"


def server_properties() -> str:
    port, ctl = config.kafka_port(), config.kafka_controller_port()
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{ctl}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{ctl}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(home() / "data"),
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


def jvm(heap: str) -> list[str]:
    """Modest heaps: the box has 2 cores and runs broker, Connect, two PostgreSQL and the worker."""
    return [jars.java(), "-Xms128m", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={config.deploy_dir() / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={procs.log_dir()}"]


def cluster_id() -> str:
    """Kafka's Uuid text form: URL-safe base64 of 16 random bytes, unpadded. Like Kafka's own
    Uuid.randomUuid, never one starting with '-': the storage tool would read it as an option."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def format_storage() -> None:
    """Format the KRaft log dir once (meta.properties marks it formatted)."""
    if (home() / "data" / "meta.properties").exists():
        return
    argv = [*jvm("256m"), "-cp", jars.classpath(jars.kafka_lib()), "kafka.tools.StorageTool", "format",
            "-t", cluster_id(), "-c", str(properties_file())]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise StackError(f"formatting Kafka storage failed: {proc.stderr.strip() or proc.stdout.strip()}")


def pid() -> int | None:
    return procs.read_pid(procs.pid_file(NAME))


def marker() -> str:
    return str(properties_file())


def is_running() -> bool:
    return procs.is_alive(pid(), marker())


def ready() -> bool:
    """The broker answers a metadata request (not just an open port)."""
    if not procs.port_open(config.kafka_port()):
        return False
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError
    try:
        admin = KafkaAdminClient(bootstrap_servers=config.kafka_bootstrap(), request_timeout_ms=3000)
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def start() -> bool:
    if is_running():
        procs.wait_until(ready, 60, "kafka readiness", procs.log_file(NAME))
        return False
    for port in (config.kafka_port(), config.kafka_controller_port()):
        if not procs.port_bindable(port):
            raise StackError(f"kafka: port {port} is taken by another process")
    jars.ensure()
    home().mkdir(parents=True, exist_ok=True)
    properties_file().write_text(server_properties())
    format_storage()
    heap = config.env_str("HISBRIDGE_KAFKA_HEAP", "512m")
    new_pid = procs.spawn(NAME, [*jvm(heap), "-cp", jars.classpath(jars.kafka_lib()), MAIN,
                                 str(properties_file())])
    procs.wait_until(ready, 90, "kafka readiness", procs.log_file(NAME),
                     alive=lambda: procs.is_running_pid(new_pid))
    return True


def stop() -> bool:
    return procs.stop_component(NAME, marker(), timeout=60)
