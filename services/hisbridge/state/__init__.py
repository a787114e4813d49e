"""The transform's state, as plain objects over str → value stores: reference rows (lookups), records held
for a missing reference row (held), and the exact JSON both are written in (codec). The wiring restores
them from their compacted topics at start and writes their changes through.

May import: hisbridge.contract, chain (decode, mapping). No Kafka client: the runtime feeds them."""
