"""Getting staged rows to the front-end database: schedule (windows, closing, stall and back-fill policy),
intake (core records → staging rows), staging (the hospital-side staging database), ledger (one row per
flush, written with it), flush (the window guard, the planner and the flush protocol), timer (one step of
the flush timer over a SinkIO), quarantine (the entries' life cycle), replay (replay requests, ledger kind).

May import: settings, clock, contract, catalog, chain (batch periods, the Avro codec). Not runtime: the
runtime wires delivery, never the other way round."""
