"""reconcile's pure verdicts: key sets against expectations, ledger rows against front-end rows."""
from __future__ import annotations

from datetime import datetime

from hisbridge.delivery.ledger import LedgerRow
from hisbridge.ops.reconcile import Expected, check_flushes, compare

T1, T2 = datetime(2026, 3, 1, 18, 0, 5), datetime(2026, 3, 1, 19, 0, 2)


def _row(rdt: datetime, count: int, checksum: str, kind: str = "first") -> LedgerRow:
    return LedgerRow("mjzzlxx", "2026-03-01", rdt, count, checksum, kind)


def test_delivered_plus_quarantined_equal_to_expected_is_ok():
    expected = Expected(frozenset({"a", "b"}), frozenset({("c", "unmapped_code")}))
    report = compare("mjzzlxx", "2026-03-01", expected, {"a", "b"}, {("c", "unmapped_code")})
    assert report.ok and report.expected == 3 and report.quarantined == {"unmapped_code": 1}


def test_missing_extra_wrong_rule_and_both_are_each_reported():
    expected = Expected(frozenset({"a", "b"}), frozenset({("c", "unmapped_code")}))
    report = compare("t", "b", expected, {"a", "x", "c"}, {("c", "required")})
    assert not report.ok
    assert report.missing == ["b"] and report.unexpected == ["x"]
    assert report.wrong_rule == ["c"] and report.both == ["c"]


def test_latest_flush_must_match_count_and_checksum():
    checks, orphans = check_flushes([_row(T1, 3, "abc")], {T1: (3, "abd")})
    assert not checks[0].ok and orphans == 0
    checks, _ = check_flushes([_row(T1, 3, "abc")], {T1: (3, "abc")})
    assert checks[0].ok


def test_an_older_flush_may_have_lost_rows_to_a_resubmission_but_never_gained():
    ledger = [_row(T1, 3, "abc"), _row(T2, 1, "r", "resubmission")]
    checks, _ = check_flushes(ledger, {T1: (2, "zz"), T2: (1, "r")})
    assert [c.ok for c in checks] == [True, True] and checks[0].checksum_ok is None
    checks, _ = check_flushes(ledger, {T1: (4, "zz"), T2: (1, "r")})
    assert not checks[0].ok


def test_front_end_rows_under_an_unknown_report_datetime_are_orphans():
    _, orphans = check_flushes([_row(T1, 1, "a")], {T1: (1, "a"), T2: (5, "x")})
    assert orphans == 5
