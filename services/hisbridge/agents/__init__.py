"""Faust agents: each module wires pure stages to topics and registers its agents on `hisbridge.app.app`
when imported. `hisbridge.app.load_agents()` imports every module listed in AGENT_MODULES."""
