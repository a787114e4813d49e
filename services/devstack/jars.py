"""The jars the broker and Connect run from: fetched by deploy/pom.xml into deploy/lib/ (git-ignored)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from devstack.procs import StackError
from hisbridge.settings import Settings

PLUGINS = ("debezium-connector-postgres", "debezium-connector-mysql", "debezium-connector-mariadb",
           "debezium-connector-jdbc")  # the JDBC sink: the peer bench/bench_peer.py measures against


def kafka_lib(settings: Settings) -> Path:
    return settings.paths.jars / "kafka"


def connect_lib(settings: Settings) -> Path:
    return settings.paths.jars / "connect"


def plugin_path(settings: Settings) -> Path:
    return settings.paths.jars / "plugins"


def missing(settings: Settings) -> list[Path]:
    folders = [kafka_lib(settings), connect_lib(settings), *(plugin_path(settings) / p for p in PLUGINS)]
    return [f for f in folders if not any(f.glob("*.jar"))]


def ensure(settings: Settings) -> None:
    """Fetch the jars when a folder is empty: offline first (a warm ~/.m2 needs no network)."""
    if not missing(settings):
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("Maven (mvn) is needed to fetch the Kafka/Debezium jars: apt-get install maven")
    pom = str(settings.paths.deploy / "pom.xml")
    base = [mvn, "-q", "-B", "-Dstyle.color=never", "-f", pom, f"-Djars.root={settings.paths.jars}", "initialize"]
    if subprocess.run([*base, "-o"], capture_output=True).returncode == 0 and not missing(settings):
        return
    proc = subprocess.run(base, capture_output=True, text=True)
    if proc.returncode != 0 or missing(settings):
        raise StackError(f"fetching jars with {' '.join(base)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


def java(settings: Settings) -> str:
    if settings.stack.java:
        return settings.stack.java
    if settings.stack.java_home:
        return str(settings.stack.java_home / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise StackError("Java 17+ is needed for Kafka and Kafka Connect: apt-get install openjdk-17-jre-headless")
    return found


def classpath(folder: Path) -> str:
    return str(folder / "*")


def jvm(settings: Settings, heap: str, log_dir: Path) -> list[str]:
    """Modest heaps: the box has 2 cores and runs broker, Connect, two PostgreSQL and the worker."""
    return [java(settings), "-Xms128m", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={settings.paths.deploy / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={log_dir}"]
