"""The pipeline stages, each a plain function over plain values (the Kafka Connect idea of a chain of single-
message transforms): decode (Debezium envelope → Change), mapping (HIS row → catalog record, local codes),
transcode (local → national codes), quality/ (质检 rules), crypto (SM4 of identity fields), avro (validate +
encode), batch (18:00 batch by event time), and chain (the stages in order: `transform`).

May import: hisbridge.settings, clock, contract, catalog. Nothing here touches Kafka, a database or the
network; state comes in as plain mappings (the lookups)."""
