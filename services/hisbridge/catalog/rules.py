"""The names of the quality rules a catalog may use. The catalog names rules; chain.quality implements them
and checks at import that it implements exactly these (so a typo in the YAML is an error at load time, not
a silently skipped rule, and the catalog never imports the pipeline)."""
from __future__ import annotations

FIELD_RULES = frozenset({"org_code", "resident_id", "phone", "postcode", "icd10", "icd9cm3", "tcm_code", "morphology",
                         "range", "period_start"})
TABLE_CHECKS = frozenset({"date_order", "stay_length", "required_when", "positive_when"})

# Reasons the pipeline's own stages give (decode, screen, mapping, batch, Avro, produce) beside the quality
# rules (the catalog's above and the implicit field checks of chain.quality.registry).
PIPELINE_REASONS = frozenset({"decode_error", "unknown_source_table", "source_truncated", "mapping_error",
                              "missing_lookup", "business_key", "batch", "avro_schema", "unmapped_code", "required",
                              "empty_row", "missing_key", "schema_drift", "oversize"})
