"""Debezium connectors on Kafka Connect: render a template from connectors/, apply it through the REST
API (idempotently), wait until connector and task run, and turn failures into messages naming the cause.

The HIS password is resolved at apply time (source.password or paths.secrets/his_cdc_password) and
written only to a 0600 file under the secrets folder; the connector config refers to it through Connect's
FileConfigProvider (${file:...:password}), so Connect's config topic and REST answers never hold it. Every
message that leaves this module has it redacted.
"""
from __future__ import annotations

import json
import os
import re
import string
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hisbridge.settings import Settings, is_binlog_kind

HEARTBEAT_TABLE = "hisbridge.heartbeat"
CAPTURE_GROUP = "hisbridge_capture"


class ConnectorError(RuntimeError):
    """An operator must act: Connect unreachable, configuration rejected, or the connector failed."""


@dataclass(frozen=True)
class ConnectorSpec:
    """What varies between deployments of one connector template."""
    name: str
    kind: str                   # template: connectors/his-<kind>.json (postgres, mariadb, mysql)
    tables: tuple[str, ...]     # schema.table (PostgreSQL) or db.table (MariaDB/MySQL)
    heartbeat_ms: int = 10_000


# --- pure part: names and rendering -------------------------------------------------------------------

def slot_name(connector: str) -> str:
    """A replication slot per connector (slot names allow [a-z0-9_] only)."""
    return "hisbridge_" + re.sub(r"[^a-z0-9_]", "_", connector.lower())


def include_list(kind: str, tables: tuple[str, ...]) -> str:
    """PostgreSQL captures the heartbeat table too, so heartbeat writes confirm the slot's position."""
    extra = (HEARTBEAT_TABLE,) if kind == "postgres" and HEARTBEAT_TABLE not in tables else ()
    return ",".join((*tables, *extra))


def captured_tables(config: dict[str, str] | None) -> tuple[str, ...]:
    """The HIS tables a connector's configuration captures (not the heartbeat table hisbridge adds)."""
    listed = (config or {}).get("table.include.list", "")
    return tuple(t.strip() for t in listed.split(",") if t.strip() and t.strip() != HEARTBEAT_TABLE)


def table_changes(before: tuple[str, ...], after: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(added, removed) tables between two capture lists."""
    return sorted(set(after) - set(before)), sorted(set(before) - set(after))


def databases_of(tables: tuple[str, ...]) -> str:
    """MariaDB/MySQL `database.include.list`: the databases of the captured db.table names."""
    return ",".join(sorted({t.partition(".")[0] for t in tables}))


def replica_server_id(connector: str, configured: int | None) -> int:
    """The binlog client's server id: configured, or derived from the connector name (stable, so a restart
    is the same replica; distinct per connector, as MariaDB drops a second client with the same id)."""
    return configured if configured is not None else 1_000_000 + zlib.crc32(connector.encode()) % (1 << 30)


def template_values(spec: ConnectorSpec, settings: Settings, password: str) -> dict[str, str]:
    source = settings.source
    return {
        "name": spec.name,
        "his_host": source.host,
        "his_port": str(source.port),
        "his_dbname": source.db,
        "his_user": source.user,
        "his_password": password,
        "topic_prefix": source.topic_prefix,
        "slot_name": slot_name(spec.name),
        "publication_name": slot_name(spec.name) + "_pub",
        "table_include_list": include_list(spec.kind, spec.tables),
        "heartbeat_ms": str(spec.heartbeat_ms),
        "max_retries": str(source.max_retries),
        "max_record_bytes": str(source.max_record_bytes),
        "topic_replication_factor": str(settings.connections.topic_replication),
        "server_id": str(replica_server_id(spec.name, source.server_id)),
        "database_include_list": databases_of(spec.tables),
        "kafka_bootstrap": settings.connections.kafka_bootstrap,
    }


def template_path(settings: Settings, kind: str) -> Path:
    return settings.paths.connectors / f"his-{kind}.json"


def cdc_password(settings: Settings) -> str:
    """source.password if set, else the secret `stack up` generated; an operator error otherwise."""
    if settings.source.password is not None:
        return settings.source.password.reveal()
    path = settings.paths.his_cdc_password_file
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    raise ConnectorError(f"no HIS CDC password: set HISBRIDGE_HIS_PASSWORD or run `hisbridge stack up` "
                         f"(which generates {path})")


def render(template: dict[str, str], values: dict[str, str]) -> dict[str, str]:
    """Substitute ${placeholders} value by value (no JSON quoting pitfalls); unknown ones are an error."""
    try:
        return {key: string.Template(value).substitute(values) for key, value in template.items()}
    except KeyError as exc:
        raise ConnectorError(f"connector template uses ${{{exc.args[0]}}}, which has no value") from exc


def password_reference(path: Path) -> str:
    """Connect FileConfigProvider reference, resolved by the worker (config.providers=file)."""
    return f"${{file:{path}:password}}"


def properties_line(key: str, value: str) -> str:
    """One java.util.Properties line; backslashes escaped, line breaks refused (cannot be a password)."""
    if "\n" in value or "\r" in value:
        raise ConnectorError("the HIS password must not contain line breaks")
    return f"{key}={value.replace(chr(92), chr(92) * 2)}\n"


def redact(text: str, secret: str) -> str:
    return text.replace(secret, "******") if secret else text


def failure_reason(trace: str) -> str:
    """The most telling line of a Java stack trace: the deepest 'Caused by', else the first line, with the
    exception's package dropped (`PSQLException: FATAL: password authentication failed for user "x"`)."""
    lines = [line.strip() for line in trace.splitlines() if line.strip()]
    causes = [line.removeprefix("Caused by: ") for line in lines if line.startswith("Caused by: ")]
    line = causes[-1] if causes else (lines[0] if lines else "no trace")
    return re.sub(r"^(?:[a-z_$][\w$]*\.)+(?=[A-Z][\w$]*(?:Exception|Error)\b)", "", line)


# --- Connect REST --------------------------------------------------------------------------------------

class ConnectClient:
    """Kafka Connect's REST API at one URL: a thin adapter, every failure a ConnectorError."""

    def __init__(self, url: str) -> None:
        self.url = url

    def request(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw) if raw else None
            except ValueError:
                return exc.code, {"message": raw.decode(errors="replace")}
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConnectorError(f"Kafka Connect is unreachable at {self.url} ({reason}); "
                                 f"is the stack up? (`hisbridge stack up`)") from exc

    def names(self) -> list[str]:
        return list(self.request("GET", "/connectors")[1] or [])

    def current_config(self, name: str) -> dict[str, str] | None:
        status, body = self.request("GET", f"/connectors/{name}/config")
        if status == 404:
            return None
        if status != 200:
            raise ConnectorError(f"reading connector {name} failed: HTTP {status} {body}")
        return {k: v for k, v in body.items() if k != "name"}

    def validate(self, name: str, desired: dict[str, str], secret: str) -> None:
        """Ask the plugin to validate first: Connect 4.3's PUT answers an invalid config with an HTTP 500
        NullPointerException instead of the reason, the validate endpoint names it (e.g. a bad password)."""
        plugin = desired["connector.class"].rsplit(".", 1)[-1]
        status, body = self.request("PUT", f"/connector-plugins/{plugin}/config/validate",
                                    {**desired, "name": name}, timeout=120)
        if status != 200:
            message = (body or {}).get("message", body)
            raise ConnectorError(redact(f"Kafka Connect could not validate {name} (HTTP {status}): {message}", secret))
        errors = validation_errors(body)
        if errors:
            raise ConnectorError(redact(f"connector {name} rejected: " + "; ".join(errors), secret))

    def put_config(self, name: str, desired: dict[str, str], secret: str) -> None:
        status, body = self.request("PUT", f"/connectors/{name}/config", desired, timeout=120)
        if status not in (200, 201):
            message = (body or {}).get("message", body)
            raise ConnectorError(redact(f"Kafka Connect rejected connector {name} (HTTP {status}): {message}",
                                        secret))

    def status(self, name: str) -> dict[str, Any] | None:
        status, body = self.request("GET", f"/connectors/{name}/status")
        return body if status == 200 else None

    def wait_running(self, name: str, secret: str, timeout: float = 90.0, settle: float = 0.0) -> None:
        """Until connector and tasks are RUNNING for `settle` seconds in a row: after a restart or an update
        Connect may still report the previous RUNNING state for a moment."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        running_since: float | None = None
        while time.monotonic() < deadline:
            last = self.status(name)
            ok, failure = running_or_failure(last)
            if failure:
                raise ConnectorError(redact(f"connector {name}: {failure}", secret))
            now = time.monotonic()
            running_since = (running_since or now) if ok else None
            if running_since is not None and now - running_since >= settle:
                return
            time.sleep(0.5)
        raise ConnectorError(f"connector {name} not RUNNING after {timeout:.0f}s: {last}")

    def restart(self, name: str) -> None:
        """Restart connector and tasks so they re-read a changed password file."""
        status, body = self.request("POST", f"/connectors/{name}/restart?includeTasks=true&onlyFailed=false")
        if status not in (200, 202, 204):
            raise ConnectorError(f"restarting connector {name} failed: HTTP {status} {body}")

    def delete(self, name: str) -> bool:
        status, body = self.request("DELETE", f"/connectors/{name}")
        if status not in (204, 404):
            raise ConnectorError(f"deleting connector {name} failed: HTTP {status} {body}")
        return status == 204


def validation_errors(body: dict[str, Any]) -> list[str]:
    """'key: message' for every configuration value Connect's validation flagged."""
    errors = []
    for item in body.get("configs", []):
        value = item.get("value") or {}
        errors += [f"{value.get('name')}: {message}" for message in value.get("errors") or []]
    return errors


def running_or_failure(status: dict[str, Any] | None) -> tuple[bool, str | None]:
    """(all running, failure reason or None) from a /status document."""
    if not status:
        return False, None
    parts = [("connector", status.get("connector", {}))] + [
        (f"task {t.get('id')}", t) for t in status.get("tasks", [])]
    for label, part in parts:
        if part.get("state") == "FAILED":
            return False, f"{label} FAILED: {failure_reason(part.get('trace', ''))}"
    states = [part.get("state") for _, part in parts]
    return bool(status.get("tasks")) and all(s == "RUNNING" for s in states), None


def secret_file(settings: Settings, name: str) -> Path:
    return settings.paths.secrets / "connectors" / f"{name}.properties"


def write_secret(path: Path, password: str) -> bool:
    """Write the password file (0600) atomically; False when it already held this password."""
    content = properties_line("password", password)
    if path.exists() and path.read_text(encoding="utf-8") == content:
        return False
    write_private(path, content)
    return True


def write_private(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(content)
    os.replace(tmp, path)


def desired_config(settings: Settings, spec: ConnectorSpec) -> dict[str, str]:
    """The configuration `apply` PUTs: the template rendered, the password a file reference."""
    template = json.loads(template_path(settings, spec.kind).read_text(encoding="utf-8"))
    return render(template, template_values(spec, settings, password_reference(secret_file(settings, spec.name))))


def apply(settings: Settings, spec: ConnectorSpec, timeout: float = 90.0, prepare: bool = True) -> str:
    """Create or update the connector; returns 'created', 'updated', 'restarted' or 'unchanged'."""
    client = ConnectClient(settings.connections.connect_url)
    password = cdc_password(settings)
    path = secret_file(settings, spec.name)
    desired = desired_config(settings, spec)
    existing = client.current_config(spec.name)
    previous = path.read_text(encoding="utf-8") if path.exists() else None
    secret_changed = write_secret(path, password)
    if existing == desired and not secret_changed:
        client.wait_running(spec.name, password, timeout)
        return "unchanged"
    try:
        if existing != desired and prepare and spec.kind == "postgres":
            prepare_postgres_tables(settings.connections.his_dsn, spec.tables)
        elif existing != desired and prepare and is_binlog_kind(spec.kind):
            prepare_binlog_tables(settings, spec)
        client.validate(spec.name, desired, password)
    except ConnectorError:
        # a rejected password must not replace the one the running connector will restart with
        if previous is None:
            path.unlink(missing_ok=True)
        else:
            write_private(path, previous)
        raise
    if existing == desired:
        client.restart(spec.name)
        outcome = "restarted"
    else:
        client.put_config(spec.name, desired, password)
        outcome = "created" if existing is None else "updated"
    client.wait_running(spec.name, password, timeout, settle=3.0)
    return outcome


def delete(settings: Settings, name: str) -> bool:
    """Delete the connector and its password file; False when it did not exist."""
    deleted = ConnectClient(settings.connections.connect_url).delete(name)
    secret_file(settings, name).unlink(missing_ok=True)
    return deleted


# --- HIS preparation (PostgreSQL, needs the admin DSN) ------------------------------------------------

def prepare_postgres_tables(his_dsn: str, tables: tuple[str, ...]) -> None:
    """Let the CDC role publish these tables: ownership to the capture group (pgoutput publications
    need ownership) and REPLICA IDENTITY FULL (full before-images). See connectors/postgres-setup.sql."""
    import psycopg2
    from psycopg2 import sql
    try:
        conn = psycopg2.connect(his_dsn, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        raise ConnectorError(f"cannot reach the HIS database to prepare tables: {exc}".strip()) from exc
    try:
        with conn, conn.cursor() as cur:
            for table in tables:
                schema, _, name = table.partition(".")
                ident = sql.Identifier(schema, name)
                cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                    sql.Identifier(schema), sql.Identifier(CAPTURE_GROUP)))
                cur.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(ident, sql.Identifier(CAPTURE_GROUP)))
                cur.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(ident))
    except psycopg2.Error as exc:
        raise ConnectorError(f"preparing HIS tables {', '.join(tables)} failed: {exc}".strip()) from exc
    finally:
        conn.close()


# --- HIS preparation (MariaDB/MySQL, needs the admin DSN) ------------------------------------------------

SHANGHAI_OFFSET_MINUTES = 480


def prepare_binlog_tables(settings: Settings, spec: ConnectorSpec) -> None:
    """Check the server's time zone, then let the CDC user read exactly the captured tables (SELECT per
    table; its server-wide binlog rights come from connectors/mariadb-setup.sql)."""
    from hisbridge import hisdb
    try:
        conn = hisdb.connect(hisdb.admin_dsn(settings, spec.kind), spec.kind)
    except hisdb.HisConnectionError as exc:
        raise ConnectorError(f"cannot reach the HIS database to prepare tables: {exc}") from exc
    try:
        with hisdb.transaction(conn) as cur:
            check_time_zone(cur)
            cur.execute("SELECT host FROM mysql.user WHERE user = %s", (settings.source.user,))
            hosts = [h for (h,) in cur.fetchall()]
            if not hosts:
                raise ConnectorError(f"HIS 中没有 CDC 用户 / the HIS has no user {settings.source.user!r}: run "
                                     f"connectors/mariadb-setup.sql there first")
            for table in spec.tables:
                target = ".".join("`" + part.replace("`", "``") + "`" for part in table.split(".", 1))
                for host in hosts:
                    cur.execute(f"GRANT SELECT ON {target} TO %s@%s", (settings.source.user, host))
    except ConnectorError:
        raise
    except Exception as exc:  # noqa: BLE001 — a driver error (unknown table, no privilege): the operator's
        raise ConnectorError(f"preparing HIS tables {', '.join(spec.tables)} failed: {exc}") from exc
    finally:
        conn.close()


def check_time_zone(cur) -> None:
    """A MariaDB/MySQL HIS must run on Asia/Shanghai (UTC+8): its TIMESTAMP columns are read through the
    server's time zone, and on another zone the HIS's local times would arrive shifted (connectors/README.md)."""
    cur.execute("SELECT @@global.time_zone, @@system_time_zone, "
                "TIMESTAMPDIFF(MINUTE, UTC_TIMESTAMP(), CONVERT_TZ(UTC_TIMESTAMP(), '+00:00', @@global.time_zone))")
    zone, system, offset = cur.fetchone()
    if offset is None or int(offset) != SHANGHAI_OFFSET_MINUTES:
        raise ConnectorError(f"HIS 服务器时区须为 Asia/Shanghai（UTC+8），当前 time_zone={zone}（系统 {system}）/ the HIS "
                             f"server's time zone must be Asia/Shanghai (UTC+8), it is time_zone={zone} "
                             f"(system {system}): set default_time_zone there")
