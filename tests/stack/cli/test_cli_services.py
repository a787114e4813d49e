"""The CLI against real services: a refused flush on the real staging and front-end databases (in
Asia/Shanghai time), and every service it needs — Kafka, Kafka Connect, PostgreSQL — unreachable at a port
nothing listens on: one line per language naming the address, exit 2, within seconds (the clients alone
would wait 30 s and print a traceback). The worker too."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from hisbridge.cli import main
from support import free_port

pytestmark = pytest.mark.stack
FEW_SECONDS = 8.0


def run(env: dict, *args: str):
    began = time.monotonic()
    result = CliRunner().invoke(main, list(args), env={"HISBRIDGE_LANG": "both", **env})
    return result, time.monotonic() - began


def test_flush_outside_the_window_is_refused_in_local_time(resources):
    env = {"HISBRIDGE_STAGING_DSN": resources.database("frontend", f"staging_cli_{resources.id}"),
           "HISBRIDGE_FRONTEND_DSN": resources.database("frontend", f"frontend_cli_{resources.id}")}
    result, _ = run(env, "flush", "--table", "mjzzlxx", "--batch", "2026-12-01",
                    "--now", "2026-12-01T18:26:15.276411+00:00")
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines() == [
        "拒绝写入：现在 2026-12-02 02:26:15+08:00 没有打开的上报窗口（日批次 2026-12-01 的窗口为 2026-12-01 18:00:00+08:00 "
        "至 2026-12-01 22:00:00+08:00）；操作员可用 --force --operator 姓名 --reason 原因 强制",
        "refused: no delivery window is open at 2026-12-02 02:26:15+08:00 (daily batch 2026-12-01: window "
        "2026-12-01 18:00:00+08:00 to 2026-12-01 22:00:00+08:00); an operator may use --force --operator NAME "
        "--reason WHY"]
    plan, _ = run(env, "flush", "--plan", "--now", "2026-12-01T18:26:15+00:00")
    assert plan.exit_code == 0 and '"now": "2026-12-02 02:26:15+08:00"' in plan.stdout


def test_reconcile_with_kafka_unreachable_names_the_address_within_seconds():
    address = f"127.0.0.1:{free_port()}"
    result, seconds = run({"HISBRIDGE_KAFKA_BOOTSTRAP": address}, "reconcile", "--batch", "2026-12-01")
    assert (result.exit_code, seconds < FEW_SECONDS) == (2, True), (result.output, seconds)
    assert result.stderr.splitlines() == [
        f"无法连接 Kafka {address}（Connection refused）：Kafka 是否在运行？地址由 HISBRIDGE_KAFKA_BOOTSTRAP 设置",
        f"Kafka unreachable at {address} (Connection refused): is it running? The address is HISBRIDGE_KAFKA_BOOTSTRAP"]


def test_postgres_unreachable_names_the_address_and_the_setting():
    port = free_port()
    result, seconds = run({"HISBRIDGE_STAGING_DSN": f"host=127.0.0.1 port={port} dbname=staging user=postgres"},
                          "flush", "--plan")
    assert (result.exit_code, seconds < FEW_SECONDS) == (2, True), (result.output, seconds)
    detail = f'connection to server at "127.0.0.1", port {port} failed: Connection refused'
    assert result.stderr.splitlines() == [
        f"无法连接 PostgreSQL 127.0.0.1:{port}/staging（{detail}）：服务是否在运行？地址由 HISBRIDGE_STAGING_DSN 设置",
        f"PostgreSQL unreachable at 127.0.0.1:{port}/staging ({detail}): is it running? The address is "
        f"HISBRIDGE_STAGING_DSN"]


def test_connect_unreachable_names_the_url():
    url = f"http://127.0.0.1:{free_port()}"
    result, seconds = run({"HISBRIDGE_CONNECT_URL": url}, "connectors", "status")
    assert (result.exit_code, seconds < FEW_SECONDS) == (2, True), (result.output, seconds)
    assert result.stderr.splitlines() == [
        f"无法连接 Kafka Connect {url}（Connection refused）：Connect 是否在运行？地址由 HISBRIDGE_CONNECT_URL 设置",
        f"Kafka Connect unreachable at {url} (Connection refused): is it running? The address is HISBRIDGE_CONNECT_URL"]


def test_the_worker_with_kafka_unreachable_says_so_in_two_lines(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "HISBRIDGE_KAFKA_BOOTSTRAP": address, "HISBRIDGE_LANG": "both",
           "HISBRIDGE_WORKER_WEB_PORT": "0", "HISBRIDGE_VAR": str(tmp_path)}
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "hisbridge.cli.worker"], env=env, capture_output=True, text=True,
                          timeout=60)
    seconds = time.monotonic() - began
    assert (done.returncode, seconds < FEW_SECONDS + 5) == (2, True), (done.stderr, seconds)
    assert done.stderr.splitlines() == [
        f"无法连接 Kafka {address}（Connection refused）：Kafka 是否在运行？地址由 HISBRIDGE_KAFKA_BOOTSTRAP 设置",
        f"Kafka unreachable at {address} (Connection refused): is it running? The address is HISBRIDGE_KAFKA_BOOTSTRAP"]
