"""The HIS query reconcile derives from the source mapping (pure: SQL text and rows → keys), and the verdict
of HIS keys against staged, delivered and quarantined keys."""
from __future__ import annotations

from datetime import datetime

import pytest
from hisbridge.catalog import load_catalog
from hisbridge.chain.mapping import load_mapping
from hisbridge.ops import source_keys
from hisbridge.ops.reconcile import compare_with_source

CATALOG = load_catalog()
MAPPING = load_mapping(CATALOG)
START, END = datetime(2026, 3, 4, 18), datetime(2026, 3, 5, 18)


def _columns(extra: dict | None = None) -> dict:
    """Every captured table with the columns its lookups and drivers name, typed as the HIS would."""
    cols: dict[str, list[tuple[str, str]]] = {s: [] for s in MAPPING.sources}
    for tm in MAPPING.tables.values():
        for expr in [f.expr for f in tm.fields] + [k for j in tm.joins.values() for k in j.key]:
            if expr.column:
                alias, column = expr.column
                sources = {d.alias: d.source for d in tm.drivers}
                sources.update({d.each.alias: MAPPING.lookups[d.each.lookup].source for d in tm.drivers if d.each})
                sources.update({a: MAPPING.lookups[j.lookup].source for a, j in tm.joins.items()})
                kind = "timestamp without time zone" if column.endswith("time") else "text"
                if (column, kind) not in cols[sources[alias]]:
                    cols[sources[alias]].append((column, kind))
    for lookup in MAPPING.lookups.values():
        for c in lookup.key + lookup.member:
            if c not in dict(cols[lookup.source]):
                cols[lookup.source].append((c, "text"))
    return {**cols, **(extra or {})}


def test_each_driver_gets_one_query_with_its_joins_in_resolution_order():
    queries = source_keys.table_queries(MAPPING, "mjzzlxx", _columns(), "postgres", START, END)
    assert [q.driver for q in queries] == ["visit", "diag"]
    visit = queries[0]
    assert visit.sql.startswith('SELECT "visit".')
    assert ' FROM "his"."op_visit" AS "visit"' in visit.sql
    assert 'LEFT JOIN "his"."op_diagnosis" AS "diag" ON "diag"."visit_id" = "visit"."visit_id" AND "diag"."seq" = %s' \
        in visit.sql
    # the batch-time field (scsj = register.reg_time) narrows the read, one day wider each side
    assert visit.sql.endswith('WHERE "register"."reg_time" >= %s AND "register"."reg_time" < %s')
    assert visit.params[-2:] == (datetime(2026, 3, 3, 18), datetime(2026, 3, 6, 18))


def test_a_fan_out_driver_joins_its_members_and_mariadb_quotes_with_backticks():
    hp = source_keys.table_queries(MAPPING, "basy_zd", _columns(), "mariadb", START, END)[1]
    assert " JOIN `his`.`mr_diagnosis` AS `dx` ON `dx`.`inpatient_no` = `hp`.`inpatient_no`" in hp.sql
    assert [p.role for p in hp.parts] == ["driver", "each"]


def test_an_unreadable_table_is_refused_by_name():
    cols = _columns()
    del cols["his.op_register"]
    with pytest.raises(source_keys.ReconcileSourceError, match="his.op_register"):
        source_keys.table_queries(MAPPING, "mjzzlxx", cols, "postgres", START, END)


def test_rows_become_keys_through_the_mappings_own_rules():
    table = CATALOG.table("zyhzryxx")
    query = source_keys.table_queries(MAPPING, "zyhzryxx", _columns(), "postgres", START, END)[0]
    width = [len(p.columns) for p in query.parts]

    def row(**by_alias):
        out = []
        for part, n in zip(query.parts, width):
            values = by_alias.get(part.alias, {})
            out += [values.get(c) for c in part.columns]
        return tuple(out)
    rows = [row(adm={"inpatient_no": "Z1", "mr_no": "M1", "admit_times": 1, "discharge_time": datetime(2026, 3, 5, 9),
                     "patient_id": "P1", "admit_dept": "D1"}, patient={"patient_id": "P1"}, dept={"dept_code": "D1"}),
            row(adm={"inpatient_no": "Z2", "discharge_time": datetime(2026, 3, 5, 18), "patient_id": "P2"}),
            row(adm={"inpatient_no": "Z3", "discharge_time": None}),
            row(adm={"inpatient_no": "Z4", "discharge_time": datetime(2026, 3, 5, 10), "patient_id": "P9"})]
    keys, waiting, unkeyed = source_keys.keys_from_rows(MAPPING, query, rows, table, "2026-03-05")
    # Z2 discharged at 18:00 is the next batch; Z3 is not discharged; Z4's patient is not in the HIS: waits
    assert keys == {"Z1", "Z4"} and waiting == {"Z4"} and unkeyed == 0


def test_a_his_key_nowhere_downstream_is_missing_and_a_null_batch_entry_still_accounts_for_its_key():
    his = source_keys.SourceKeys(frozenset({"a", "b", "c", "d"}), frozenset(), 0)
    report = compare_with_source("t", "2026-03-05", his, staged_keys={"a", "b"}, delivered={"a"},
                                 quarantined={("c", "missing_lookup", None), ("z", "required", "2026-03-04")})
    assert report.missing == ["d"] and not report.ok
    assert report.quarantined == {"missing_lookup": 1} and report.expected == 4
    ok = compare_with_source("t", "2026-03-05", his, {"a", "b", "d"}, {"a"}, {("c", "required", "2026-03-05")})
    assert ok.ok


def test_a_delivered_key_the_his_no_longer_has_is_unexpected_and_a_doubled_row_is_duplicated():
    his = source_keys.SourceKeys(frozenset({"a"}), frozenset(), 0)
    report = compare_with_source("t", "b", his, set(), {"a", "x"}, set(), duplicated=["a"])
    assert report.unexpected == ["x"] and report.duplicated == ["a"] and not report.ok
