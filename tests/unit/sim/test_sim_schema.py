"""his_schema.sql agrees with the generator: same tables, same columns, keys and full replica identity."""
from __future__ import annotations

import re
from datetime import date

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
    rows = generate.day_activity(1, date(2026, 3, 5), 300, 0.05).rows()
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
