"""The HIS database as an administrator sees it (the simulated hospital's loader, `connectors apply --prepare`,
the demo): one connection call for either engine, from a keyword DSN.

  postgres          libpq keyword DSN (connections.his_dsn), psycopg2
  mariadb / mysql   "host= port= user= password= [unix_socket=] [dbname=]" (connections.his_mariadb_dsn),
                    PyMySQL, utf8mb4; no database is selected: every statement names its database, which
                    on MariaDB is what PostgreSQL calls the schema (`his`.`pat_master`)

Both are DB-API connections with %s parameters, explicit transactions (`transaction`) and `close()`.
`engine_of(conn)` tells a connection's engine. Drivers are imported when used: nothing connects at import.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterable, Iterator

from hisbridge.settings import Settings, dsn_fields, is_binlog_kind


class HisConnectionError(RuntimeError):
    """The HIS database cannot be reached: an operator must act (the message names where, never the password)."""

    def __init__(self, address: str, detail: str) -> None:
        super().__init__(f"cannot connect to the HIS database at {address}: {detail}")
        self.address, self.detail = address, detail


def _address(dsn: str) -> str:
    fields = dsn_fields(dsn)
    if "unix_socket" in fields:
        return f"unix_socket={fields['unix_socket']}"
    return f"{fields.get('host', 'localhost')}:{fields.get('port', '')}/{fields.get('dbname', '')}".replace(":/", "/")


def admin_dsn(settings: Settings, engine: str | None = None) -> str:
    """The administrator DSN of the HIS of `engine` (default: source.kind)."""
    kind = engine or settings.source.kind
    return settings.connections.his_mariadb_dsn if is_binlog_kind(kind) else settings.connections.his_dsn


def _mysql_parameters(dsn: str) -> dict[str, Any]:
    fields = dsn_fields(dsn)
    known = {"host", "port", "user", "password", "unix_socket", "dbname"}
    unknown = set(fields) - known
    if unknown:
        raise HisConnectionError(_address(dsn), f"MariaDB DSN has unknown key(s) {sorted(unknown)} "
                                                f"(known: {sorted(known)})")
    params: dict[str, Any] = {"user": fields.get("user", "root"), "charset": "utf8mb4", "autocommit": False,
                              "connect_timeout": 5}
    if "unix_socket" in fields:
        params["unix_socket"] = fields["unix_socket"]
    else:
        params.update(host=fields.get("host", "127.0.0.1"), port=int(fields.get("port", 3306)))
    if "password" in fields:
        params["password"] = fields["password"]
    return params


def connect(dsn: str, engine: str = "postgres"):
    """A DB-API connection to the HIS; HisConnectionError (without the password) when it cannot be made."""
    if is_binlog_kind(engine):
        import pymysql
        try:
            return pymysql.connect(**_mysql_parameters(dsn))
        except pymysql.Error as exc:
            raise HisConnectionError(_address(dsn), str(exc.args[-1] if exc.args else exc)) from exc
    import psycopg2
    try:
        return psycopg2.connect(dsn, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        lines = str(exc).strip().splitlines()
        raise HisConnectionError(_address(dsn), lines[0] if lines else "connection failed") from exc


def his_columns(conn: Any, schemas: Iterable[str]) -> dict[str, dict[str, str]]:
    """{"schema.table": {column: data_type}} of every table in `schemas`, from information_schema (on
    MariaDB/MySQL a schema is a database) — what `mappings validate --against-his` compares with."""
    names = sorted(set(schemas))
    if not names:
        return {}
    out: dict[str, dict[str, str]] = {}
    with transaction(conn) as cur:
        cur.execute("SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns "
                    f"WHERE table_schema IN ({', '.join(['%s'] * len(names))})", names)
        for schema, table, column, data_type in cur.fetchall():
            out.setdefault(f"{schema}.{table}", {})[column] = data_type
    return out


def engine_of(conn: Any) -> str:
    """'mariadb' for a PyMySQL connection, else 'postgres'."""
    return "mariadb" if type(conn).__module__.startswith("pymysql") else "postgres"


@contextmanager
def transaction(conn: Any) -> Iterator[Any]:
    """A cursor in one transaction: committed when the block ends, rolled back when it raises (psycopg2's
    `with conn` does this; PyMySQL's `with conn` would close the connection instead)."""
    cur = conn.cursor()
    try:
        yield cur
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        cur.close()
