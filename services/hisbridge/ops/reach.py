"""Reaching the services a command needs — Kafka, Kafka Connect, PostgreSQL — or an OperatorError within a
few seconds that names the address tried (the clients themselves would wait 30 s and then raise a traceback).

A TCP connect is the probe for Kafka and Connect: a refused port answers at once, a black-holed address
times out after `timeout`; the client that follows keeps its own, longer timeouts for real requests.
"""
from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit

from hisbridge.messages import OperatorError
from hisbridge.settings import dsn_fields

PROBE_SECONDS = 3.0


def _tcp(host: str, port: int, timeout: float) -> str | None:
    """None when host:port accepts a connection, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def _host_port(address: str, default_port: int) -> tuple[str, int]:
    host, _, port = address.strip().rpartition(":")
    return (host.strip("[]") or "127.0.0.1", int(port)) if host else (address.strip(), default_port)


def require_kafka(bootstrap: str, timeout: float = PROBE_SECONDS) -> None:
    """At least one bootstrap server accepts connections."""
    failures = []
    for server in (s for s in bootstrap.split(",") if s.strip()):
        why = _tcp(*_host_port(server, 9092), timeout)
        if why is None:
            return
        failures.append(why)
    raise OperatorError("reach.kafka", address=bootstrap, detail="; ".join(failures) or "no bootstrap server")


def require_connect(url: str, timeout: float = PROBE_SECONDS) -> None:
    parts = urlsplit(url)
    why = _tcp(parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 8083), timeout)
    if why is not None:
        raise OperatorError("reach.connect", address=url, detail=why)


def dsn_address(dsn: str) -> str:
    """host:port/dbname of a keyword DSN (never the password)."""
    fields = dsn_fields(dsn)
    return f"{fields.get('host', 'localhost')}:{fields.get('port', '5432')}/{fields.get('dbname', '')}"


def connect_postgres(dsn: str, knob: str, timeout: int = 5) -> Any:
    """A psycopg2 connection, or OperatorError naming the address and the knob that sets it."""
    import psycopg2
    try:
        return psycopg2.connect(dsn, connect_timeout=timeout)
    except psycopg2.OperationalError as exc:
        lines = str(exc).strip().splitlines()
        raise OperatorError("reach.postgres", address=dsn_address(dsn), knob=knob,
                            detail=lines[0] if lines else "connection failed") from None
