"""`hisbridge catalog …` from outside: show, sample → validate, validate on bad input, diff, batch."""
from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner
from hisbridge.catalog import load_catalog
from hisbridge.cli import main
from hisbridge.settings import defaults

TABLES = sorted(load_catalog().tables)


def run(*args: str, stdin: str | None = None):
    result = CliRunner().invoke(main, ["catalog", *args], input=stdin)
    return result


def test_show_json_lists_every_table():
    result = run("show", "--json")
    assert result.exit_code == 0, result.output
    tables = json.loads(result.output)
    assert sorted(t["name"] for t in tables) == TABLES
    basy = next(t for t in tables if t["name"] == "basy")
    assert basy["batch_time"] == "gdsj" and basy["key"] == ["bah", "zycs"]
    xm = next(f for f in basy["fields"] if f["name"] == "xm")
    assert xm == {"name": "xm", "title": "姓名", "type": "string(40)", "required": True, "valueset": None,
                  "encrypt": True}


def test_show_unknown_table_is_an_operator_error():
    result = run("show", "nope")
    assert result.exit_code == 2 and "the catalog has no table 'nope'" in result.stderr
    assert result.stderr.startswith("目录中没有表 nope")


@pytest.mark.parametrize("table", TABLES)
def test_sample_output_validates_clean(table):
    sample = run("sample", table, "--n", "40", "--seed", "5")
    assert sample.exit_code == 0
    lines = sample.output.splitlines()
    assert len(lines) == 40
    assert run("sample", table, "--n", "40", "--seed", "5").output == sample.output  # deterministic
    checked = run("validate", table, stdin=sample.output)
    assert checked.exit_code == 0
    results = [json.loads(line) for line in checked.output.splitlines()]
    assert len(results) == 40 and all(r == {"ok": True, "reasons": []} for r in results), results[:2]


def test_validate_reports_bad_lines_and_keeps_going():
    good = run("sample", "mjzzlxx", "--n", "1").output.strip()
    bad = json.loads(good)
    bad.update(xb="7", csrq="not-a-date", zfy="12.345")
    stdin = "\n".join([good, "{not json", json.dumps(bad), "[1, 2]", good]) + "\n"
    result = run("validate", "mjzzlxx", stdin=stdin)
    assert result.exit_code == 0
    out = [json.loads(line) for line in result.output.splitlines()]
    assert [r["ok"] for r in out] == [True, False, False, False, True]
    assert out[1]["reasons"][0]["rule"] == "malformed_line"
    assert {(r["rule"], r["field"]) for r in out[2]["reasons"]} >= {("valueset", "xb"), ("type", "csrq"),
                                                                     ("type", "zfy")}
    assert out[3]["reasons"][0]["rule"] == "malformed_record"


def test_diff_reports_added_removed_retyped_and_encryption(tmp_path):
    old = defaults().paths.catalog
    new = tmp_path / "catalog"
    shutil.copytree(old, new)
    (new / "zybasy_zz.yaml").unlink()
    path = new / "mjzzlxx.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace("{name: gj, title: 国籍, type: string(40)}", "{name: gj, title: 国籍, type: string(60)}")
    text = text.replace("{name: jzys, title: 接诊医师, type: string(40)}",
                        "{name: jzys, title: 接诊医师, type: string(40), encrypt: true}")
    text = text.replace("  - {name: zs,", "  - {name: tz, title: 体重（千克）, type: \"decimal(5,1)\"}\n  - {name: zs,")
    text = text.replace("  - {name: sfcz, title: 是否初诊, type: string(1), valueset: yes_no}\n", "")
    path.write_text(text, encoding="utf-8")
    result = run("diff", str(old), str(new), "--json")
    assert result.exit_code == 0, result.output
    diff = json.loads(result.output)
    assert diff["tables_removed"] == ["zybasy_zz"] and diff["tables_added"] == []
    change = diff["tables_changed"]["mjzzlxx"]
    assert change["fields_added"] == ["tz"] and change["fields_removed"] == ["sfcz"]
    assert change["fields_changed"]["gj"] == {"type": {"old": "string(40)", "new": "string(60)"}}
    assert change["fields_changed"]["jzys"] == {"encrypt": {"old": False, "new": True}}
    text_out = run("diff", str(old), str(new)).output
    assert "- table zybasy_zz" in text_out and "~ field jzys: encrypt: False → True" in text_out
    assert "no changes" in run("diff", str(old), str(old)).output


def test_batch_subcommand():
    pytest.importorskip("hisbridge.chain.batch")
    before = json.loads(run("batch", "basy", "2026-03-16T17:59:59.999999").output)
    after = json.loads(run("batch", "basy", "2026-03-16T18:00:00").output)
    assert before["batch"] != after["batch"]
    assert before["window_start"].endswith("+08:00")
    monthly = run("batch", "ylfwnl", "2026-02-01")
    assert monthly.exit_code == 0 and json.loads(monthly.output)["batch"].startswith("2026-02")
    assert run("batch", "basy", "yesterday").exit_code != 0
