"""The simulated HIS in each engine's SQL: PostgreSQL as written in his_schema.sql, MariaDB/MySQL derived from
that one file (same tables, columns, keys, defaults and comments), and the statements the loader runs.

The MySQL dialect of the schema:
  CREATE SCHEMA his              → CREATE DATABASE `his` (utf8mb4): on MariaDB a schema is a database, so the
                                   tables are `his`.`pat_master` — the names the source mapping already uses
  timestamp(6) (no time zone)    → DATETIME(6): the same wall-clock value with microseconds, no time zone
                                   conversion anywhere (TIMESTAMP would be converted through the session zone)
  numeric(p,s)                   → DECIMAL(p,s); varchar, char, smallint, date unchanged
  COMMENT ON TABLE / COLUMN      → the table's and the columns' COMMENT clauses
  ADD COLUMN IF NOT EXISTS       → the same (MariaDB has it)
  REPLICA IDENTITY FULL          → nothing: binlog_row_image=FULL is the server's setting (devstack.mariadb)
A type the translation does not know is an error, never passed through.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

SCHEMA = "his"
TABLE_OPTIONS = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"


def postgres_schema_sql() -> str:
    return resources.files("hisbridge.sim").joinpath("his_schema.sql").read_text(encoding="utf-8")


# --- identifiers and statements -------------------------------------------------------------------------

def quote(engine: str, name: str) -> str:
    """An identifier in the engine's quotes."""
    if engine == "postgres":
        return '"' + name.replace('"', '""') + '"'
    return "`" + name.replace("`", "``") + "`"


def table_name(engine: str, table: str) -> str:
    return f"{quote(engine, SCHEMA)}.{quote(engine, table)}"


def insert_sql(engine: str, table: str, columns: list[str], if_absent: bool, keys: tuple[str, ...]) -> str:
    """INSERT of one row per parameter tuple (%s placeholders; PostgreSQL: one VALUES %s for execute_values).
    `if_absent`: a row whose key exists is left as it is (MySQL: a no-op update of a key column, which neither
    hides other errors as INSERT IGNORE would nor writes a binlog event)."""
    cols = ", ".join(quote(engine, c) for c in columns)
    if engine == "postgres":
        return f"INSERT INTO {table_name(engine, table)} ({cols}) VALUES %s" + (" ON CONFLICT DO NOTHING" if if_absent else "")
    values = ", ".join("%s" for _ in columns)
    tail = f" ON DUPLICATE KEY UPDATE {quote(engine, keys[0])} = {quote(engine, keys[0])}" if if_absent else ""
    return f"INSERT INTO {table_name(engine, table)} ({cols}) VALUES ({values}){tail}"


def update_sql(engine: str, table: str, columns: tuple[str, ...], keys: tuple[str, ...]) -> str:
    sets = ", ".join(f"{quote(engine, c)} = %s" for c in columns if c not in keys)
    where = " AND ".join(f"{quote(engine, k)} = %s" for k in keys)
    return f"UPDATE {table_name(engine, table)} SET {sets} WHERE {where}"


def drop_schema_sql(engine: str) -> str:
    if engine == "postgres":
        return f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"
    return f"DROP DATABASE IF EXISTS {quote(engine, SCHEMA)}"


# --- the schema in MySQL dialect ------------------------------------------------------------------------

_TYPES = ((re.compile(r"^timestamp\((\d)\)$"), r"DATETIME(\1)"), (re.compile(r"^numeric\((\d+),(\d+)\)$"), r"DECIMAL(\1,\2)"),
          (re.compile(r"^(varchar|char)\((\d+)\)$"), r"\1(\2)"), (re.compile(r"^(smallint|date)$"), r"\1"))


def mysql_type(pg_type: str) -> str:
    for pattern, replacement in _TYPES:
        if pattern.match(pg_type):
            return pattern.sub(replacement, pg_type)
    raise ValueError(f"his_schema.sql uses type {pg_type!r}, which the MySQL dialect does not translate")


@dataclass
class _Table:
    columns: list[tuple[str, str]] = field(default_factory=list)    # (name, MySQL definition without comment)
    primary_key: str | None = None
    comment: str | None = None
    column_comments: dict[str, str] = field(default_factory=dict)
    added: list[tuple[str, str]] = field(default_factory=list)       # ADD COLUMN IF NOT EXISTS (name, type)


_COLUMN = re.compile(r"^(\w+)\s+(\w+(?:\(\d+(?:,\d+)?\))?)(.*)$")


def _column(line: str) -> tuple[str, str]:
    match = _COLUMN.match(line.strip().rstrip(","))
    if not match:
        raise ValueError(f"his_schema.sql column line {line!r} is not `name type [constraints]`")
    name, pg_type, rest = match.groups()
    return name, f"{quote('mysql', name)} {mysql_type(pg_type)}{rest.rstrip()}"


def _literal(text: str) -> str:
    if "\\" in text:
        raise ValueError("his_schema.sql comments must not contain backslashes (MySQL reads them as escapes)")
    return "'" + text + "'"       # the quote doubling ('') of the PostgreSQL literal is valid MySQL as is


def _statements(sql: str) -> list[str]:
    code = "\n".join(re.sub(r"\s*--.*$", "", line) for line in sql.splitlines())
    return [s.strip() for s in code.split(";") if s.strip()]


@lru_cache(maxsize=1)
def mysql_schema_sql() -> str:
    """his_schema.sql in MySQL/MariaDB dialect (module docstring), statements separated by ";\\n"."""
    tables: dict[str, _Table] = {}
    schema_comment = None
    for statement in _statements(postgres_schema_sql()):
        text = " ".join(statement.split()) if not statement.startswith("CREATE TABLE") else statement
        if re.fullmatch(rf"CREATE SCHEMA IF NOT EXISTS {SCHEMA}", text):
            continue
        if m := re.fullmatch(rf"COMMENT ON SCHEMA {SCHEMA} IS '(.*)'", text, re.S):
            schema_comment = m.group(1)
        elif m := re.fullmatch(rf"CREATE TABLE IF NOT EXISTS {SCHEMA}\.(\w+) \((.*)\)", text, re.S):
            table = tables.setdefault(m.group(1), _Table())
            for line in (l.strip() for l in m.group(2).splitlines() if l.strip()):
                if line.startswith("PRIMARY KEY"):
                    table.primary_key = line.rstrip(",")
                else:
                    table.columns.append(_column(line))
        elif m := re.fullmatch(rf"COMMENT ON TABLE {SCHEMA}\.(\w+) IS '(.*)'", text, re.S):
            tables[m.group(1)].comment = m.group(2)
        elif m := re.fullmatch(rf"COMMENT ON COLUMN {SCHEMA}\.(\w+)\.(\w+) IS '(.*)'", text, re.S):
            tables[m.group(1)].column_comments[m.group(2)] = m.group(3)
        elif m := re.fullmatch(rf"ALTER TABLE {SCHEMA}\.(\w+) ADD COLUMN IF NOT EXISTS (\w+) (\S+)", text):
            tables[m.group(1)].added.append((m.group(2), mysql_type(m.group(3))))
        elif not re.fullmatch(rf"ALTER TABLE {SCHEMA}\.\w+ REPLICA IDENTITY FULL", text):
            raise ValueError(f"his_schema.sql statement the MySQL dialect does not translate: {text[:80]!r}")
    out = [f"CREATE DATABASE IF NOT EXISTS {quote('mysql', SCHEMA)} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"]
    if schema_comment is not None:
        out.append(f"ALTER DATABASE {quote('mysql', SCHEMA)} COMMENT {_literal(schema_comment)}")
    for name, table in tables.items():
        lines = [definition + (f" COMMENT {_literal(table.column_comments[col])}" if col in table.column_comments else "")
                 for col, definition in table.columns]
        lines += [table.primary_key] if table.primary_key else []
        comment = f" COMMENT={_literal(table.comment)}" if table.comment else ""
        out.append(f"CREATE TABLE IF NOT EXISTS {table_name('mysql', name)} (\n    " + ",\n    ".join(lines)
                   + f"\n) {TABLE_OPTIONS}{comment}")
        for col, typ in table.added:
            comment = f" COMMENT {_literal(table.column_comments[col])}" if col in table.column_comments else ""
            out.append(f"ALTER TABLE {table_name('mysql', name)} ADD COLUMN IF NOT EXISTS {quote('mysql', col)} {typ}{comment}")
    return ";\n".join(out) + ";\n"


def schema_sql(engine: str) -> str:
    return postgres_schema_sql() if engine == "postgres" else mysql_schema_sql()


def schema_statements(engine: str) -> list[str]:
    """The schema as statements to run one by one (PostgreSQL runs the file as one script)."""
    sql = schema_sql(engine)
    return [sql] if engine == "postgres" else [s for s in sql.split(";\n") if s.strip()]
