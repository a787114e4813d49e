"""The jars the broker and Connect run from: fetched by deploy/pom.xml into deploy/lib/ (git-ignored)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from hisbridge import config
from hisbridge.stack.procs import StackError

PLUGINS = ("debezium-connector-postgres", "debezium-connector-mysql", "debezium-connector-mariadb")


def kafka_lib() -> Path:
    return config.jars_dir() / "kafka"


def connect_lib() -> Path:
    return config.jars_dir() / "connect"


def plugin_path() -> Path:
    return config.jars_dir() / "plugins"


def missing() -> list[Path]:
    folders = [kafka_lib(), connect_lib(), *(plugin_path() / p for p in PLUGINS)]
    return [f for f in folders if not any(f.glob("*.jar"))]


def ensure() -> None:
    """Fetch the jars when a folder is empty: offline first (a warm ~/.m2 needs no network)."""
    if not missing():
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("Maven (mvn) is needed to fetch the Kafka/Debezium jars: apt-get install maven")
    pom = str(config.deploy_dir() / "pom.xml")
    base = [mvn, "-q", "-B", "-Dstyle.color=never", "-f", pom, f"-Djars.root={config.jars_dir()}", "initialize"]
    if subprocess.run([*base, "-o"], capture_output=True).returncode == 0 and not missing():
        return
    proc = subprocess.run(base, capture_output=True, text=True)
    if proc.returncode != 0 or missing():
        raise StackError(f"fetching jars with {' '.join(base)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


def java() -> str:
    if os.environ.get("HISBRIDGE_JAVA"):
        return os.environ["HISBRIDGE_JAVA"]
    if os.environ.get("JAVA_HOME"):
        return str(Path(os.environ["JAVA_HOME"]) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise StackError("Java 17+ is needed for Kafka and Kafka Connect: apt-get install openjdk-17-jre-headless")
    return found


def classpath(folder: Path) -> str:
    return str(folder / "*")
