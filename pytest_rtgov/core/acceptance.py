"""What a baseline update accepts: each breach sorted by what the next run will judge.

Pure: gate results and gates in, kinds and sentences out. ``--rtgov-update-baseline``
(``plugin/baseline_write.py``) accepts exactly what the next session judges the same
way (docs/gates.md, "Accepting a change"):

- ``regression``: a change against the baseline's values (a regression rule, a
  differing digest): the update takes this run's values, so it is accepted;
- ``A/B regression``: a change against the A/B reference code: accepted only when the
  next session compares against the code this update recorded (``ab_ref =
  "accepted"``, the default), not when ``ab_ref`` names another ref;
- ``budget breach``: outside an absolute ``min`` or ``max`` of gates.toml: never
  accepted, it stays breached until the code meets it or gates.toml changes it;
- ``missing metric``: a metric the baseline has and this run lacks: the update keeps
  the baseline's value, so it is not accepted;
- ``breach``: anything else no baseline value decides (a recorded metric without a
  direction, digests under a numeric gate): not accepted.

>>> from pytest_rtgov.core.gates_config import Gate, GatesConfig
>>> gates = GatesConfig("gates.toml", (Gate(name="size", metric="mib", maximum=10),))
>>> over = GateResult("size", "t.py::t", "mib", "breach", "<= 10", current=20.0)
>>> [(j.kind, j.accepted) for j in judge_breaches([over], gates, ab_follows=True)]
[('budget breach', False)]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from pytest_rtgov.core.constants import EXIT_GATE_BREACHED
from pytest_rtgov.core.format import format_change, format_number
from pytest_rtgov.core.gates_config import Gate, GatesConfig
from pytest_rtgov.core.verdict import GateResult, Verdict

__all__ = ["Judged", "acceptance_notes", "judge_breaches", "settle"]

SHOWN = 3  # breaches named per sentence; the rest are counted


@dataclass(frozen=True, slots=True)
class Judged:
    """One breach of an update session, and whether the update accepts it."""

    result: GateResult
    kind: str  # regression, A/B regression, budget breach, missing metric, breach
    accepted: bool


def _over_budget(result: GateResult, gate: Gate | None) -> bool:
    """Outside the gate's ``min`` or ``max`` (the reason says it, or the value does)."""
    if gate is None or gate.ab or (gate.minimum is None and gate.maximum is None):
        return False
    if " > max " in result.reason or " < min " in result.reason:
        return True
    value = result.current
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return (gate.maximum is not None and value > gate.maximum) or (
        gate.minimum is not None and value < gate.minimum
    )


def judge_breaches(
    breaches: Iterable[GateResult], gates: GatesConfig, *, ab_follows: bool
) -> list[Judged]:
    """Each breach with its kind and whether the update accepts it (the module's
    docstring); ``ab_follows``: the next session's A/B reference is the code this
    update recorded."""
    by_name = {g.name: g for g in gates.gates}
    judged = []
    for r in breaches:
        gate = by_name.get(r.gate)
        if r.status == "missing":
            judged.append(Judged(r, "missing metric", False))
        elif _over_budget(r, gate):
            judged.append(Judged(r, "budget breach", False))
        elif gate is not None and gate.ab:
            judged.append(Judged(r, "A/B regression", ab_follows))
        elif r.baseline is not None:
            judged.append(Judged(r, "regression", True))
        else:
            judged.append(Judged(r, "breach", False))
    return judged


def _worse(r: GateResult) -> str:
    """The change the gate judged, better or worse (``core.format.format_change``)."""
    change = format_change(r.metric, r.baseline, r.current, worse_relative=r.relative)
    return f" {change}" if change else ""


def _named(judged: Sequence[Judged], budget: bool = False) -> str:
    """``gate: subject metric`` of the first few, with the rule for budgets."""
    parts = []
    for j in judged[:SHOWN]:
        r = j.result
        text = f"{r.gate}: {r.subject} {r.metric}"
        if budget:
            current = r.current
            shown = (
                format_number(current)
                if isinstance(current, (int, float)) and not isinstance(current, bool)
                else "?"
            )
            text += f" {r.rule}, current {shown}"
        else:
            text += _worse(r)
        parts.append(text)
    more = len(judged) - SHOWN
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _count(n: int, kind: str) -> str:
    if n == 1:
        return f"1 {kind}"
    return f"{n} {kind}es" if kind.endswith("breach") else f"{n} {kind}s"


_WHY_NOT = {
    "budget breach": (
        "a baseline update never moves an absolute budget (min, max): it stays breached "
        "until the code meets it; to accept it, change gates.toml"
    ),
    "missing metric": (
        "the update keeps the baseline's value of a metric this run lacks: record it "
        "again, or change the gate in gates.toml"
    ),
    "breach": "no baseline value decides it: fix the test or the gate in gates.toml",
}


def acceptance_notes(judged: Sequence[Judged], *, ab_why_not: str = "") -> list[str]:
    """The update session's sentences: what it accepted, and what it did not and why.

    ``ab_why_not``: why A/B regressions are not accepted (the A/B reference does not
    follow the accepted code), for that sentence.

    >>> r = GateResult("acc", "t.py::t", "acc", "breach", "r", 0.81, 0.9, relative=0.1)
    >>> (note,) = acceptance_notes([Judged(r, "regression", True)])
    >>> note.split(": the next")[0]
    'accepted: 1 regression (acc: t.py::t acc -10.0% (worse))'
    """
    notes = []
    accepted = [j for j in judged if j.accepted]
    if accepted:
        kinds = sorted({j.kind for j in accepted})
        what = ", ".join(_count(sum(j.kind == k for j in accepted), k) for k in kinds)
        ab = {j.kind == "A/B regression" for j in accepted}
        whose = "code" if ab == {True} else "values" if ab == {False} else "values and code"
        notes.append(
            f"accepted: {what} ({_named(accepted)}): the next run compares with this "
            f"run's {whose}"
        )
    order = ("budget breach", "A/B regression", "missing metric", "breach")
    for kind in order:
        refused = [j for j in judged if not j.accepted and j.kind == kind]
        if not refused:
            continue
        why = ab_why_not if kind == "A/B regression" else _WHY_NOT[kind]
        named = _named(refused, budget=kind == "budget breach")
        notes.append(f"not accepted: {_count(len(refused), kind)} ({named}): {why}")
    return notes


def settle(verdict: Verdict, judged: Sequence[Judged]) -> Verdict:
    """An update session's verdict once the update is written: it counts what it
    accepted (``accepted``), and a breach it could not accept keeps the session
    ``breached`` (exit 6), the baseline updated all the same (``baseline_action``).

    >>> r = GateResult("size", "t", "mib", "breach", "<= 10", current=20.0)
    >>> v = settle(Verdict("passed", 0, (r,), (), "updated"), [Judged(r, "budget breach", False)])
    >>> v.status, v.exit_status, v.baseline_action, v.accepted
    ('breached', 6, 'updated', 0)
    """
    accepted = sum(j.accepted for j in judged)
    if accepted == len(judged):
        return replace(verdict, accepted=accepted)
    return replace(
        verdict, status="breached", exit_status=int(EXIT_GATE_BREACHED), accepted=accepted
    )
