"""Evaluation indicators as data (schemas/indicators/*.yaml): their definitions over catalog fields
(definitions), a generic evaluator of filters and aggregates over detail rows (evaluate), the comparison
of reported evaluation rows with the derived figures (compare), and the read of a month's detail rows from
the front-end or the staging database (source — the only module here that touches a database).

crosscheck is the sink's check of evaluation rows before they are staged (held as `indicator_mismatch`).

May import: settings, contract, catalog (field names). Not delivery nor runtime: the runtime hands
crosscheck's hook to delivery.staging. Nothing connects at import.
"""
