"""Avro schemas and front-end DDL are derived from the catalog, parse with both Avro libraries, carry
sample records exactly, and regenerating them from the unchanged catalog changes nothing."""
from __future__ import annotations

import datetime as dt
import io
import json
import random
import warnings

import avro.io
import avro.schema
import fastavro
import pytest
from hisbridge.catalog import load_catalog
from hisbridge.catalog.avro import avro_datum, avro_schema
from hisbridge.catalog.build import build, generated_files
from hisbridge.catalog.sample import sample_record
from hisbridge.settings import defaults

CATALOG = load_catalog()
TABLES = sorted(CATALOG.tables)
EPOCH = dt.datetime(1970, 1, 1)


def _committed_schema(name: str) -> dict:
    return json.loads((defaults().paths.avro / f"{name}.avsc").read_text(encoding="utf-8"))


def test_regeneration_is_a_no_op():
    assert build(CATALOG, check=True) == []


def test_generated_files_are_deterministic(tmp_path):
    first = build(CATALOG, tmp_path / "avro", tmp_path / "sql")
    assert len(first) == len(CATALOG.tables) + 1
    assert build(CATALOG, tmp_path / "avro", tmp_path / "sql") == []
    stale = tmp_path / "avro" / "dropped_table.avsc"
    stale.write_text("{}")
    assert build(CATALOG, tmp_path / "avro", tmp_path / "sql", check=True) == [stale]


@pytest.mark.parametrize("name", TABLES)
def test_schema_parses_with_fastavro_and_apache_avro(name):
    schema = _committed_schema(name)
    assert schema == avro_schema(CATALOG.table(name))
    assert schema["namespace"] and CATALOG.table(name).title in schema["doc"]
    fastavro.parse_schema(schema)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Apache avro (Python) does not know local-timestamp-micros: a long
        parsed = avro.schema.parse(json.dumps(schema))
    assert parsed.fullname == f"{schema['namespace']}.{name}"


def test_field_mapping_rules():
    basy = _committed_schema("basy")
    by_name = {f["name"]: f for f in basy["fields"]}
    assert by_name["xm"]["type"] == "string" and "SM4" in by_name["xm"]["doc"]  # encrypted → string
    assert by_name["rysj"]["type"] == {"type": "long", "logicalType": "local-timestamp-micros"}
    assert by_name["csrq"]["type"] == {"type": "int", "logicalType": "date"}
    assert by_name["zfy"]["type"] == {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}
    assert by_name["gmyw"]["type"] == ["null", "string"] and by_name["gmyw"]["default"] is None
    assert by_name["report_datetime"]["type"][0] == "null"  # stamped by the sink
    assert "姓名" in by_name["xm"]["doc"]


@pytest.mark.parametrize("name", TABLES)
def test_sample_record_round_trips_through_fastavro(name):
    table = CATALOG.table(name)
    parsed = fastavro.parse_schema(_committed_schema(name))
    for seed in range(5):
        datum = avro_datum(table, sample_record(table, random.Random(seed)))
        assert fastavro.validate(datum, parsed)
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, parsed, datum)
        buffer.seek(0)
        assert fastavro.schemaless_reader(buffer, parsed) == datum


def _as_apache(table, datum):
    """Apache avro (Python) reads local-timestamp-micros as a plain long: microseconds of the wall clock."""
    return {k: (int((v - EPOCH) / dt.timedelta(microseconds=1)) if isinstance(v, dt.datetime) else v)
            for k, v in datum.items()}


@pytest.mark.parametrize("name", TABLES)
def test_fastavro_bytes_decode_with_apache_avro(name):
    table = CATALOG.table(name)
    schema = _committed_schema(name)
    datum = avro_datum(table, sample_record(table, random.Random(11)))
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(schema), datum)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = avro.schema.parse(json.dumps(schema))
    decoded = avro.io.DatumReader(parsed).read(avro.io.BinaryDecoder(io.BytesIO(buffer.getvalue())))
    assert decoded == _as_apache(table, datum)
    again = io.BytesIO()
    avro.io.DatumWriter(parsed).write(decoded, avro.io.BinaryEncoder(again))
    assert again.getvalue() == buffer.getvalue()


def test_frontend_ddl():
    sql = (defaults().paths.frontend_sql / "frontend.sql").read_text(encoding="utf-8")
    assert sql == generated_files(CATALOG, defaults().paths.avro, defaults().paths.frontend_sql)[defaults().paths.frontend_sql / "frontend.sql"]
    for table in CATALOG.tables.values():
        assert f"CREATE TABLE IF NOT EXISTS {table.name} (" in sql
        assert f"PRIMARY KEY ({', '.join(('yljgdm',) + table.key)})" in sql
        assert f"COMMENT ON TABLE {table.name} IS '{table.title}" in sql
    assert "    xm text NOT NULL" in sql and "    zfy numeric(12,2) NOT NULL" in sql
    assert "    report_datetime timestamp without time zone NOT NULL" in sql
    assert "COMMENT ON COLUMN basy.xm IS '姓名（SM4 密文）';" in sql
