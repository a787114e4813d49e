"""Rule names the catalog may use (catalog.rules) → the functions that implement them."""
from __future__ import annotations

from hisbridge.catalog import rules
from hisbridge.chain.quality import field_rules as f
from hisbridge.chain.quality import record_rules as r

# applied to every field, from its catalog attributes; order matters: a missing or mistyped value stops
# the remaining rules for that field so one problem gives one reason
IMPLICIT_FIELD_RULES = (f.check_zero_date, f.check_required, f.check_type, f.check_max_length, f.check_valueset, f.check_code_name)

FIELD_RULES = {
    "org_code": f.check_org_code,
    "resident_id": f.check_resident_id,
    "phone": f.check_phone,
    "postcode": f.check_postcode,
    "icd10": f.check_icd10,
    "icd9cm3": f.check_icd9cm3,
    "tcm_code": f.check_tcm_code,
    "morphology": f.check_morphology,
    "range": f.check_range,
    "period_start": f.check_period_start,
}

IMPLICIT_RECORD_RULES = (r.check_after_report_time,)

TABLE_CHECKS = {
    "date_order": r.check_date_order,
    "stay_length": r.check_stay_length,
    "required_when": r.check_required_when,
    "positive_when": r.check_positive_when,
}

if set(FIELD_RULES) != rules.FIELD_RULES or set(TABLE_CHECKS) != rules.TABLE_CHECKS:   # caught by every test run
    raise ImportError("chain.quality implements other rule names than catalog.rules declares")
