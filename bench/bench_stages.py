"""Pure stages on one core: decode → batch → SM4 encrypt → Avro validate + encode, records/s.

Run: .venv/bin/python bench/bench_stages.py [records]
Input: Debezium 3.x PostgreSQL JSON-converter messages (schemas.enable=true, compact JSON as Connect
writes them) of a 门急诊诊疗信息-like row: 30 columns, 10 identity fields, MicroTimestamp/Date/Decimal
columns. The mapping/transcode/quality stages (other modules) are not included here.
"""
from __future__ import annotations

import base64
import json
import random
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).parent))
from bench_crypto import FIELDS, make_records  # noqa: E402
from hisbridge.chain.avro import (encode, encode_checked,  # noqa: E402
                                  schema_from_dict, validate_record)
from hisbridge.chain.batch import assign_batch  # noqa: E402
from hisbridge.chain.crypto import (Sm4Settings, encrypt_fields,  # noqa: E402
                                    parse_key)
from hisbridge.chain.decode import Change, decode_message  # noqa: E402

MICRO = {"type": "int64", "name": "io.debezium.time.MicroTimestamp", "version": 1}
DATE = {"type": "int32", "name": "io.debezium.time.Date", "version": 1}
MONEY = {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
         "parameters": {"scale": "2", "connect.decimal.precision": "12"}}
COLUMNS = ([("id", {"type": "int64"}), ("yljgdm", {"type": "string"}), ("jzlsh", {"type": "string"}),
            ("jzsj", MICRO), ("ghsj", MICRO), ("csrq", DATE), ("xb", {"type": "string"}),
            ("ksdm", {"type": "string"}), ("ysgh", {"type": "string"}), ("zdbm", {"type": "string"}),
            ("zdmc", {"type": "string"}), ("zfy", MONEY), ("zfje", MONEY), ("ybzf", MONEY),
            ("jzlx", {"type": "string"}), ("xgbz", {"type": "string"}), ("bz", {"type": "string"}),
            ("gxsj", MICRO), ("czy", {"type": "string"}), ("mzh", {"type": "string"})]
           + [(f, {"type": "string"}) for f in FIELDS])
AVRO_TYPES = {"int64": "long", "string": ["null", "string"]}


def avro_schema() -> dict:
    fields = []
    for name, spec in COLUMNS:
        if spec is MICRO:
            t = {"type": "long", "logicalType": "local-timestamp-micros"}
        elif spec is DATE:
            t = {"type": "int", "logicalType": "date"}
        elif spec is MONEY:
            t = ["null", {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}]
        else:
            t = AVRO_TYPES[spec["type"]]
        fields.append({"name": name, "type": t, **({"default": None} if isinstance(t, list) else {})})
    fields.append({"name": "batch", "type": "string"})
    return {"type": "record", "name": "mjzzlxx", "namespace": "hisbridge.core", "fields": fields}


def envelope_schema() -> dict:
    row = {"type": "struct", "optional": True, "name": "his.public.mz_visit.Value",
           "fields": [dict(spec, optional=name != "id", field=name) for name, spec in COLUMNS]}
    src = {"type": "struct", "optional": False, "name": "io.debezium.connector.postgresql.Source", "field": "source",
           "fields": [{"type": t, "optional": o, "field": f} for f, t, o in (
               ("version", "string", False), ("connector", "string", False), ("name", "string", False),
               ("ts_ms", "int64", False), ("snapshot", "string", True), ("db", "string", False),
               ("sequence", "string", True), ("schema", "string", False), ("table", "string", False),
               ("txId", "int64", True), ("lsn", "int64", True), ("xmin", "int64", True))]}
    return {"type": "struct", "optional": False, "name": "his.public.mz_visit.Envelope", "version": 2,
            "fields": [dict(row, field="before"), dict(row, field="after"), src,
                       {"type": "string", "optional": False, "field": "op"},
                       {"type": "int64", "optional": True, "field": "ts_ms"}]}


def money(rnd: random.Random) -> str:
    cents = rnd.randint(0, 10**8)
    return base64.b64encode(cents.to_bytes((cents.bit_length() + 8) // 8, "big", signed=True)).decode()


def messages(n: int) -> list[bytes]:
    rnd, schema, people = random.Random(11), envelope_schema(), make_records(n)
    out = []
    base_us = 1772323200 * 10**6  # 2026-03-01 00:00 wall-clock
    for i, person in enumerate(people):
        t = base_us + rnd.randint(0, 3 * 86400 * 10**6)
        row = {"id": i, "yljgdm": "12440000455858014T", "jzlsh": f"MZ{i:010d}", "jzsj": t, "ghsj": t - 600 * 10**6,
               "csrq": rnd.randint(-20000, 20000), "xb": rnd.choice("12"), "ksdm": "03.01", "ysgh": f"D{i % 300:04d}",
               "zdbm": "I10.x00x002", "zdmc": "高血压", "zfy": money(rnd), "zfje": money(rnd), "ybzf": money(rnd),
               "jzlx": "1", "xgbz": "0", "bz": None, "gxsj": t + 10**6, "czy": "admin", "mzh": f"M{i:08d}", **person}
        payload = {"before": None, "after": row, "op": "c", "ts_ms": t // 1000 + 1500,
                   "source": {"version": "3.6.1.Final", "connector": "postgresql", "name": "his", "ts_ms": t // 1000 + 900,
                              "snapshot": "false", "db": "his", "sequence": None, "schema": "public",
                              "table": "mz_visit", "txId": 1000 + i, "lsn": 24023128 + i * 400, "xmin": None}}
        out.append(json.dumps({"schema": schema, "payload": payload}, ensure_ascii=False,
                              separators=(",", ":")).encode("utf-8"))
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    data = messages(n)
    key, settings = parse_key("8f3a1c5e7b9d2f4a6c8e0b1d3f5a7c9e", "bench"), Sm4Settings()
    schema = schema_from_dict(avro_schema())
    table = SimpleNamespace(name="mjzzlxx", cadence="daily", batch_time="jzsj")
    topic = "his.public.mz_visit"
    print(f"{n} messages, {sum(map(len, data)) / n:,.0f} bytes each; one core, process time")

    clock = time.process_time

    def run(label: str, fn, items: list) -> list:
        t0 = clock()
        out = [fn(item) for item in items]
        seconds = clock() - t0
        print(f"  {label:<22} {n / seconds:>10,.0f} records/s  ({seconds / n * 1e6:6.1f} µs/record)")
        return out

    # each stage alone, over all records
    changes = run("decode", lambda v: decode_message(topic, None, v), data)
    assert all(isinstance(c, Change) for c in changes)
    rows = [dict(c.after) for c in changes]
    batches = run("batch", lambda r: assign_batch(table, r).name, rows)
    for row, name in zip(rows, batches):
        row["batch"] = name
    encrypted = run("encrypt (10 fields)", lambda r: encrypt_fields(r, FIELDS, key, settings), rows)
    run("avro validate", lambda r: validate_record(schema, r), encrypted)
    run("avro encode", lambda r: encode(schema, r), encrypted)
    checked = run("avro encode_checked", lambda r: encode_checked(schema, r), encrypted)
    assert all(data and not problems for data, problems in checked)

    def chain(value: bytes) -> bytes:
        record = decode_message(topic, None, value).after
        record["batch"] = assign_batch(table, record).name
        encoded, problems = encode_checked(schema, encrypt_fields(record, FIELDS, key, settings))
        return encoded

    run("whole chain", chain, data)

if __name__ == "__main__":
    main()
