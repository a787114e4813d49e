"""`connectors apply --prepare` on a MariaDB HIS refuses what would break the data, in the operator's words: a
server not on Asia/Shanghai time (TIMESTAMPs would arrive shifted) and a table that is not there. A MariaDB
server of this module's own (support.mariadb); nothing reaches Kafka Connect."""
from __future__ import annotations

import os

import pytest
from hisbridge import hisdb
from hisbridge.ops import connectors
from hisbridge.ops.connectors import ConnectorSpec
from hisbridge.settings import load_settings
from support.mariadb import engine_env, own_mariadb

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def server(module_resources):
    return own_mariadb(module_resources)


def admin_sql(server, statement: str) -> None:
    conn = hisdb.connect(server.admin_dsn(), "mariadb")
    try:
        with hisdb.transaction(conn) as cur:
            cur.execute(statement)
    finally:
        conn.close()


def test_a_server_not_on_shanghai_time_is_refused(server, resources):
    settings = load_settings({**os.environ, **engine_env(server)})
    spec = ConnectorSpec(resources.connector(f"mdb-tz-{resources.id}"), "mariadb", ("hisbridge.heartbeat",))
    admin_sql(server, "SET GLOBAL time_zone = '+00:00'")
    try:
        with pytest.raises(connectors.ConnectorError, match=r"time zone must be Asia/Shanghai \(UTC\+8\), it is "
                                                             r"time_zone=\+00:00"):
            connectors.apply(settings, spec, timeout=10)
    finally:
        admin_sql(server, "SET GLOBAL time_zone = 'Asia/Shanghai'")


def test_a_missing_table_is_named(server, resources):
    settings = load_settings({**os.environ, **engine_env(server)})
    spec = ConnectorSpec(resources.connector(f"mdb-miss-{resources.id}"), "mariadb", ("his.no_such_table",))
    with pytest.raises(connectors.ConnectorError, match=r"preparing HIS tables his.no_such_table failed: .*"
                                                         r"no_such_table"):
        connectors.apply(settings, spec, timeout=10)
    client = connectors.ConnectClient(settings.connections.connect_url)
    assert client.current_config(spec.name) is None
