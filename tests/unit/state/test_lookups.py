"""Reference rows as the chain reads them: one store, per lookup a mapping, rows replaced only by a newer
source position, kept on disk (RocksDB) with the offsets applied beside them."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal

import pytest
from hisbridge.catalog import load_catalog
from hisbridge.chain.mapping import LookupUpdate, load_mapping
from hisbridge.state.lookups import (ReferenceStore, Relaid, TableLookups, lookup_layouts, lookup_store_key,
                                     open_store, open_store_read_only, planned_relayout, relayout)
from support import ROOT


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


# --- layouts: rows kept for one mapping are not read through another -----------------------------------

MAPPING = load_mapping(load_catalog(), ROOT / "schemas" / "mapping" / "demo_hospital.yaml")
PREFIX = "his"


def _reading(mapping, lookup: str, *columns: str):
    """The mapping with `lookup` keeping `columns` more (a field that reads them added)."""
    return replace(mapping, lookup_reads={**mapping.lookup_reads,
                                          lookup: mapping.lookup_reads[lookup] | frozenset(columns)})


def _changed(mapping) -> set[str]:
    layouts, base = lookup_layouts(mapping), lookup_layouts(MAPPING)
    return {name for name in layouts.keys() | base.keys() if layouts.get(name) != base.get(name)}


def test_a_lookups_layout_changes_with_what_its_rows_keep_and_nothing_else():
    assert set(lookup_layouts(MAPPING)) == set(MAPPING.lookups)
    assert _changed(_reading(MAPPING, "patient", "blood_type")) == {"patient"}
    assert _changed(replace(MAPPING, lookups={**MAPPING.lookups,
                                              "dept": replace(MAPPING.lookups["dept"], key=("dept_id",))})) == {"dept"}
    assert _changed(replace(MAPPING, lookup_reads={**MAPPING.lookup_reads, "staff": frozenset()})) == {"staff"}
    # a catalog field computed otherwise from the columns already kept keeps every layout
    assert _changed(replace(MAPPING, valuemaps={})) == set()


def _filled(folder):
    store, fresh = open_store(folder)
    assert fresh and relayout(store, MAPPING, PREFIX).rebuilt == tuple(sorted(MAPPING.lookups))
    store.apply([LookupUpdate("patient", "P1", None, {"name": "张三"}, position=7),
                 LookupUpdate("dept", "1001", None, {"dept_name": "内科"}, position=8)])
    store.note_offset("his.his.pat_master", 0, 41)
    store.note_offset("his.his.pat_master_archive", 0, 5)     # another topic whose name starts alike
    store.note_offset("his.his.dept_dict", 0, 12)
    store.space("city_owners")["mjzzlxx\x1fV1"] = "A"
    store.commit()
    return store


def test_a_store_kept_for_another_layout_drops_that_lookups_rows_and_reads_its_topic_again(tmp_path):
    folder = tmp_path / "reference"
    _filled(folder).close()
    store, fresh = open_store(folder)
    try:
        assert not fresh and relayout(store, MAPPING, PREFIX) == Relaid()        # the same mapping: nothing
        relaid = relayout(store, _reading(MAPPING, "patient", "blood_type"), PREFIX)
        assert relaid == Relaid(("patient",), (), ("his.his.pat_master",))
        assert store.get(lookup_store_key("patient", "P1")) is None
        assert store[lookup_store_key("dept", "1001")] == {"dept_name": "内科"}
        assert store.offsets() == {("his.his.pat_master_archive", 0): 5, ("his.his.dept_dict", 0): 12}
        assert dict(store.space("city_owners")) == {"mjzzlxx\x1fV1": "A"}
        assert not planned_relayout(store, _reading(MAPPING, "patient", "blood_type"), PREFIX)
        assert planned_relayout(store, MAPPING, PREFIX) == Relaid(("patient",), (), ("his.his.pat_master",))
    finally:
        store.close()
    again, _ = open_store(folder)                                     # what it did is on disk
    try:
        assert relayout(again, _reading(MAPPING, "patient", "blood_type"), PREFIX) == Relaid()
        assert again.get(lookup_store_key("patient", "P1")) is None
    finally:
        again.close()


def test_a_lookup_gone_from_the_mapping_loses_its_rows_and_one_added_is_read_from_the_start(tmp_path):
    store = _filled(tmp_path / "reference")
    try:
        lookups = {n: l for n, l in MAPPING.lookups.items() if n != "dept"}
        lookups["ward"] = replace(MAPPING.lookups["dept"], name="ward")            # read from the same table
        relaid = relayout(store, replace(MAPPING, lookups=lookups), PREFIX)
        assert relaid == Relaid(("ward",), ("dept",), ("his.his.dept_dict",))
        assert store.get(lookup_store_key("dept", "1001")) is None
        assert ("his.his.dept_dict", 0) not in store.offsets()
        assert store[lookup_store_key("patient", "P1")] == {"name": "张三"}
    finally:
        store.close()


def test_a_store_from_before_layouts_were_kept_is_read_again_whole(tmp_path):
    store, _ = open_store(tmp_path / "reference")
    try:
        store.apply([LookupUpdate("patient", "P1", None, {"name": "张三"}, position=7)])
        store.note_offset("his.his.pat_master", 0, 41)
        store.commit()
        relaid = relayout(store, MAPPING, PREFIX)
        assert relaid.rebuilt == tuple(sorted(MAPPING.lookups)) and store.offsets() == {}
        assert dict(store) == {}
    finally:
        store.close()
