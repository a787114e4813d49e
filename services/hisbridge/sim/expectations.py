"""What a simulated window must produce downstream, key by key: the expectation `ops.reconcile` compares the
pipeline with for the demo and the end-to-end test (a real HIS's expectation comes from the HIS itself).

  sim_expectations   per (catalog table, batch): the manifest's clean records delivered, each record a planted
                     defect reaches (in a column that table reads) quarantined with the defect's rule
  columns_read       per catalog table, the (HIS table, column) pairs its fields read — from the mapping
"""
from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import Any, Mapping

from hisbridge.catalog.model import Catalog
from hisbridge.chain.batch import period_for as batch_for
from hisbridge.contract import join_key as business_key
from hisbridge.ops.reconcile import Expected

# The simulator's defect vocabulary → the rule ids the transform reports.
RULE_OF_REASON = {"unmapped_code": "unmapped_code", "missing_required": "required", "invalid_id_number": "resident_id"}


def _sim_entity_records(entity: Mapping[str, Any], rows: Mapping[str, Mapping[tuple, dict]]
                        ) -> list[tuple[str, str, Any, set]]:
    """(catalog table, business key, batch-time moment, HIS rows feeding it) of every record an entity
    produces by the end of the window, as demo_hospital.yaml maps the simulated HIS: one record per diagnosed
    visit (batch by registration time), per discharge (discharge time), per archived front page with its
    diagnosis/operation/TCM rows (archive time)."""
    out = []
    if entity["kind"] == "outpatient":
        visit_id = entity["visit_id"]
        if visit_id and (visit_id,) in rows["op_visit"] and (visit_id, 1) in rows["op_diagnosis"]:
            reg = rows["op_register"][(entity["reg_id"],)]["reg_time"]
            out.append(("mjzzlxx", visit_id, reg, {("pat_master", (entity["patient_id"],)),
                                                   ("op_register", (entity["reg_id"],)), ("op_visit", (visit_id,)),
                                                   ("op_diagnosis", (visit_id, 1))}))
        return out
    no, patient = entity["inpatient_no"], ("pat_master", (entity["patient_id"],))
    adm = rows["ip_admission"].get((no,))
    if adm and adm["discharge_time"] is not None:
        out.append(("zyhzryxx", no, adm["discharge_time"], {patient, ("ip_admission", (no,))}))
    hp = rows["mr_homepage"].get((no,))
    if not hp or hp["archive_time"] is None:
        return out
    bah, zycs, at = hp["mr_no"], hp["admit_times"], hp["archive_time"]
    homepage, main = ("mr_homepage", (no,)), ("mr_diagnosis", (no, 0))
    out.append(("basy", business_key(bah, zycs), at, {patient, ("ip_admission", (no,)), homepage, main}))
    out += [("basy_zd", business_key(bah, zycs, seq), at, {homepage, ("mr_diagnosis", (n, seq))})
            for (n, seq), dx in rows["mr_diagnosis"].items() if n == no and dx["diag_type"] == "Q"]
    out += [("basy_ss", business_key(bah, zycs, seq + 1), at, {homepage, ("mr_operation", (n, seq))})
            for (n, seq) in rows["mr_operation"] if n == no]
    if (no,) in rows["mr_homepage_tcm"]:
        tcm = ("mr_homepage_tcm", (no,))
        out.append(("zybasy", business_key(bah, zycs), at, {patient, ("ip_admission", (no,)), homepage, tcm, main}))
        out.append(("zybasy_zz", business_key(bah, zycs, 1), at, {homepage, tcm}))
    return out


def _sim_indicator_records(rows: Mapping[str, Mapping[tuple, dict]]) -> list[tuple[str, str, Any]]:
    out = []
    for (period, code), row in rows.get("eval_indicator", {}).items():
        if len(period) == 4:
            first = date(int(period), 1, 1)
            out.append(("zypzyx", business_key(first, code), first))
        elif row["specialty_code"]:
            first = date.fromisoformat(period + "-01")
            out.append(("zdzkzb", business_key(first, row["specialty_code"], code), first))
        else:
            first = date.fromisoformat(period + "-01")
            out.append(("ylfwnl", business_key(first, code), first))
    return out


def columns_read(mapping) -> dict[str, set[tuple[str, str]]]:
    """Per catalog table, the (HIS table, column) pairs its fields read — from the mapping itself, so a planted
    defect in a column the table does not read is (rightly) expected to pass."""
    out: dict[str, set[tuple[str, str]]] = {}
    for name, table in mapping.tables.items():
        source = {d.alias: d.source for d in table.drivers}
        source.update({d.each.alias: mapping.lookups[d.each.lookup].source for d in table.drivers if d.each})
        source.update({alias: mapping.lookups[j.lookup].source for alias, j in table.joins.items()})
        out[name] = {(source[f.expr.column[0]].split(".")[-1], f.expr.column[1])
                     for f in table.fields if f.expr.column is not None}
    return out


def sim_expectations(activity, mapping, catalog: Catalog, primary_keys: Mapping[str, tuple[str, ...]]
                     ) -> dict[tuple[str, str], Expected]:
    """Per (catalog table, batch), what a simulated window must produce: the manifest's clean records
    delivered, each record a planted defect reaches (in a column that table reads) quarantined with the
    defect's rule. Batches come from each record's batch-time moment (the catalog's cadence)."""
    rows = {t: {tuple(r[k] for k in primary_keys[t]): r for r in rs} for t, rs in activity.rows().items()}
    for table in primary_keys:
        rows.setdefault(table, {})
    reads = columns_read(mapping)
    delivered: dict[tuple[str, str], set[str]] = defaultdict(set)
    quarantined: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)

    def where(table: str, moment: Any) -> tuple[str, str]:
        return table, batch_for(catalog.table(table).cadence, moment).name

    for entity in activity.manifest["entities"]:
        for table, key, moment, fed_by in _sim_entity_records(entity, rows):
            hits = {(key, RULE_OF_REASON[d["reason"]]) for d in entity["defects"]
                    if (d["table"], tuple(d["key"])) in fed_by and (d["table"], d["column"]) in reads[table]}
            if hits:
                quarantined[where(table, moment)] |= hits
            else:
                delivered[where(table, moment)].add(key)
    for table, key, moment in _sim_indicator_records(rows):
        delivered[where(table, moment)].add(key)
    return {tb: Expected(frozenset(delivered[tb]), frozenset(quarantined[tb]))
            for tb in set(delivered) | set(quarantined)}
