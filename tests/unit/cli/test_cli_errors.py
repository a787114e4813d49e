"""Every operator error of issue 14 as the operator sees it: the exact lines, Chinese first then English,
each language alone, the exit code, and never a traceback (unless --debug)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from click.testing import CliRunner
from hisbridge.cli import main
from hisbridge.delivery.flush import check_window
from hisbridge.delivery.schedule import load_schedule
from hisbridge.messages import render
from hisbridge.settings import defaults

TABLES = "basy, basy_ss, basy_zd, mjzzlxx, ylfwnl, zdzkzb, zybasy, zybasy_zz, zyhzryxx, zypzyx"


def run(*args: str, lang: str = "both", env: dict | None = None, stdin: str | None = None):
    return CliRunner().invoke(main, list(args), input=stdin, env={"HISBRIDGE_LANG": lang, **(env or {})})


def assert_lines(result, code: int, zh: str, en: str) -> None:
    """Both languages, then each alone, on stderr; nothing looks like a traceback."""
    assert result.exit_code == code, result.output
    assert result.stderr.splitlines() == [zh, en], result.stderr
    assert "Traceback" not in result.output


CASES = {
    "reconcile table typo": (
        ("reconcile", "--table", "mjzzlx", "--batch", "2026-12-01"), 2,
        f"目录中没有表 mjzzlx（是否要写 mjzzlxx？）；可用的表：{TABLES}",
        f"the catalog has no table 'mjzzlx' (did you mean mjzzlxx?); known tables: {TABLES}"),
    "reconcile batch with slashes": (
        ("reconcile", "--batch", "2026/12/01"), 2,
        "批次名称 '2026/12/01' 无效：日批次写 YYYY-MM-DD，月批次 YYYY-MM，年批次 YYYY（例如 2026-12-01）",
        "'2026/12/01' is not a batch name: daily YYYY-MM-DD, monthly YYYY-MM, yearly YYYY (e.g. 2026-12-01)"),
    "flush batch without dashes": (
        ("flush", "--table", "mjzzlxx", "--batch", "20261201"), 2,
        "批次名称 '20261201' 无效：日批次写 YYYY-MM-DD，月批次 YYYY-MM，年批次 YYYY（例如 2026-12-01）",
        "'20261201' is not a batch name: daily YYYY-MM-DD, monthly YYYY-MM, yearly YYYY (e.g. 2026-12-01)"),
    "flush monthly batch of a daily table": (
        ("flush", "--table", "mjzzlxx", "--batch", "2026-12"), 2,
        "表 mjzzlxx 按日分批，批次 '2026-12' 不是日批次（应写 YYYY-MM-DD）",
        "table mjzzlxx is batched daily: '2026-12' is not a daily batch (write YYYY-MM-DD)"),
    "flush without target": (
        ("flush",), 2,
        "请同时给出 --table 和 --batch（或用 --plan 查看可上报的批次）",
        "--table and --batch are both required (or use --plan to see what may be flushed)"),
    "flush force without operator": (
        ("flush", "--table", "mjzzlxx", "--batch", "2026-12-01", "--force"), 2,
        "--force 需要 --operator 和 --reason（两者都记入台账）",
        "--force needs --operator and --reason (both go into the ledger)"),
    "flush now without offset": (
        ("flush", "--plan", "--now", "2026-12-01 18:30"), 2,
        "--now 的时间 '2026-12-01 18:30' 无效：请写带时区的 ISO 时间，例如 2026-12-01 18:30:00+08:00",
        "--now: '2026-12-01 18:30' is not an ISO moment with an offset, e.g. 2026-12-01 18:30:00+08:00"),
    "unknown command": (
        ("recon",), 2,
        "用法错误：No such command 'recon'.（见 hisbridge --help）",
        "usage error: No such command 'recon'. (see hisbridge --help)"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_operator_error_in_both_languages_then_each(case):
    args, code, zh, en = CASES[case]
    assert_lines(run(*args), code, zh, en)
    only_zh, only_en = run(*args, lang="zh"), run(*args, lang="en")
    assert (only_zh.exit_code, only_zh.stderr) == (code, zh + "\n")
    assert (only_en.exit_code, only_en.stderr) == (code, en + "\n")


def test_invalid_language_is_itself_reported_in_both():
    result = run("config", "show", lang="fr")
    assert_lines(result, 2, "设置无效：设置 display.lang 的值无效",
                 "invalid settings: environment HISBRIDGE_LANG: display.lang cannot be 'fr' ('fr' is not one of "
                 "zh, en, both)")


def test_flush_refusal_names_the_moment_in_shanghai_time():
    """The issue's refusal: 18:26 UTC is 02:26 the next day in Guangzhou, outside the 18:00–22:00 window."""
    paths = defaults().paths
    decision = check_window("daily", "2026-12-01", datetime(2026, 12, 1, 18, 26, 15, 276411, timezone.utc),
                            load_schedule(paths.schedule))
    assert not decision.permitted
    assert render(decision.message_id, decision.params, "zh") == (
        "拒绝写入：现在 2026-12-02 02:26:15+08:00 没有打开的上报窗口（日批次 2026-12-01 的窗口为 "
        "2026-12-01 18:00:00+08:00 至 2026-12-01 22:00:00+08:00）；操作员可用 --force --operator 姓名 --reason 原因 强制")
    assert decision.reason == (
        "refused: no delivery window is open at 2026-12-02 02:26:15+08:00 (daily batch 2026-12-01: window "
        "2026-12-01 18:00:00+08:00 to 2026-12-01 22:00:00+08:00); an operator may use --force --operator NAME "
        "--reason WHY")


def test_crypto_honours_the_key_file_of_the_settings(tmp_path):
    key = tmp_path / "sm4.key"
    key.write_text("0123456789abcdeffedcba9876543210\n")
    result = run("crypto", "encrypt", env={"HISBRIDGE_SM4_KEY_FILE": str(key), "HISBRIDGE_SM4_KEY": None},
                 stdin="hello\n")
    assert (result.exit_code, result.stdout) == (0, "db0669bd841e5450ec1652ecd42b6d60\n")
    upper = run("crypto", "encrypt", env={"HISBRIDGE_SM4_KEY_FILE": str(key), "HISBRIDGE_SM4_UPPERCASE": "1"},
                stdin="hello\n")
    assert upper.stdout == "DB0669BD841E5450EC1652ECD42B6D60\n"     # the pipeline's sm4.* settings, not fixed defaults


def test_crypto_without_a_key_and_with_a_missing_key_file(tmp_path):
    assert_lines(run("crypto", "encrypt", env={"HISBRIDGE_SM4_KEY_FILE": None, "HISBRIDGE_SM4_KEY": None},
                     stdin="x\n"), 2,
                 "没有 SM4 密钥：请设置 HISBRIDGE_SM4_KEY_FILE（密钥文件）或 HISBRIDGE_SM4_KEY（32 个十六进制字符）",
                 "no SM4 key: set HISBRIDGE_SM4_KEY_FILE (a key file) or HISBRIDGE_SM4_KEY (32 hex characters)")
    missing = tmp_path / "none.key"
    assert_lines(run("crypto", "encrypt", env={"HISBRIDGE_SM4_KEY_FILE": str(missing)}, stdin="x\n"), 2,
                 f"SM4 密钥文件 {missing} 不存在或不是文件：检查 HISBRIDGE_SM4_KEY_FILE 或 --key-file",
                 f"SM4 key file {missing} does not exist or is not a file: check HISBRIDGE_SM4_KEY_FILE or --key-file")


def test_debug_shows_the_traceback_then_the_message():
    result = run("--debug", "reconcile", "--batch", "2026/12/01")
    assert result.exit_code == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().endswith("'2026/12/01' is not a batch name: daily YYYY-MM-DD, monthly YYYY-MM, "
                                           "yearly YYYY (e.g. 2026-12-01)")


def test_an_unexpected_error_is_one_line_per_language_too(monkeypatch):
    import hisbridge.cli.catalog as catalog_cli

    def broken(*_args, **_kwargs):
        raise ZeroDivisionError("division by zero")
    monkeypatch.setattr(catalog_cli, "sample_records", broken)
    assert_lines(run("catalog", "sample", "mjzzlxx"), 1,
                 "内部错误：ZeroDivisionError: division by zero；加 --debug 查看调用栈并报告此问题",
                 "internal error: ZeroDivisionError: division by zero; rerun with --debug for the traceback and "
                 "report it")


@pytest.mark.parametrize("lang, first", [("zh", "逐行加密标准输入（UTF-8）"), ("en", "encrypt each stdin line (UTF-8)"),
                                         ("both", "逐行加密标准输入（UTF-8） / encrypt each stdin line (UTF-8)")])
def test_help_follows_the_language(lang, first):
    result = run("crypto", "encrypt", "--help", lang=lang)
    assert result.exit_code == 0 and first in result.stdout


def test_every_command_has_catalogue_help_in_both_languages():
    """No help text is left outside the catalogue (each has Chinese in `both`)."""
    import re

    import click
    from hisbridge.cli.common import Command

    def walk(command: click.Command, path: str):
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, f"{path} {name}")

    untranslated = []
    for path, command in walk(main, "hisbridge"):
        if path == "hisbridge status":
            continue         # rewritten by the monitoring work; adopts the catalogue there
        assert isinstance(command, Command), path
        texts = [command.help or ""] + [p.help or "" for p in command.params if isinstance(p, click.Option)
                                        and p.name not in ("version",)]
        untranslated += [f"{path}: {t[:40]}" for t in texts if not re.search(r"[\u4e00-\u9fff]", t)]
    assert untranslated == []


def test_catalog_batch_shows_the_window_in_shanghai_time():
    result = run("catalog", "batch", "mjzzlxx", "2026-12-01 17:59:59")
    assert (result.exit_code, result.stdout) == (0, '{"batch": "2026-12-01", "window_start": "2026-12-01 18:00:00+08:00", '
                                                    '"window_end": "2026-12-01 22:00:00+08:00"}\n')
    after = run("catalog", "batch", "mjzzlxx", "2026-12-01 18:00:00")
    assert after.stdout.startswith('{"batch": "2026-12-02"')
