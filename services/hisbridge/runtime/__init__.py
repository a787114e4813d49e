"""The running worker: the Faust app (app), the transform worker (transform_worker: a batch consumer task in
the app) and the sink worker (sink_worker: a Faust agent and the flush timer), and the plain pieces they
wire — batch_plan (one consumed batch, planned), ordering (partitions merged oldest first), watermark (marks
and the sink's watermark), sink_io (the sink's database adapter), topics (thin Kafka admin helpers).

May import: everything below it (settings, clock, contract, catalog, chain, state, delivery, indicators). Only this
package and the CLI talk to Kafka; nothing connects to a network at import time."""
