"""Reference rows as the chain reads them: one store, per lookup a mapping, rows replaced only by a newer
source position, kept on disk (RocksDB) with the offsets applied beside them."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from hisbridge.chain.mapping import LookupUpdate
from hisbridge.state.lookups import (ReferenceStore, TableLookups,
                                     lookup_store_key, open_store, open_store_read_only)


def test_updates_replace_rows_and_groups_and_say_which_keys_now_hold_a_row():
    store = ReferenceStore()
    done = store.apply([LookupUpdate("patient", "P1", None, {"name": "张三"}),
                        LookupUpdate("diagnoses_of", "Z1", "1", {"icd": "I10"}),
                        LookupUpdate("diagnoses_of", "Z1", "2", {"icd": "E11"})])
    assert done.arrived == [("patient", "P1"), ("diagnoses_of", "Z1"), ("diagnoses_of", "Z1")]
    handed_out = store[lookup_store_key("patient", "P1")]
    store.apply([LookupUpdate("patient", "P1", None, {"name": "李四"})])
    assert handed_out == {"name": "张三"}                    # replaced, never mutated in place
    assert store.apply([LookupUpdate("diagnoses_of", "Z1", "1", None)]).arrived == []
    assert store[lookup_store_key("diagnoses_of", "Z1")] == {"2": {"icd": "E11"}}
    store.apply([LookupUpdate("diagnoses_of", "Z1", "2", None), LookupUpdate("patient", "P1", None, None)])
    assert dict(store) == {}


def test_a_row_is_replaced_only_by_a_newer_source_position_and_an_older_replay_is_counted():
    store = ReferenceStore()
    key = lookup_store_key("visit", "V1")
    store.apply([LookupUpdate("visit", "V1", None, {"total_fee": Decimal("691.48")}, position=200)])
    replay = store.apply([LookupUpdate("visit", "V1", None, {"total_fee": Decimal("677.72")}, position=100)])
    assert replay.applied == 0 and replay.older == 1 and store.older == 1
    assert store[key] == {"total_fee": Decimal("691.48")}
    assert store.apply([LookupUpdate("visit", "V1", None, {"total_fee": Decimal("691.48")}, position=200)]).same == 1
    store.apply([LookupUpdate("visit", "V1", None, None, position=300)])          # deleted at 300
    assert store.get(key) is None
    store.apply([LookupUpdate("visit", "V1", None, {"total_fee": Decimal("1")}, position=250)])
    assert store.get(key) is None                   # an older insert replayed after the delete stays out
    store.apply([LookupUpdate("diagnoses_of", "Z1", "1", {"icd": "I10"}, position=50),
                 LookupUpdate("diagnoses_of", "Z1", "1", {"icd": "OLD"}, position=40)])
    assert store[lookup_store_key("diagnoses_of", "Z1")] == {"1": {"icd": "I10"}}


def test_table_lookups_view_one_store_per_lookup_name():
    store = ReferenceStore()
    store.apply([LookupUpdate("patient", "P1", None, {"name": "张三"}), LookupUpdate("dept", "1001", None, {"n": "内科"})])
    lookups = TableLookups(store, ["patient", "dept"])
    assert lookups["patient"]["P1"] == {"name": "张三"} and lookups["patient"].get("P2") is None
    assert list(lookups["dept"]) == ["1001"] and len(lookups) == 2 and sorted(lookups) == ["dept", "patient"]
    try:
        lookups["staff"]
    except KeyError:
        pass
    else:
        raise AssertionError("a lookup the mapping does not name is a KeyError")


def test_the_disk_store_keeps_rows_and_offsets_written_together_across_a_reopen(tmp_path):
    folder = tmp_path / "reference"
    store, fresh = open_store(folder)
    assert fresh and store.offsets() == {}
    born = datetime(1949, 12, 31, 8, 0)
    store.apply([LookupUpdate("patient", "P1", None, {"name": "张三", "born": born}, position=7)])
    store.note_offset("his.his.pat_master", 2, 41)
    store.space("schema")["his.pat_master\x1ename"] = "string"
    store.commit()
    store.apply([LookupUpdate("patient", "P2", None, {"name": "李四"}, position=8)])   # never committed
    store.close()
    again, fresh = open_store(folder)
    try:
        assert not fresh and again.offsets() == {("his.his.pat_master", 2): 41}
        assert again[lookup_store_key("patient", "P1")] == {"name": "张三", "born": born}
        assert again.get(lookup_store_key("patient", "P2")) is None
        assert dict(again.space("schema")) == {"his.pat_master\x1ename": "string"}
        assert again.apply([LookupUpdate("patient", "P1", None, {"name": "旧"}, position=6)]).older == 1
    finally:
        again.close()


def test_a_store_opened_read_only_beside_its_worker_reads_what_was_written_and_keeps_its_own_changes_in_memory(
        tmp_path):
    folder = tmp_path / "reference"
    assert open_store_read_only(folder) is None           # no store there: the caller builds its own
    worker, _ = open_store(folder)
    try:
        worker.apply([LookupUpdate("patient", "P1", None, {"name": "张三"}, position=7)])
        worker.note_offset("his.his.pat_master", 0, 12)
        worker.space("city_owners")["mjzzlxx\x1fV1"] = "A"
        worker.commit()
        beside = open_store_read_only(folder)              # the worker still holds the folder's lock
        try:
            assert beside[lookup_store_key("patient", "P1")] == {"name": "张三"}
            assert beside.offsets() == {("his.his.pat_master", 0): 12}
            assert dict(beside.space("city_owners")) == {"mjzzlxx\x1fV1": "A"}
            beside.apply([LookupUpdate("patient", "P2", None, {"name": "李四"}, position=8)])     # the tail
            assert beside[lookup_store_key("patient", "P2")] == {"name": "李四"}
            with pytest.raises(RuntimeError, match="read-only"):
                beside.commit()
        finally:
            beside.close()
        assert worker.get(lookup_store_key("patient", "P2")) is None
    finally:
        worker.close()


def test_a_kept_rows_position_is_what_newer_skip_compares():
    store = ReferenceStore()
    store.apply([LookupUpdate("visit", "V1", None, {"visit_id": "V1"}, 42),
                 LookupUpdate("diagnoses_of", "Z1", "0", {"seq": 0}, 43)])
    lookups = TableLookups(store, ["visit", "diagnoses_of"])
    assert lookups["visit"].position("V1") == 42
    assert lookups["visit"].position("V2") is None                  # no row
    assert lookups["diagnoses_of"].position("Z1") is None          # many rows: no one position
    store.apply([LookupUpdate("visit", "V1", None, None, 50)])      # deleted: nothing kept to be newer
    assert lookups["visit"].position("V1") is None
