"""Governance replay, pure: re-derive a gated run's gate results and verdict from the
ledger's own content and show where the recorded verdict differs.

Values in, findings out (``store/audit.py`` reads the ledger and the object store and
hands them here; ``rtgov audit`` prints them). For one run:

1. :func:`rebuild_record`: the run record from its ledger leaves (the ``run`` header,
   its ``test``, ``fixture`` and ``gate`` leaves, the ``verdict`` leaf), read back by
   :meth:`RunRecord.from_dict`; the leaves :func:`~pytest_rtgov.core.ledger_records.run_leaves`
   makes of that record must be exactly the run's leaves, the verdict leaf's
   ``record_sha256`` included, so the record is the one the ledger logged.
2. :func:`rederive`: the pure evaluation (:func:`~pytest_rtgov.core.gates.evaluate_gates`
   with the gates and baseline view the session kept, then
   :func:`~pytest_rtgov.core.verdict.decide`, an update's
   :func:`~pytest_rtgov.core.acceptance.settle` and the stages' findings), as the session's
   end ran it. What the session decided from its machine is taken from the recorded
   verdict (:func:`machine_facts`): the baseline state (a seal that failed, an update,
   a created baseline), the notes, whether the A/B reference follows an accepted code,
   whether ``--rtgov-determinism-check`` found a difference (its second run is not
   recorded).
3. :func:`compare`: every gate result field by field against the run's gate leaves, and
   the verdict's status, exit status, counts and baseline action: a difference is a
   :class:`Finding` naming the run, the gate (or the verdict) and the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from pytest_rtgov.core.acceptance import judge_breaches, settle
from pytest_rtgov.core.canonical import canonical_json
from pytest_rtgov.core.constants import EXIT_GATE_BREACHED, EXIT_INTEGRITY
from pytest_rtgov.core.gates import evaluate_gates
from pytest_rtgov.core.gates_config import GatesConfig
from pytest_rtgov.core.ledger_records import run_leaves
from pytest_rtgov.core.quarantine_record import (
    active_tests,
    audited_quarantine,
    build_section,
    excused_among,
    excused_keep_gates,
)
from pytest_rtgov.core.quarantine_record import session_problems as quarantine_problems
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.core.stage_findings import session_problems
from pytest_rtgov.core.subjects import BaselineView
from pytest_rtgov.core.verdict import BREACHING, EXIT_USAGE, Verdict, decide
from pytest_rtgov.errors import RtgovError

__all__ = [
    "RUN_KINDS",
    "VERDICT_FIELDS",
    "Finding",
    "MachineFacts",
    "RunAudit",
    "RunLeaves",
    "audit_run",
    "compare",
    "machine_facts",
    "rebuild_record",
    "rederive",
]

# The leaf kinds a session appends for its record (core/ledger_records.run_leaves).
RUN_KINDS: Final = ("run", "test", "fixture", "stage", "schedule", "execution", "gate", "verdict")
# The verdict's fields the pure evaluation computes (its notes come from the machine).
VERDICT_FIELDS: Final = (
    "status",
    "exit_status",
    "breaches",
    "unconfirmed",
    "gates_evaluated",
    "baseline_action",
    "accepted",
    "quarantined",
)
# A gate result's fields, the ones that decide first.
GATE_FIELDS: Final = (
    "status",
    "current",
    "baseline",
    "rule",
    "threshold",
    "delta",
    "relative",
    "p_value",
    "clock",
    "reason",
)
DETERMINISM_NOTE: Final = "determinism check: "  # plugin/determinism.py's verdict note
_STATE_OF_ACTION: Final = {
    "updated": "update",
    "created": "create",
    "created-local": "create-local",
}


@dataclass(frozen=True, slots=True)
class RunLeaves:
    """A run's leaves in log order (decoded), and where its verdict leaf stands."""

    run_id: str
    leaves: tuple[Mapping[str, Any], ...]
    verdict_index: int


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing that does not re-derive: the run, the place (``verdict``, ``gate 'g'
    (subject, metric)``, ``record``, ``inputs``), the field and what differs."""

    run_id: str
    place: str
    field: str
    detail: str

    def __str__(self) -> str:
        return f"{self.place}: {self.field}: {self.detail}"


@dataclass(frozen=True, slots=True)
class RunAudit:
    """One gated run's audit: ``re-derived``, ``differs`` (findings) or ``not auditable``."""

    run_id: str
    verdict_index: int
    outcome: str
    findings: tuple[Finding, ...] = ()
    recorded: Verdict | None = None
    derived: Verdict | None = None
    reason: str = ""  # not auditable: why

    @property
    def ok(self) -> bool:
        return self.outcome == "re-derived"


@dataclass(frozen=True, slots=True)
class MachineFacts:
    """What the session decided from its machine, read from the recorded verdict."""

    baseline_state: str  # one of core.verdict.BASELINE_STATES
    tests_exit_status: int
    ab_follows: bool  # an update: the next A/B reference is the code it accepted
    notes: tuple[str, ...]
    # --rtgov-determinism-check found checkpoints that differ between two runs of a test
    # (its second run is not recorded: the verdict's note says it)
    nondeterministic: bool = False


def _plain(value: Any) -> Any:
    """``value`` as the ledger holds it: through canonical JSON and back."""
    return json.loads(canonical_json(value))


def rebuild_record(run: RunLeaves) -> tuple[RunRecord | None, list[Finding]]:
    """The run record from its leaves, checked to be the one its verdict leaf names."""
    by_kind: dict[str, list[dict[str, Any]]] = {kind: [] for kind in RUN_KINDS}
    for leaf in run.leaves:
        by_kind[str(leaf["kind"])].append({k: v for k, v in leaf.items() if k != "kind"})

    def finding(detail: str) -> list[Finding]:
        return [Finding(run.run_id, "record", "leaves", detail)]

    if len(by_kind["run"]) != 1 or len(by_kind["verdict"]) != 1:
        return None, finding(
            f"expected one run and one verdict leaf, found {len(by_kind['run'])} and "
            f"{len(by_kind['verdict'])}"
        )
    verdict = by_kind["verdict"][0]
    data = {
        **by_kind["run"][0],
        "tests": [_without_run_id(t) for t in by_kind["test"]],
        "fixtures": [_without_run_id(f) for f in by_kind["fixture"]],
        "gate_results": [_without_run_id(g) for g in by_kind["gate"]],
        "verdict": verdict.get("verdict"),
        "exit_status": verdict.get("exit_status"),
    }
    try:
        record = RunRecord.from_dict(data, source=f"the ledger's leaves of run {run.run_id}")
        again = [json.loads(leaf) for leaf in run_leaves(record)]
    except (RtgovError, ValueError, TypeError) as exc:
        return None, finding(f"they do not read back as a run record ({exc})")
    logged = [dict(leaf) for leaf in run.leaves]
    if again != logged:
        first = next(
            (i for i, (a, b) in enumerate(zip(again, logged, strict=False)) if a != b),
            min(len(again), len(logged)),
        )
        kind = logged[first]["kind"] if first < len(logged) else again[first]["kind"]
        what = (
            "its record_sha256 is not the digest of the record its leaves make"
            if kind == "verdict"
            else "it is not what the record rebuilt from the leaves gives"
        )
        return None, finding(f"leaf {first} of the run ({kind}): {what}")
    return record, []


def _without_run_id(leaf: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in leaf.items() if k != "run_id"}


def _excused_tests(record: RunRecord) -> frozenset[str]:
    """The tests whose failure a valid entry excuses, re-matched from the entries the
    section holds (``audited_quarantine``), not read from its recorded matches."""
    if not record.quarantine:
        return frozenset()
    quarantine = audited_quarantine(record.quarantine, record.started_at)
    return active_tests(quarantine, (t.nodeid for t in record.tests))


def machine_facts(record: RunRecord, recorded: Verdict) -> MachineFacts:
    """The baseline state, the tests' exit status and the A/B acceptance the session
    decided from its machine, as the recorded verdict says them.

    The tests' status is pytest's where the verdict says ``failed-tests``; else 1 when
    a test of the record failed (pytest's own rule) that no valid quarantine entry
    excuses (the record's ``quarantine`` section), else 0: a verdict that hides a
    failed test does not re-derive.
    """
    action = recorded.baseline_action
    if action in _STATE_OF_ACTION:
        state = _STATE_OF_ACTION[action]
    elif recorded.status == "no-baseline":
        state = "absent"
    elif recorded.status == "error":
        state = "unreadable" if recorded.exit_status == EXIT_USAGE else "untrusted"
    else:
        state = "present"
    if recorded.status == "failed-tests":
        tests = recorded.exit_status
    else:
        excused = _excused_tests(record)
        tests = int(
            any(t.outcome in ("failed", "error") and t.nodeid not in excused for t in record.tests)
        )
    refused_ab = any(
        note.startswith("not accepted:") and "A/B regression" in note for note in recorded.notes
    )
    nondeterministic = any(note.startswith(DETERMINISM_NOTE) for note in recorded.notes)
    return MachineFacts(state, tests, not refused_ab, recorded.notes, nondeterministic)


def rederive(
    record: RunRecord, gates: GatesConfig | None, view: BaselineView | None, facts: MachineFacts
) -> Verdict:
    """The verdict the session's end computes (``plugin/gating.py``, ``baseline_write``,
    ``finish``'s stage step) from the record, the kept gates and baseline view, and the
    machine's facts. No view: the session judged no gate (it stopped before reading a
    baseline: a seal that failed, a baseline gone), so no results."""
    results = evaluate_gates(gates, record, view)[0] if gates and view is not None else []
    quarantine = audited_quarantine(record.quarantine, record.started_at)
    results = excused_keep_gates(results, record, _excused_tests(record))
    verdict = decide(
        results,
        tests_exit_status=facts.tests_exit_status,
        baseline=facts.baseline_state,
        notes=facts.notes,
        quarantined=excused_among(quarantine, ((r.gate, r.subject) for r in results)),
    )
    if facts.baseline_state == "update" and verdict.baseline_action == "updated":
        assert gates is not None
        judged = judge_breaches(verdict.breaches, gates, ab_follows=facts.ab_follows)
        verdict = settle(verdict, judged)
    status, _ = session_problems(record.fixtures, exit_status=verdict.exit_status)
    if facts.nondeterministic and status == 0:  # plugin/determinism.py: as a breach
        status = int(EXIT_GATE_BREACHED)
    if record.quarantine:  # the section as the session would build it, re-matched
        section = build_section(
            quarantine, digest="", tests=((t.nodeid, t.outcome) for t in record.tests),
            results=(r.to_dict() for r in results),
            signatures_required=bool(record.quarantine.get("signatures_required")),
        )  # fmt: skip
        status, _ = quarantine_problems(section, exit_status=status)
    if status != verdict.exit_status:
        verdict = replace(
            verdict,
            status="error" if status == EXIT_INTEGRITY else "breached",
            exit_status=status,
        )
    return verdict


def _gate_place(result: Mapping[str, Any]) -> str:
    return f"gate {result.get('gate')!r} ({result.get('subject')}, {result.get('metric')})"


def compare(
    run_id: str, record: RunRecord, derived: Verdict, *, recorded_exit: int
) -> list[Finding]:
    """Each recorded gate result and verdict field against the re-derived ones."""
    findings: list[Finding] = []
    logged = {_key(g): g for g in record.gate_results}
    fresh = {_key(g): g for g in _plain(derived.gate_results())}
    for key in [*logged, *(k for k in fresh if k not in logged)]:
        old, new = logged.get(key), fresh.get(key)
        if old is None or new is None:
            have = "recorded, not re-derived" if new is None else "re-derived, not recorded"
            findings.append(Finding(run_id, _gate_place(old or new or {}), "result", have))
            continue
        was, now = old.get("status") in BREACHING, new.get("status") in BREACHING
        if was != now:
            findings.append(
                Finding(run_id, _gate_place(old), "breach", f"recorded {was}, re-derived {now}")
            )
        for name in GATE_FIELDS:
            if old.get(name) != new.get(name):
                detail = f"recorded {old.get(name)!r}, re-derived {new.get(name)!r}"
                findings.append(Finding(run_id, _gate_place(old), name, detail))
    verdict = dict(record.verdict)
    computed = _plain(derived.to_dict())
    for name in VERDICT_FIELDS:
        if verdict.get(name) != computed.get(name):
            detail = f"recorded {verdict.get(name)!r}, re-derived {computed.get(name)!r}"
            findings.append(Finding(run_id, "verdict", name, detail))
    if recorded_exit != derived.exit_status:
        detail = f"recorded {recorded_exit}, re-derived {derived.exit_status}"
        findings.append(Finding(run_id, "verdict leaf", "exit_status", detail))
    return findings


def _key(result: Mapping[str, Any]) -> tuple[str, str, str]:
    return (str(result.get("gate")), str(result.get("subject")), str(result.get("metric")))


def audit_run(
    run: RunLeaves,
    record: RunRecord,
    gates: GatesConfig | None,
    view: BaselineView | None,
    *,
    findings: Sequence[Finding] = (),
) -> RunAudit:
    """One run, its record rebuilt (:func:`rebuild_record`), re-derived and compared;
    ``findings``: what the store already found (an input missing or corrupt)."""
    recorded = Verdict.of_record(record)
    if findings:
        return RunAudit(run.run_id, run.verdict_index, "differs", tuple(findings), recorded)
    facts = machine_facts(record, recorded)
    derived = rederive(record, gates, view, facts)
    found = compare(run.run_id, record, derived, recorded_exit=record.exit_status)
    outcome = "differs" if found else "re-derived"
    return RunAudit(run.run_id, run.verdict_index, outcome, tuple(found), recorded, derived)
