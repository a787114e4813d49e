"""Evaluation indicators as data (schemas/indicators/*.yaml): their definitions over catalog fields
(definitions), a generic evaluator of filters and aggregates over detail rows (evaluate), the comparison
of reported evaluation rows with the derived figures (compare), and the read of a month's detail rows from
the front-end or the staging database (source — the only module here that touches a database).

May import: hisbridge.catalog (field names), hisbridge.contract-free plain values. Nothing connects at import.
"""
