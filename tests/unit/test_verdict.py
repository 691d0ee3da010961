"""The verdict in the core: statuses, round trips, the one decision, records old and new."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_rtgov.core.constants import EXIT_GATE_BREACHED, EXIT_INTEGRITY
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.core.verdict import (
    BASELINE_STATES,
    BREACHING,
    GATE_STATUSES,
    SESSION_STATUSES,
    UNGATED,
    GateResult,
    Verdict,
    decide,
)
from pytest_rtgov.errors import RecordFormatError

finite = st.floats(allow_nan=False, allow_infinity=False)
maybe_number = st.none() | finite
text = st.text(max_size=12)

results = st.builds(
    GateResult,
    gate=text,
    subject=text,
    metric=text,
    status=st.sampled_from(GATE_STATUSES),
    rule=text,
    current=st.none() | finite | st.just("sha256:" + "a" * 64),
    baseline=st.none() | finite | text,
    delta=maybe_number,
    relative=maybe_number | st.sampled_from([math.inf, -math.inf]),
    p_value=maybe_number,
    reason=text,
    threshold=maybe_number,
)
verdicts = st.builds(
    Verdict,
    status=st.sampled_from(SESSION_STATUSES),
    exit_status=st.integers(0, 9),
    results=st.lists(results, max_size=5).map(tuple),
    notes=st.lists(text, max_size=3).map(tuple),
    baseline_action=st.sampled_from([None, "updated", "created", "created-local"]),
)


@given(results)
def test_a_gate_result_round_trips(result: GateResult) -> None:
    assert GateResult.from_dict(result.to_dict()) == result


@given(verdicts)
def test_a_verdict_round_trips_through_the_record_keys(verdict: Verdict) -> None:
    again = Verdict.from_dict(verdict.to_dict(), verdict.gate_results())
    assert again == verdict
    assert again.to_dict()["breaches"] == sum(r.status in BREACHING for r in verdict.results)


def test_non_finite_numbers_are_written_as_null_and_infinite_changes_as_text() -> None:
    r = GateResult("g", "t", "wall_time", "breach", "r", current=math.inf, relative=math.inf)
    d = r.to_dict()
    assert d["current"] is None and d["relative"] == "inf"
    assert GateResult.from_dict(d).relative == math.inf


def test_the_breaching_statuses_are_breach_and_missing_only() -> None:
    assert BREACHING == ("breach", "missing")
    assert [s for s in GATE_STATUSES if GateResult("g", "t", "m", s, "r").breached] == [
        *BREACHING
    ]


def test_a_malformed_result_names_the_place_and_what_was_expected() -> None:
    bad = GateResult("g", "t", "m", "pass", "r").to_dict() | {"status": "great"}
    with pytest.raises(RecordFormatError, match=r"x.json: at \$.gate_results\[2\].status"):
        GateResult.from_dict(bad, source="x.json", place="$.gate_results[2]")
    with pytest.raises(RecordFormatError, match=r"verdict\.exit_status: expected an integer"):
        Verdict.from_dict({"status": "passed", "exit_status": "0"})


BREACH = GateResult("g", "t", "wall_time", "breach", "max 1 s")
MISSING = GateResult("g", "t", "wall_time", "missing", "max 1 s")
PASS = GateResult("g", "t", "wall_time", "pass", "max 1 s")
UNCONFIRMED = GateResult("g", "t", "wall_time", "unconfirmed", "A/B")


@pytest.mark.parametrize(
    ("results", "tests", "baseline", "status", "code", "action"),
    [
        ([PASS], 0, "present", "passed", 0, None),
        ([PASS, UNCONFIRMED], 0, "present", "passed", 0, None),
        ([BREACH], 0, "present", "breached", EXIT_GATE_BREACHED, None),
        ([MISSING], 0, "present", "breached", EXIT_GATE_BREACHED, None),
        ([BREACH], 1, "present", "failed-tests", 1, None),
        ([PASS], 5, "present", "failed-tests", 5, None),
        ([BREACH], 0, "update", "passed", 0, "updated"),
        ([BREACH], 1, "update", "failed-tests", 1, None),
        ([PASS], 0, "create", "passed", 0, "created"),
        ([PASS], 0, "create-local", "passed", 0, "created-local"),
        ([], 0, "absent", "no-baseline", EXIT_GATE_BREACHED, None),
        ([BREACH], 0, "absent", "breached", EXIT_GATE_BREACHED, None),
        ([], 1, "absent", "failed-tests", 1, None),
        ([PASS], 0, "untrusted", "error", EXIT_INTEGRITY, None),
        ([PASS], 1, "untrusted", "error", EXIT_INTEGRITY, None),
        ([], 0, "unreadable", "error", 4, None),
    ],
)
def test_the_decision(results, tests, baseline, status, code, action) -> None:
    verdict = decide(results, tests_exit_status=tests, baseline=baseline, notes=["n"])
    assert (verdict.status, verdict.exit_status, verdict.baseline_action) == (status, code, action)
    assert verdict.notes == ("n",) and verdict.results == tuple(results)


def test_every_baseline_state_is_decided() -> None:
    for state in BASELINE_STATES:
        assert decide([], tests_exit_status=0, baseline=state).status in SESSION_STATUSES
    with pytest.raises(ValueError, match="baseline state"):
        decide([], tests_exit_status=0, baseline="maybe")


def test_a_ledger_failure_is_an_integrity_error_that_keeps_the_results() -> None:
    breached = decide([BREACH], tests_exit_status=0)
    failed = breached.with_ledger_failure("the ledger was not appended: disk full")
    assert (failed.status, failed.exit_status) == ("error", EXIT_INTEGRITY)
    assert failed.results == breached.results and len(failed.breaches) == 1
    assert failed.notes[-1] == "the ledger was not appended: disk full"
    assert breached.exit_status == EXIT_GATE_BREACHED  # unchanged: frozen


def _record(**kw) -> RunRecord:
    base = dict(
        run_id="20260101T000000Z-abcdef12",
        started_at="2026-01-01T00:00:00Z",
        ended_at="2026-01-01T00:00:01Z",
        mode="record",
        pytest_args=(),
        memory_mode="off",
        backend="numpy",
        workers=("main",),
        environment={},
        tests=(),
        fixtures=(),
    )
    return RunRecord(**(base | kw))


def test_an_ungated_record_reads_recorded() -> None:
    verdict = Verdict.of_record(_record(exit_status=1))
    assert (verdict.status, verdict.exit_status, verdict.results) == (UNGATED, 1, ())


def test_a_gated_record_reads_its_verdict_and_results() -> None:
    verdict = decide([BREACH, PASS], tests_exit_status=0, notes=["why"])
    record = _record(
        mode="gate",
        exit_status=verdict.exit_status,
        gate_results=verdict.gate_results(),
        verdict=verdict.to_dict(),
    )
    assert Verdict.of_record(record) == verdict
    assert Verdict.of_record(RunRecord.from_dict(record.to_dict())) == verdict
