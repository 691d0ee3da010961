"""core/audit.py: a run record rebuilt from its ledger leaves, its verdict re-derived
from the kept gates and baseline, every difference a finding naming the gate or the
verdict's field (issue 16, 6)."""

from __future__ import annotations

import dataclasses
import json

from pytest_rtgov.core.acceptance import judge_breaches, settle
from pytest_rtgov.core.audit import RunLeaves, audit_run, machine_facts, rebuild_record
from pytest_rtgov.core.canonical import canonical_json
from pytest_rtgov.core.gates import evaluate_gates
from pytest_rtgov.core.ledger_records import run_leaves
from pytest_rtgov.core.records import FixtureEntry, FixtureSetup, Metric, RunRecord, Sample
from pytest_rtgov.core.verdict import Verdict, decide
from tests.unit.test_gates import T, ab_run, config, run, view

ACC = {T: {"acc": [0.95]}}


def gated(record: RunRecord, gates, baseline, state="present", tests=0, notes=()) -> RunRecord:
    """``record`` stamped with the verdict a session's end gives it."""
    results, _ = evaluate_gates(gates, record, baseline)
    verdict = decide(results, tests_exit_status=tests, baseline=state, notes=notes)
    if state == "update":
        verdict = settle(verdict, judge_breaches(verdict.breaches, gates, ab_follows=True))
    return verdict.stamp(record)


def leaves_of(record: RunRecord) -> RunLeaves:
    leaves = tuple(json.loads(leaf) for leaf in run_leaves(record))
    return RunLeaves(record.run_id, leaves, 7 + len(leaves))


def audit(record: RunRecord, gates, baseline, leaves: RunLeaves | None = None):
    rebuilt, findings = rebuild_record(leaves or leaves_of(record))
    assert rebuilt is not None, findings
    return audit_run(leaves or leaves_of(record), rebuilt, gates, baseline)


def accuracy(value: float, outcome: str = "passed") -> RunRecord:
    return run(metrics=[Metric("acc", value, higher_is_better=True)], outcome=outcome)


GATES = config(metric="acc", max_regression_pct=1)


def test_a_breach_re_derives_and_a_verdict_flipped_to_passed_does_not():
    record = gated(accuracy(0.90), GATES, view(metrics=ACC))
    assert record.verdict["status"] == "breached"
    result = audit(record, GATES, view(metrics=ACC))
    assert result.ok and result.derived is not None and result.derived.exit_status == 6
    forged = dataclasses.replace(
        record, exit_status=0, verdict={**record.verdict, "status": "passed", "exit_status": 0}
    )
    result = audit(forged, GATES, view(metrics=ACC))
    assert result.outcome == "differs"
    found = {(f.place, f.field) for f in result.findings}
    verdict = {("verdict", "status"), ("verdict", "exit_status")}
    assert found == verdict | {("verdict leaf", "exit_status")}


def test_a_gate_result_changed_names_the_gate_and_the_fields():
    record = gated(accuracy(0.90), GATES, view(metrics=ACC))
    results = [dict(g) for g in record.gate_results]
    results[0]["status"] = "pass"
    forged = dataclasses.replace(record, gate_results=tuple(results))
    result = audit(forged, GATES, view(metrics=ACC))
    text = [str(f) for f in result.findings]
    assert f"gate 'g' ({T}, acc): breach: recorded False, re-derived True" in text
    assert f"gate 'g' ({T}, acc): status: recorded 'pass', re-derived 'breach'" in text


def test_another_baseline_than_the_kept_one_does_not_re_derive():
    record = gated(accuracy(0.95), GATES, view(metrics=ACC))
    assert audit(record, GATES, view(metrics=ACC)).ok
    result = audit(record, GATES, view(metrics={T: {"acc": [0.99]}}))
    assert ("verdict", "status") in {(f.place, f.field) for f in result.findings}


def test_leaves_that_are_not_the_record_their_verdict_leaf_names_are_a_finding():
    record = gated(accuracy(0.90), GATES, view(metrics=ACC))
    leaves = leaves_of(record)
    edited = [dict(leaf) for leaf in leaves.leaves]
    test = next(leaf for leaf in edited if leaf["kind"] == "test")
    test["metrics"][0]["value"] = 0.99  # the measurement, not the record the digest names
    rebuilt, findings = rebuild_record(dataclasses.replace(leaves, leaves=tuple(edited)))
    assert rebuilt is None
    assert "(verdict): its record_sha256 is not the digest" in str(findings[0])
    one_verdict = RunLeaves(record.run_id, leaves.leaves[:-1], 3)
    assert "expected one run and one verdict leaf" in str(rebuild_record(one_verdict)[1][0])


def test_an_update_re_derives_what_it_accepted_and_what_it_did_not():
    gates = config(metric="acc", max_regression_pct=1, min=0.92)
    record = gated(accuracy(0.90), gates, view(metrics=ACC), state="update")
    # the regression is accepted, the budget (min 0.92) is not: breached, baseline updated
    assert record.verdict["status"] == "breached" and record.verdict["baseline_action"] == "updated"
    assert audit(record, gates, view(metrics=ACC)).ok
    forged = dataclasses.replace(
        record,
        exit_status=0,
        verdict={**record.verdict, "status": "passed", "exit_status": 0, "accepted": 1},
    )
    found = {f.field for f in audit(forged, gates, view(metrics=ACC)).findings}
    assert {"status", "exit_status", "accepted"} <= found


def test_an_unconfirmed_ab_result_re_derives():
    gates = config(max_regression_pct=5, ab=True)
    base = [0.010 + 0.001 * (i % 3) for i in range(20)]
    record = gated(ab_run([(b * 1.2, b) for b in base], [(b, b) for b in base]), gates, view())
    assert [g["status"] for g in record.gate_results] == ["unconfirmed"]
    result = audit(record, gates, view())
    assert result.ok and result.derived is not None
    assert result.derived.count("unconfirmed") == 1


def test_a_hidden_test_failure_does_not_re_derive():
    record = gated(accuracy(0.95, outcome="failed"), GATES, view(metrics=ACC), tests=1)
    assert record.verdict["status"] == "failed-tests" and audit(record, GATES, view(metrics=ACC)).ok
    forged = dataclasses.replace(
        record, exit_status=0, verdict={**record.verdict, "status": "passed", "exit_status": 0}
    )
    derived = audit(forged, GATES, view(metrics=ACC)).derived
    assert derived is not None and (derived.status, derived.exit_status) == ("failed-tests", 1)


def test_machine_facts_come_from_the_recorded_verdict():
    rec = accuracy(0.95)
    facts = machine_facts(rec, Verdict("error", 7, notes=("baseline: its seal fails",)))
    assert (facts.baseline_state, facts.tests_exit_status) == ("untrusted", 0)
    assert machine_facts(rec, Verdict("error", 4)).baseline_state == "unreadable"
    assert machine_facts(rec, Verdict("no-baseline", 6)).baseline_state == "absent"
    created = machine_facts(rec, Verdict("passed", 0, baseline_action="created-local"))
    assert created.baseline_state == "create-local"
    note = "determinism check: 1 checkpoints differ between two runs of their test"
    assert machine_facts(rec, Verdict("breached", 6, notes=(note,))).nondeterministic


def test_a_determinism_finding_and_a_stage_refusal_decide_as_the_session_end_does():
    note = "determinism check: 1 checkpoints differ between two runs of their test"
    record = gated(accuracy(0.95), GATES, view(metrics=ACC))
    flagged = dataclasses.replace(
        record,
        exit_status=6,
        verdict={**record.verdict, "status": "breached", "exit_status": 6, "notes": [note]},
    )
    assert audit(flagged, GATES, view(metrics=ACC)).ok
    fatal = {"stage": "s", "key": "k", "outcome": "refused", "fatal": True, "reason": "r"}
    setup = FixtureSetup(worker="main", requested_by=T, outcome="passed", sample=Sample(5, 5),
                         stage=fatal)
    entry = FixtureEntry(nodeid="", name="s", scope="session", setups=(setup,))
    refused = dataclasses.replace(record, fixtures=(entry,))
    forged = audit(refused, GATES, view(metrics=ACC))  # says passed, 0
    assert {(f.field, f.detail) for f in forged.findings} >= {
        ("status", "recorded 'passed', re-derived 'error'")
    }


def test_no_view_recorded_means_no_gate_was_judged():
    record = decide((), tests_exit_status=0, baseline="untrusted").stamp(accuracy(0.95))
    result = audit(record, GATES, None)
    assert result.ok and result.derived is not None and result.derived.results == ()
    assert json.loads(canonical_json(result.derived.to_dict()))["status"] == "error"


def test_a_record_with_checkpoints_makes_canonical_leaves_that_rebuild_it():
    """``checkpoints`` sorts before ``kind``: the test leaf is still canonical JSON."""
    from pytest_rtgov.core.array_checkpoints import ArrayCheckpoint
    from pytest_rtgov.core.ledger_records import parse_leaf

    checkpoint = ArrayCheckpoint("logits", 0, "array", "sha256:" + "0" * 64, "float32", (2,), False)
    record = accuracy(0.95)
    test = dataclasses.replace(record.tests[0], checkpoints=(checkpoint,))
    record = gated(dataclasses.replace(record, tests=(test,)), GATES, view(metrics=ACC))
    leaves = [parse_leaf(leaf) for leaf in run_leaves(record)]  # canonical, or it raises
    assert leaves[1]["kind"] == "test" and leaves[1]["checkpoints"][0]["name"] == "logits"
    assert audit(record, GATES, view(metrics=ACC)).ok
