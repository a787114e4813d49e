"""his_schema.sql agrees with the generator: same tables, same columns, keys and full replica identity."""
from __future__ import annotations

import re
from datetime import date

import pytest

from hisbridge.sim import generate, load


def _tables(sql: str) -> dict[str, list[str]]:
    tables = {}
    for name, body in re.findall(r"CREATE TABLE IF NOT EXISTS his\.(\w+) \((.*?)\n\);", sql, re.S):
        tables[name] = [line.split()[0] for line in body.strip().splitlines()
                        if line.strip() and not line.strip().startswith(("PRIMARY KEY", "--"))]
    return tables


def test_schema_declares_every_generated_table_with_its_columns():
    sql = load.schema_sql()
    tables = _tables(sql)
    assert set(tables) == set(generate.PRIMARY_KEYS)
    rows = generate.day_activity(1, date(2026, 3, generate.INDICATOR_DAY), 300, 0.05).rows()
    rows.update(generate.dictionary_rows(1))
    for table, table_rows in rows.items():
        assert table_rows, table
        assert set(table_rows[0]) == set(tables[table]), table


def test_every_table_has_a_primary_key_full_replica_identity_and_comments():
    sql = load.schema_sql()
    for table in _tables(sql):
        assert f"ALTER TABLE his.{table}" in sql and re.search(rf"his\.{table}\s+REPLICA IDENTITY FULL", sql)
        assert f"COMMENT ON TABLE his.{table} IS" in sql
    body = dict(re.findall(r"CREATE TABLE IF NOT EXISTS his\.(\w+) \((.*?)\n\);", sql, re.S))
    for table, keys in generate.PRIMARY_KEYS.items():
        declared = "PRIMARY KEY" in body[table]
        assert declared, table
        if len(keys) > 1:
            assert f"PRIMARY KEY ({', '.join(keys)})" in body[table]


def test_timestamps_are_microsecond_local_and_money_is_numeric_12_2():
    sql = load.schema_sql()
    assert "timestamptz" not in sql and "with time zone" not in sql.replace("without time zone", "")
    assert not re.search(r"_(time|at)\s+timestamp(?!\(6\))", sql)
    assert all(re.search(rf"\b{c}\s+numeric\(12,2\)", sql) for c in ("total_fee", "self_pay", "fee_blood", "reg_fee"))


def _mysql_tables(sql: str) -> dict[str, list[str]]:
    tables = {}
    for name, body in re.findall(r"CREATE TABLE IF NOT EXISTS `his`\.`(\w+)` \((.*?)\n\) ENGINE=InnoDB", sql, re.S):
        tables[name] = [line.split()[0].strip("`") for line in body.strip().splitlines()
                        if line.strip() and not line.strip().startswith("PRIMARY KEY")]
    return tables


def test_the_mysql_dialect_has_the_same_tables_columns_and_keys():
    pg, mysql = load.schema_sql(), load.schema_sql("mariadb")
    assert _mysql_tables(mysql) == _tables(pg)
    for table, keys in generate.PRIMARY_KEYS.items():
        body = re.search(rf"CREATE TABLE IF NOT EXISTS `his`\.`{table}` \((.*?)\n\) ENGINE", mysql, re.S).group(1)
        declared = f"PRIMARY KEY ({', '.join(keys)})" in body if len(keys) > 1 else \
            re.search(rf"`{keys[0]}` \S+\s+PRIMARY KEY", body)
        assert declared, table


def test_the_mysql_dialect_keeps_wall_clock_microseconds_exact_money_and_every_comment():
    mysql = load.schema_sql("mariadb")
    assert not re.search(r"\bTIMESTAMP\b|\btimestamp\(", mysql)            # DATETIME(6): no zone conversion
    assert len(re.findall(r"`updated_at` DATETIME\(6\)\s+NOT NULL", mysql)) == len(generate.PRIMARY_KEYS)
    assert all(re.search(rf"`{c}` DECIMAL\(12,2\)", mysql) for c in ("total_fee", "self_pay", "fee_blood", "reg_fee"))
    assert "REPLICA IDENTITY" not in mysql and "utf8mb4" in mysql
    pg = load.schema_sql()
    assert len(re.findall(r"^COMMENT ON COLUMN", pg, re.M)) == len(re.findall(r"^    `\w+` .* COMMENT '", mysql, re.M))
    assert mysql.count("ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci COMMENT='") == len(generate.PRIMARY_KEYS)


def test_a_type_the_dialect_does_not_know_is_an_error_not_passed_through():
    from hisbridge.sim import dialect
    assert dialect.mysql_type("numeric(18,4)") == "DECIMAL(18,4)" and dialect.mysql_type("timestamp(6)") == "DATETIME(6)"
    with pytest.raises(ValueError, match="jsonb"):
        dialect.mysql_type("jsonb")
