"""devstack.mariadb's pure parts: the server configuration Debezium relies on, and SQL literals."""
from __future__ import annotations

from pathlib import Path

from devstack.mariadb import Layout, MariaDb, server_cnf, sql_literal
from hisbridge.settings import defaults


def settings_of(cnf: str) -> dict[str, str]:
    section = cnf.split("[mysqld]", 1)[1]
    return {key: value for key, _, value in (line.partition(" = ") for line in section.strip().splitlines())}


def test_the_server_writes_a_full_row_binlog_with_gtids_on_loopback_in_shanghai_time():
    layout = Layout(Path("/srv/hb/mariadb/mariadb-his"))
    mysqld = settings_of(server_cnf(layout, 55306, "Asia/Shanghai", as_root=True))
    assert (mysqld["binlog_format"], mysqld["binlog_row_image"], mysqld["gtid_strict_mode"]) == ("ROW", "FULL", "ON")
    assert mysqld["log_bin"] == "/srv/hb/mariadb/mariadb-his/binlog/mariadb-bin" and mysqld["server_id"] == "55306"
    assert mysqld["bind-address"] == "127.0.0.1" and mysqld["port"] == "55306"
    assert mysqld["datadir"].startswith("/srv/hb/mariadb/mariadb-his/") and mysqld["socket"] == str(layout.socket)
    assert mysqld["default_time_zone"] == "Asia/Shanghai" and mysqld["user"] == "mysql"
    assert mysqld["character-set-server"] == "utf8mb4"


def test_before_the_time_zone_tables_are_loaded_no_zone_is_named_and_as_a_user_no_user_is_switched():
    mysqld = settings_of(server_cnf(Layout(Path("/x")), 3307, None, as_root=False))
    assert "default_time_zone" not in mysqld and "user" not in mysqld


def test_the_stack_server_and_a_test_server_keep_their_files_apart():
    settings = defaults()
    stack, own = MariaDb(settings), MariaDb(settings, name="mariadb-test-1", port=3999)
    assert stack.port == settings.stack.his_mariadb_port and own.port == 3999
    assert stack.layout.home == settings.paths.var / "mariadb" / "mariadb-his" != own.layout.home
    assert str(stack.layout.socket) in settings.connections.his_mariadb_dsn
    assert own.admin_dsn().startswith(f"unix_socket={own.layout.socket} ")


def test_sql_literals_escape_quotes_and_backslashes():
    assert sql_literal("it's a \\ test") == "'it\\'s a \\\\ test'"
