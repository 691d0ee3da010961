"""A replay's verdict: the environment drift that can explain a divergence, the outcome
and its exit status, and the result in its canonical form (the ``replay`` ledger leaf's
and the attestation's content).

Pure. The comparison it judges is :mod:`pytest_rtgov.core.replay`'s, which re-exports
these names; the statuses of a compared checkpoint are named here, once.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_rtgov.core.constants import ExitCode
from pytest_rtgov.core.fingerprint import FINGERPRINT_KEYS

if TYPE_CHECKING:
    from pytest_rtgov.core.replay import Comparison

__all__ = [
    "DIVERGED",
    "DRIFT_FIELDS",
    "IDENTICAL",
    "NEW",
    "NOT_REPRODUCED",
    "STATUSES",
    "WITHIN",
    "ReplayOutcome",
    "ReplayResult",
    "decide",
    "environment_drift",
]

# A compared checkpoint's status; diverged and not reproduced are divergences.
IDENTICAL, WITHIN, DIVERGED = "identical", "within_tolerance", "diverged"
NEW, NOT_REPRODUCED = "new", "not_reproduced"
STATUSES = (IDENTICAL, WITHIN, DIVERGED, NEW, NOT_REPRODUCED)
# What can change a replay's numbers: the fingerprint's fields, the array stack's GPU
# side, and the variables that steer kernels; every env.CUPY_* variable counts too. Not
# pytest's or this plugin's version: the instrument does not compute the arrays.
DRIFT_FIELDS = (
    *FINGERPRINT_KEYS,
    "cupy",
    "gpu_sm_count",
    "cuda_runtime",
    "cuda_driver",
    "env.CUBLAS_WORKSPACE_CONFIG",
    "env.RTGOV_BACKEND",
)


def environment_drift(
    recorded_env: Mapping[str, str], replay_env: Mapping[str, str]
) -> list[tuple[str, str, str]]:
    """``(field, recorded, replayed)`` for each determinism-relevant field that differs
    (``DRIFT_FIELDS``, then every ``env.CUPY_*``); a field one side lacks reads ``""``."""
    cupy = {k for env in (recorded_env, replay_env) for k in env if k.startswith("env.CUPY_")}
    return [
        (f, recorded_env.get(f, ""), replay_env.get(f, ""))
        for f in (*DRIFT_FIELDS, *sorted(cupy))
        if recorded_env.get(f, "") != replay_env.get(f, "")
    ]


class ReplayOutcome(str, enum.Enum):
    """What a replay concluded, and the exit status of ``rtgov replay`` for it."""

    IDENTICAL = "identical"
    WITHIN_TOLERANCE = "within_tolerance"
    DIVERGED = "diverged"
    NOT_COMPARABLE = "not_comparable"
    REFUSED = "refused"

    @property
    def exit_code(self) -> ExitCode:
        return _EXIT[self]

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")


_EXIT = {
    ReplayOutcome.IDENTICAL: ExitCode.OK,
    ReplayOutcome.WITHIN_TOLERANCE: ExitCode.OK,
    ReplayOutcome.DIVERGED: ExitCode.GATE_BREACHED,
    ReplayOutcome.NOT_COMPARABLE: ExitCode.INCOMPARABLE,
    ReplayOutcome.REFUSED: ExitCode.REFUSED,
}


def _outcome(
    comparison: Comparison | None, drift: Sequence[tuple[str, str, str]], allow_env_drift: bool
) -> ReplayOutcome:
    if drift and not allow_env_drift:
        return ReplayOutcome.NOT_COMPARABLE
    if comparison is None:
        raise ValueError("a replay without environment drift needs its comparison")
    if comparison.first_divergence is not None:
        return ReplayOutcome.DIVERGED
    if any(r.status == WITHIN for r in comparison.results):
        return ReplayOutcome.WITHIN_TOLERANCE
    return ReplayOutcome.IDENTICAL


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """A replay's outcome with what it rests on. ``reason`` says why a replay was not
    comparable or was refused (empty otherwise)."""

    outcome: ReplayOutcome
    comparison: Comparison | None
    drift: tuple[tuple[str, str, str], ...] = ()
    allow_env_drift: bool = False
    reason: str = ""

    @property
    def exit_code(self) -> ExitCode:
        return self.outcome.exit_code

    def to_dict(self) -> dict[str, Any]:
        """Canonical and JSON-ready (strings, integers, booleans, lists, objects): the
        outcome, the counts, the first divergence (with the drifted fields as its
        candidate causes), the downstream divergences by name, and the drift."""
        results = self.comparison.results if self.comparison else ()
        first = self.comparison.first_divergence if self.comparison else None
        first_dict = None
        if first is not None:
            first_dict = first.to_dict()
            first_dict["candidate_causes"] = [f for f, _, _ in self.drift]
        return {
            "allow_env_drift": self.allow_env_drift,
            "counts": {s: sum(r.status == s for r in results) for s in STATUSES},
            "downstream": [
                {**r.ref.to_dict(), "reason": r.reason, "status": r.status}
                for r in (self.comparison.downstream if self.comparison else ())
            ],
            "drift": [{"field": f, "recorded": a, "replayed": b} for f, a, b in self.drift],
            "exit_code": int(self.exit_code),
            "first_divergence": first_dict,
            "outcome": self.outcome.value,
            "reason": self.reason,
        }


def decide(
    comparison: Comparison | None,
    drift: Iterable[tuple[str, str, str]],
    allow_env_drift: bool,
) -> ReplayResult:
    """The replay's outcome (``.outcome``), with what it rests on. Drift without
    ``allow_env_drift``: not comparable, naming each field with its recorded and
    replayed value (``comparison`` may then be None: the replay need not run). Else
    diverged when any checkpoint diverged or was not reproduced, within tolerance when
    a rule was needed, else identical; drifted fields that were allowed are listed
    beside the first divergence as candidate causes."""
    drift = tuple(drift)
    outcome = _outcome(comparison, drift, allow_env_drift)
    reason = ""
    if outcome is ReplayOutcome.NOT_COMPARABLE:
        fields = "; ".join(f"{f}: {a!r} vs {b!r}" for f, a, b in drift)
        reason = f"the environment differs from the record: {fields}"
    return ReplayResult(outcome, comparison, drift, allow_env_drift, reason)
