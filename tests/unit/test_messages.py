"""The message catalogue: both languages take the same parameters, every id the code names exists, times
are shown in Asia/Shanghai, and HISBRIDGE_LANG picks the language."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hisbridge.clock import local_text
from hisbridge.messages import (CATALOGUE, EXIT_CHECK_FAILED, EXIT_USAGE, Both,
                                OperatorError, help_text, placeholders, text)

SOURCES = Path(__file__).resolve().parents[2] / "services"
# an id as the code names it: OperatorError("x.y", …), text("x.y", …), help="x.y", help_text("x.y")
_NAMED = re.compile(r"""(?:OperatorError\(|\btext\(|help_text\(|help=|logs\.\w+\()\s*["']([a-z_]+\.[a-z_.]+)["']""")


@pytest.mark.parametrize("message_id", sorted(CATALOGUE))
def test_both_languages_take_the_same_parameters(message_id):
    zh, en = CATALOGUE[message_id]
    assert placeholders(zh) - {"hint"} == placeholders(en) - {"hint_en"}, message_id
    assert re.search(r"[\u4e00-\u9fff]", zh), f"{message_id}: the Chinese template has no Chinese"


def test_every_id_the_code_names_is_in_the_catalogue():
    named = {(path.relative_to(SOURCES), m) for path in SOURCES.rglob("*.py")
             for m in _NAMED.findall(path.read_text(encoding="utf-8"))}
    assert named, "the pattern finds nothing: it no longer matches how the code names messages"
    missing = sorted(f"{path}: {m}" for path, m in named if m not in CATALOGUE and not m.endswith(".py"))
    assert missing == []


def test_language_follows_hisbridge_lang(monkeypatch):
    monkeypatch.setenv("HISBRIDGE_LANG", "zh")
    assert text("flush.needs_target") == CATALOGUE["flush.needs_target"][0]
    monkeypatch.setenv("HISBRIDGE_LANG", "en")
    assert text("flush.needs_target") == CATALOGUE["flush.needs_target"][1]
    monkeypatch.delenv("HISBRIDGE_LANG")
    assert text("flush.needs_target") == "\n".join(CATALOGUE["flush.needs_target"])   # default: both, zh first
    assert help_text("cli.debug", "both") == " / ".join(CATALOGUE["cli.debug"])


def test_a_moment_parameter_is_shown_in_shanghai_time():
    refused = datetime(2026, 12, 1, 18, 26, 15, 276411, tzinfo=timezone.utc)
    assert local_text(refused) == "2026-12-02 02:26:15+08:00"
    shown = text("window.forced", "en", operator="ops", reason=refused)
    assert shown == "forced by ops: 2026-12-02 02:26:15+08:00"


def test_a_naive_moment_is_never_shown():
    with pytest.raises(ValueError):
        local_text(datetime(2026, 12, 1, 18, 26))


def test_a_bilingual_parameter_follows_the_language():
    detail = Both("坏", "bad")
    assert text("settings.invalid", "zh", detail=detail) == "设置无效：坏"
    assert text("settings.invalid", "en", detail=detail) == "invalid settings: bad"


def test_operator_error_carries_id_params_and_exit_code():
    exc = OperatorError("reconcile.ok", exit_code=EXIT_CHECK_FAILED, batch="2026-12-01", count=3)
    assert (exc.exit_code, str(exc)) == (1, "reconciliation OK: batch 2026-12-01, 3 table(s)")
    assert exc.text("zh") == "核对一致：批次 2026-12-01，3 张表"
    assert OperatorError("flush.needs_target").exit_code == EXIT_USAGE == 2
    with pytest.raises(KeyError):
        OperatorError("no.such.message")
