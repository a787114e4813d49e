"""`hisbridge mappings validate` tells, before a restart, which lookups of the worker's reference store a
worker started on the mapping would drop and read again from their topics."""
from __future__ import annotations

from click.testing import CliRunner
from hisbridge.catalog import load_catalog
from hisbridge.chain.mapping import load_mapping
from hisbridge.cli import main
from hisbridge.state.lookups import open_store, relayout, store_folder
from support import DEMO_MAPPING, mapping_without_work_unit

APP = "hisbridge-validatetest"


def test_validate_names_the_lookups_a_restart_on_the_mapping_reads_again(tmp_path):
    state = tmp_path / "state"
    folder = store_folder(state, APP)
    store, _ = open_store(folder)
    try:
        relayout(store, load_mapping(load_catalog(), DEMO_MAPPING), "his")     # kept for the demo mapping
    finally:
        store.close()
    env = {"HISBRIDGE_LANG": "en", "HISBRIDGE_STATE_DIR": str(state), "HISBRIDGE_WORKER_APP_ID": APP,
           "HISBRIDGE_TOPIC_PREFIX": "his", "HISBRIDGE_MAPPING": str(DEMO_MAPPING)}
    same = CliRunner().invoke(main, ["mappings", "validate"], env=env)
    assert same.exit_code == 0, same.output
    assert "again from the start" not in same.output
    narrow = mapping_without_work_unit(tmp_path)
    other = CliRunner().invoke(main, ["mappings", "validate", "--mapping", str(narrow)], env=env)
    assert other.exit_code == 0, other.output
    assert (f"a worker restarted on this mapping drops the rows of patient in its reference store {folder} and "
            f"reads his.his.pat_master again from the start (laid out otherwise)") in other.output.splitlines()
    nowhere = CliRunner().invoke(main, ["mappings", "validate", "--mapping", str(narrow)],
                                 env={**env, "HISBRIDGE_STATE_DIR": str(tmp_path / "none")})
    assert nowhere.exit_code == 0 and "again from the start" not in nowhere.output
    assert not (tmp_path / "none").exists()          # validating creates no store
