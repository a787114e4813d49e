"""What operators run beside the pipeline: reconcile (HIS ↔ staging ↔ ledger ↔ front-end ↔ quarantine),
connectors (Debezium connectors through the Connect REST API), lag (consumer lag per group and topic).

May import: everything but the CLI."""
