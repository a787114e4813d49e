"""`mappings validate --against-his` and `mappings check` on a real HIS — PostgreSQL (a database of this
module's own) and MariaDB (a server of its own) — loaded by the simulator, with a mapping that names a table
that does not exist (his.op_registr), a misspelt column (visit.visit_idd) and a timestamp feeding a decimal
field: every problem with its file:line, in both languages, exit 1; the unchanged mapping passes (exit 0)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from hisbridge.cli import main
from hisbridge.settings import load_settings
from support.mariadb import engine_env, own_mariadb

pytestmark = pytest.mark.stack
MAPPING = load_settings().paths.mapping
EDITS = [("  register: {source: his.op_register, key: [reg_id]}", "  register: {source: his.op_registr, key: [reg_id]}"),
         ("      jzlsh: visit.visit_id\n", "      jzlsh: visit.visit_idd\n"),
         ("      zfy: visit.total_fee\n", "      zfy: visit.visit_time\n")]


def broken_mapping(folder: Path) -> tuple[Path, dict[str, int]]:
    """A copy of the demo mapping (with its value maps) with the three mistakes; their line numbers."""
    shutil.copytree(MAPPING.parent, folder, dirs_exist_ok=True)
    path = folder / MAPPING.name
    text = path.read_text(encoding="utf-8")
    lines = {}
    for old, new in EDITS:
        assert text.count(old) == 1, old
        lines[new.split(":")[0].strip()] = text[:text.index(old)].count("\n") + 1
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")
    return path, lines


def expected_lines(path: Path, lines: dict[str, int], lang: str) -> list[str]:
    at = {name: f"{path}:{n}" for name, n in lines.items()}
    zh = [f"{at['register']}: HIS 中没有表 his.op_registr（是否要写 his.op_register？）",
          f"{at['jzlsh']}: HIS 表 his.op_visit 没有列 visit_idd（是否要写 visit_id？）",
          f"{at['zfy']}: his.op_visit.visit_time 的类型 {{ts}} 不能填入 mjzzlxx.zfy（decimal(12,2)）"]
    en = [f"{at['register']}: the HIS has no table his.op_registr (did you mean his.op_register?)",
          f"{at['jzlsh']}: HIS table his.op_visit has no column 'visit_idd' (did you mean visit_id?)",
          f"{at['zfy']}: his.op_visit.visit_time is {{ts}}, which cannot feed mjzzlxx.zfy (decimal(12,2))"]
    return {"zh": zh, "en": en, "both": [x for pair in zip(zh, en) for x in pair]}[lang]


def run(env: dict, *args: str, lang: str = "both"):
    return CliRunner().invoke(main, list(args), env={"HISBRIDGE_LANG": lang, **env})


@pytest.fixture(scope="module", params=["postgres", "mariadb"])
def his(request, module_resources):
    res = module_resources
    if request.param == "postgres":
        env = {"HISBRIDGE_HIS_KIND": "postgres",
               "HISBRIDGE_HIS_DSN": res.database("his", f"his_mapcheck_{res.id}")}
        timestamp = "timestamp without time zone"
    else:
        env, timestamp = engine_env(own_mariadb(res)), "datetime"
    loaded = run(env, "sim", "init")
    assert loaded.exit_code == 0, loaded.output
    return env, timestamp


@pytest.mark.parametrize("lang", ["both", "zh", "en"])
def test_validate_against_his_reports_every_missing_table_column_and_type(his, tmp_path, lang):
    env, timestamp = his
    path, lines = broken_mapping(tmp_path)
    result = run(env, "mappings", "validate", "--against-his", "--mapping", str(path), lang=lang)
    assert result.exit_code == 1, result.output
    want = [line.replace("{ts}", timestamp) for line in expected_lines(path, lines, lang)]
    assert result.stdout.splitlines()[{"both": 2, "zh": 1, "en": 1}[lang]:] == want
    summary = {"zh": [f"{path}：3 处与 HIS 不符"], "en": [f"{path}: 3 problem(s) against the HIS"]}
    assert result.stderr.splitlines() == summary.get(lang, summary["zh"] + summary["en"])


def test_check_reports_the_same_problems_before_querying_codes(his, tmp_path):
    env, timestamp = his
    path, lines = broken_mapping(tmp_path)
    result = run(env, "mappings", "check", "--mapping", str(path), lang="en")
    assert result.exit_code == 1, result.output
    want = [line.replace("{ts}", timestamp) for line in expected_lines(path, lines, "en")]
    assert result.stdout.splitlines()[:3] == want
    assert "Traceback" not in result.output


def test_the_demo_mapping_passes_against_the_simulated_his(his):
    env, _ = his
    result = run(env, "mappings", "validate", "--against-his", lang="en")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == (f"{MAPPING}: all 12 HIS tables and 170 columns the mapping names exist "
                                              f"with compatible types")
