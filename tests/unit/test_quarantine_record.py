"""The run record's quarantine section and the decision it feeds (core/quarantine_record.py,
core/verdict.py decide): pure, no session."""

from __future__ import annotations

from datetime import date

import pytest

from pytest_rtgov.core.quarantine import CheckedEntry, Entry, Quarantine, QuarantineEntryError
from pytest_rtgov.core.quarantine_record import (
    active_tests,
    audited_quarantine,
    build_section,
    excused_among,
    excused_gates,
    excused_tests,
    session_problems,
    today_from,
)
from pytest_rtgov.core.verdict import GateResult, Verdict, decide


def checked(subject: str, state: str = "valid", ident: str = "") -> CheckedEntry:
    entry = Entry(subject, "bob", "flaky", "https://example.com/1", "2026-06-01", "2026-06-10")
    return CheckedEntry(entry, ident or f"sha256:{subject}", state, detail=state)


def result(gate: str, subject: str, status: str = "breach") -> GateResult:
    return GateResult(gate, subject, "wall_time", status, "max 1 s", current=2.0)


def section_of(*entries: CheckedEntry, tests=(), results=(), required=False) -> dict:
    return build_section(
        Quarantine(entries), digest="sha256:00", tests=tests,
        results=[r.to_dict() for r in results], signatures_required=required,
    )  # fmt: skip


def test_the_section_lists_matched_tests_and_gates_with_their_outcomes():
    q = section_of(
        checked("t.py::test_a"),
        checked("gate:g"),
        tests=[("t.py::test_a[1]", "failed"), ("t.py::test_a[2]", "passed"),
               ("t.py::test_a[3]", "skipped"), ("t.py::test_b", "failed")],
        results=[result("g", "t.py::x"), result("g", "t.py::y", "pass"), result("h", "t.py::x")],
    )  # fmt: skip
    assert [(t["nodeid"], t["outcome"]) for t in q["tests"]] == [
        ("t.py::test_a[1]", "quarantined-fail"),
        ("t.py::test_a[2]", "quarantined-pass"),
    ]
    assert [(g["subject"], g["status"], g["outcome"]) for g in q["gates"]] == [
        ("t.py::x", "breach", "quarantined-fail"),
        ("t.py::y", "pass", "quarantined-pass"),
    ]
    assert q["tests"][0]["owner"] == "bob" and q["tests"][0]["entry"] == "sha256:t.py::test_a"
    assert excused_tests(q) == {"t.py::test_a[1]", "t.py::test_a[2]"}
    assert excused_gates(q) == {("g", "t.py::x"), ("g", "t.py::y")}


def test_only_a_valid_entry_excuses():
    for state in ("expired", "unsigned", "untrusted", "tampered"):
        q = section_of(checked("t.py::t", state), tests=[("t.py::t", "failed")])
        assert q["tests"] and not excused_tests(q)
        assert not excused_among(Quarantine((checked("gate:g", state),)), [("g", "s")])


def test_decide_does_not_count_a_quarantined_breach():
    results = [result("time", "t.py::slow"), result("accuracy", "t.py::acc")]
    verdict = decide(results, tests_exit_status=0, quarantined=[("time", "t.py::slow")])
    assert verdict.status == "breached"  # accuracy still blocks
    assert [r.gate for r in verdict.breaches] == ["accuracy"]
    assert verdict.to_dict()["breaches"] == 1 and verdict.to_dict()["quarantined"] == 1
    alone = decide(results[:1], tests_exit_status=0, quarantined=[("time", "t.py::slow")])
    assert (alone.status, alone.exit_status) == ("passed", 0)
    assert alone.results[0].status == "breach"  # the result keeps its status
    assert "quarantined" not in decide(results[1:], tests_exit_status=0).to_dict()


def test_the_verdict_of_a_record_reads_the_section_back():
    from pytest_rtgov.core.records import RunRecord

    results = [result("time", "t.py::slow")]
    q = section_of(checked("gate:time"), results=results)
    verdict = decide(results, tests_exit_status=0, quarantined=excused_gates(q))
    record = RunRecord("r", "a", "b", "gate", (), "rss", "cpu", (), {}, (), (), quarantine=q)
    again = Verdict.of_record(verdict.stamp(record))
    assert again == verdict and again.breaches == []


def test_session_problems():
    used = section_of(checked("t.py::t", "expired"), tests=[("t.py::t", "passed")])
    status, lines = session_problems(used, exit_status=0)
    assert status == 6 and "owner bob, issue https://example.com/1" in lines[0]
    assert session_problems(used, exit_status=1)[0] == 1  # failed tests stay 1
    unused = section_of(checked("t.py::t", "expired"))
    assert session_problems(unused, exit_status=0)[0] == 0
    bad = section_of(checked("t.py::t", "tampered"))
    assert session_problems(bad, exit_status=0)[1][0].startswith("warning:")
    required = section_of(checked("t.py::t", "unsigned"), required=True)
    assert session_problems(required, exit_status=6)[0] == 7
    assert session_problems({}, exit_status=1) == (1, [])


def test_today_from_the_environment():
    assert today_from({}, date(2026, 1, 2)) == date(2026, 1, 2)
    assert today_from({"RTGOV_TODAY": "2026-06-14"}, date(2026, 1, 2)) == date(2026, 6, 14)
    with pytest.raises(QuarantineEntryError, match="RTGOV_TODAY"):
        today_from({"RTGOV_TODAY": "2026-02-30"}, date(2026, 1, 2))


def test_today_may_only_move_forward_where_signatures_are_required():
    """A day in the past would revive expired entries: refused in CI, not locally."""
    real = date(2026, 11, 30)
    past, future = {"RTGOV_TODAY": "2026-11-01"}, {"RTGOV_TODAY": "2026-12-31"}
    assert today_from(past, real) == date(2026, 11, 1)
    assert today_from(future, real, required=True) == date(2026, 12, 31)
    assert today_from({"RTGOV_TODAY": "2026-11-30"}, real, required=True) == real
    with pytest.raises(QuarantineEntryError, match=r"on or after today \(2026-11-30\)"):
        today_from(past, real, required=True)


def test_the_audit_re_matches_and_re_dates_what_the_section_says():
    """rtgov audit never reads the recorded matches: it re-matches the entries, and
    re-checks their dates on the recorded day (not before the run's, where required)."""
    base = section_of(checked("t.py::a"), checked("t.py::c", "unsigned"),
                      tests=[("t.py::a", "failed")])  # fmt: skip
    forged = {**base, "day": "2026-06-05",
              "tests": [*base["tests"], {**base["tests"][0], "nodeid": "t.py::b"}]}  # fmt: skip
    q = audited_quarantine(forged, "2026-06-05T10:00:00Z")
    assert active_tests(q, ["t.py::a", "t.py::b", "t.py::c"]) == {"t.py::a"}
    late = audited_quarantine({**forged, "day": "2026-06-12"}, "2026-06-12T10:00:00Z")
    assert active_tests(late, ["t.py::a"]) == frozenset()  # expired on 2026-06-10
    assert [c.state for c in late.entries] == ["expired", "unsigned"]
    moved = {**forged, "signatures_required": True}  # a day before the run's: not in CI
    assert active_tests(audited_quarantine(moved, "2026-06-12T10:00:00Z"), ["t.py::a"]) == set()
    assert active_tests(audited_quarantine(forged, "2026-06-12T10:00:00Z"), ["t.py::a"]) == {
        "t.py::a"
    }  # locally the recorded day stands
    # A CI run that started before midnight UTC and ended after it: the day it started on.
    midnight = {**moved, "day": "2026-06-09"}
    assert active_tests(audited_quarantine(midnight, "2026-06-09T23:50:00Z"), ["t.py::a"]) == {
        "t.py::a"
    }
    undated = {k: v for k, v in base.items() if k != "day"}  # merged: shards' days differ
    assert [c.state for c in audited_quarantine(undated, "2027-01-01T00:00:00Z").entries] == [
        "valid", "unsigned"
    ]  # fmt: skip
