"""decode stage on what the Debezium MariaDB connector really wrote (tests/fixtures/debezium/mariadb/, captured
from MariaDB 10.11 in Asia/Shanghai): the same plain values as from PostgreSQL, the database as the schema,
the binlog position as the order, zero dates recognised."""
from __future__ import annotations

import json
from datetime import date, datetime, time
from decimal import Decimal

import pytest
from hisbridge.catalog.records import ZERO_DATE, to_json_value
from hisbridge.chain.batch import period_for
from hisbridge.chain.decode import (Change, DecodeError, Heartbeat,
                                    binlog_order, decode_message)
from hisbridge.chain.mapping import lookup_key
from hisbridge.state.codec import decode_value, encode_value
from support import FIXTURES

MARIADB = FIXTURES / "debezium" / "mariadb"


def messages(name: str) -> list[tuple[str, object]]:
    """(what, decoded) for every captured message of a fixture file, in topic order, from the exact bytes."""
    out = []
    for line in (MARIADB / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
        m = json.loads(line)
        encode = lambda text: None if text is None else text.encode("utf-8")  # noqa: E731
        out.append((m["what"], decode_message(m["topic"], encode(m["key"]), encode(m["value"]))))
    return out


def by_what(name: str) -> dict[str, object]:
    return dict(messages(name))


@pytest.fixture(scope="module")
def typetest():
    return by_what("typetest")


def test_every_column_type_arrives_as_the_plain_value_postgres_gives(typetest):
    row = typetest["002-c-dt6-175959.999999"].after
    assert row["dt6"] == datetime(2026, 3, 1, 17, 59, 59, 999999)        # DATETIME(6): MicroTimestamp
    assert row["dt0"] == datetime(2026, 3, 1, 17, 59, 59)                # DATETIME: Timestamp (ms)
    assert row["ts6"] == datetime(2026, 3, 1, 17, 59, 59, 999999)        # TIMESTAMP(6): UTC → Shanghai
    assert row["d"] == date(2026, 3, 1) and row["t6"] == time(17, 59, 59, 999999)
    assert row["amount"] == Decimal("1234567890.12") and str(row["amount"]) == "1234567890.12"
    assert (row["flag"], row["ok"]) == (1, 1)                            # TINYINT(1) / BOOLEAN: int16 0/1
    assert row["sex"] == "F" and row["tags"] == "a,c"                     # ENUM / SET as their text
    assert row["name"] == "𠀀😀张三"                                        # utf8mb4, 4-byte characters exact
    assert row["big"] == 9223372036854775807


def test_the_18_00_boundary_in_datetime6_columns_splits_the_batches(typetest):
    before = typetest["002-c-dt6-175959.999999"].after["dt6"]
    at_six = typetest["003-c-dt6-180000"].after["dt6"]
    assert period_for("daily", before).name == "2026-03-01"
    assert period_for("daily", at_six).name == "2026-03-02"
    assert period_for("daily", typetest["002-c-dt6-175959.999999"].after["ts6"]).name == "2026-03-01"


def test_the_database_is_the_schema_so_the_mapping_names_his_table(typetest):
    change = typetest["002-c-dt6-175959.999999"]
    assert (change.source.connector, change.source.db, change.source.schema, change.source.table) == \
        ("mariadb", "his", "his", "typetest")
    assert change.key == {"id": 2}


def test_source_position_is_the_binlog_position_and_the_gtid(typetest):
    src = typetest["002-c-dt6-175959.999999"].source
    assert src.binlog == "mariadb-bin.000001:20683:0"
    assert src.lsn == binlog_order("mariadb-bin.000001", 20683, 0) == (1 << 32) + 20683
    assert src.tx_id == 35                                                # GTID 0-61306-35
    assert src.commit_time_ms == 1796155855000 and not src.snapshot
    snap = typetest["000-r-snapshot-1"].source
    assert snap.snapshot and snap.tx_id is None and snap.lsn < src.lsn


@pytest.mark.parametrize("name", ["typetest", "positions"])
def test_binlog_order_follows_topic_order_for_every_row(name):
    """Streamed changes in topic order (one table: one topic) have strictly increasing positions, except the
    delete and insert of one primary-key update, which share one position and are different keys."""
    changes = [c for _, c in messages(name) if isinstance(c, Change) and c.source.table == "typetest"]
    streamed = [c for c in changes if not c.source.snapshot]
    for earlier, later in zip(streamed, streamed[1:]):
        same_statement = earlier.source.binlog == later.source.binlog
        assert later.source.lsn > earlier.source.lsn or (same_statement and earlier.op == "d" and later.op == "c"
                                                          and earlier.key != later.key)
    assert max(c.source.lsn for c in changes if c.source.snapshot) < min(c.source.lsn for c in streamed)


def test_rows_of_one_statement_and_two_updates_in_one_second_keep_their_order():
    pos = by_what("positions")
    first, second = pos["002-c-multirow-1-statement-0"].source, pos["003-c-multirow-1-statement-1"].source
    assert first.binlog.rsplit(":", 1)[0] == second.binlog.rsplit(":", 1)[0] and second.lsn == first.lsn + 1
    v1, v2 = pos["006-u-same-row-twice-same-second-0"], pos["007-u-same-row-twice-same-second-1"]
    assert v1.key == v2.key and v1.source.commit_time_ms == v2.source.commit_time_ms   # a tie on ts_ms …
    assert v2.source.lsn > v1.source.lsn                                              # … not on the position
    assert binlog_order("mariadb-bin.000002", 4, 0) > binlog_order("mariadb-bin.000001", 2 ** 32 - 2, 1)


def test_zero_dates_become_the_zero_date_marker_where_debezium_kept_a_trace(typetest):
    streamed = typetest["004-c-zero-dates"].after
    assert streamed["zts"] is ZERO_DATE            # TIMESTAMP zero: "1970-01-01T00:00:00Z", never a real value
    assert streamed["zd_nn"] is ZERO_DATE and streamed["zdt_nn"] is ZERO_DATE   # NOT NULL: the epoch
    assert streamed["zd"] is None and streamed["zdt"] is None                   # nullable: null, no trace
    snapshot = typetest["001-r-snapshot-100"].after
    assert snapshot["zd_nn"] is ZERO_DATE and snapshot["zdt_nn"] is ZERO_DATE and snapshot["zts"] is None


def test_a_real_date_near_the_epoch_and_postgres_epochs_stay_dates(typetest):
    row = typetest["004-c-zero-dates"].after
    assert row["ts6"] == datetime(2026, 3, 1, 8, 0, 0, 1) and row["t6"] == time(0)   # TIME 00:00 is a time
    pg = json.loads((FIXTURES / "debezium" / "create.json").read_text(encoding="utf-8"))
    pg["value"]["payload"]["after"]["birth_date"] = 0
    change = decode_message(pg["topic"], None, json.dumps(pg["value"]).encode())
    assert change.after["birth_date"] == date(1970, 1, 1) and change.source.binlog is None


def test_the_zero_date_survives_the_state_codec_and_json(typetest):
    row = typetest["004-c-zero-dates"].after
    assert decode_value(encode_value(row))["zd_nn"] is ZERO_DATE
    assert to_json_value(ZERO_DATE) == "0000-00-00" and lookup_key([ZERO_DATE]) == "0000-00-00"


def test_a_column_added_mid_stream_appears_in_the_next_change(typetest):
    before_alter = typetest["005-u-update"].after
    after_alter = typetest["008-c-after-alter"].after
    assert "ward" not in before_alter and "ward" in after_alter


def test_deletes_tombstones_and_heartbeats(typetest):
    delete = typetest["006-d-delete+tombstone-0"]
    assert delete.op == "d" and delete.after is None and delete.before["id"] == 3
    assert typetest["007-d-delete+tombstone-1"] is None and typetest["013-u-pk-change-1"] is None
    assert typetest["003-heartbeat"] == Heartbeat(ts_ms=1796155874163, prefix="mdbtest_sh")
    heartbeat_row = typetest["004-heartbeat-table-change"]
    assert (heartbeat_row.source.schema, heartbeat_row.source.table) == ("hisbridge", "heartbeat")


def test_a_binlog_block_without_a_readable_position_is_a_decode_error(typetest):
    line = next(l for l in (MARIADB / "typetest.jsonl").read_text(encoding="utf-8").splitlines()
                if '"003-c-dt6-180000"' in l)
    message = json.loads(line)
    value = json.loads(message["value"])
    value["payload"]["source"]["file"] = "mariadb-bin"
    result = decode_message(message["topic"], None, json.dumps(value).encode())
    assert isinstance(result, DecodeError)
    assert "source.file 'mariadb-bin' is not <name>.<number>" in result.reason
    assert result.position == "binlog=mariadb-bin:21558:0 table=typetest"
