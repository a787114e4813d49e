"""Reference rows as the chain reads them: one store, per lookup a mapping, updates that replace rows."""
from __future__ import annotations

from hisbridge.chain.mapping import LookupUpdate
from hisbridge.state.lookups import (TableLookups, apply_updates,
                                     lookup_store_key)


def test_updates_replace_rows_and_groups_and_say_which_keys_now_hold_a_row():
    store: dict = {}
    arrived = apply_updates(store, [LookupUpdate("patient", "P1", None, {"name": "张三"}),
                                    LookupUpdate("diagnoses_of", "Z1", "1", {"icd": "I10"}),
                                    LookupUpdate("diagnoses_of", "Z1", "2", {"icd": "E11"})])
    assert arrived == [("patient", "P1"), ("diagnoses_of", "Z1"), ("diagnoses_of", "Z1")]
    handed_out = store[lookup_store_key("patient", "P1")]
    apply_updates(store, [LookupUpdate("patient", "P1", None, {"name": "李四"})])
    assert handed_out == {"name": "张三"}                    # replaced, never mutated in place
    assert apply_updates(store, [LookupUpdate("diagnoses_of", "Z1", "1", None)]) == []
    assert store[lookup_store_key("diagnoses_of", "Z1")] == {"2": {"icd": "E11"}}
    apply_updates(store, [LookupUpdate("diagnoses_of", "Z1", "2", None), LookupUpdate("patient", "P1", None, None)])
    assert store == {}


def test_table_lookups_view_one_store_per_lookup_name():
    store = {lookup_store_key("patient", "P1"): {"name": "张三"}, lookup_store_key("dept", "1001"): {"n": "内科"}}
    lookups = TableLookups(store, ["patient", "dept"])
    assert lookups["patient"]["P1"] == {"name": "张三"} and lookups["patient"].get("P2") is None
    assert list(lookups["dept"]) == ["1001"] and len(lookups) == 2 and sorted(lookups) == ["dept", "patient"]
    try:
        lookups["staff"]
    except KeyError:
        pass
    else:
        raise AssertionError("a lookup the mapping does not name is a KeyError")
