"""The schedule check: each worker's observed sequence against its planned one.

Pure. A plan's worker ``i`` is the process ``names[i]`` (``gw0``, ``gw1``... under
pytest-xdist, ``main`` without it); a worker's observed sequence is the node ids in
the order that worker started them. The first difference is named in one line:

>>> first_deviation({"gw1": ("t::a", "t::b")}, {"gw1": ["t::a", "t::c"]})
'worker gw1: expected t::b at position 2, ran t::c'
>>> first_deviation({"main": ("t::a", "t::b")}, {"main": ["t::a"]}, stopped=True) is None
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_rtgov.core.schedule import Plan

__all__ = ["expected_sequences", "first_deviation", "schedule_facts", "worker_names"]


def worker_names(plan: Plan, *, xdist: bool) -> tuple[str, ...]:
    """The process names of the plan's workers: ``gw<i>`` under xdist, else ``main``."""
    return tuple(f"gw{i}" for i in range(len(plan.workers))) if xdist else ("main",)


def expected_sequences(plan: Plan, names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Each worker's planned sequence, by its process name."""
    return dict(zip(names, plan.workers, strict=True))


def first_deviation(
    expected: Mapping[str, Sequence[str]],
    observed: Mapping[str, Sequence[str]],
    *,
    stopped: bool = False,
) -> str | None:
    """The first place, worker by worker (in name order), where the observed sequence
    leaves the planned one, as a line; ``None`` when every worker followed its plan.
    ``stopped`` (the session stopped early: ``-x``, ``--maxfail``, an interruption):
    a worker that ran a prefix of its plan followed it."""
    for name in sorted(set(expected) | {n for n, ran in observed.items() if ran}):
        plan, ran = list(expected.get(name, ())), list(observed.get(name, ()))
        for position, (want, got) in enumerate(zip(plan, ran, strict=False), start=1):
            if want != got:
                return f"worker {name}: expected {want} at position {position}, ran {got}"
        if len(ran) > len(plan):
            extra = ran[len(plan)]
            what = f"after its {len(plan)} planned tests" if plan else "with no planned test"
            return f"worker {name}: ran {extra} {what}"
        if len(ran) < len(plan) and not stopped:
            return (
                f"worker {name}: expected {plan[len(ran)]} at position {len(ran) + 1}, "
                f"ran nothing more"
            )
    return None


def schedule_facts(
    plan: Plan,
    names: Sequence[str],
    observed: Mapping[str, Sequence[str]],
    *,
    cost_model: str,
) -> dict[str, Any]:
    """What a run record keeps of its schedule (``RunRecord.schedule``): the plan's
    digest, seed, policy and worker names, the cost model's digest, the re-plans'
    count and each worker's observed sequence."""
    return {
        "plan": plan.digest,
        "seed": plan.seed,
        "policy": plan.policy,
        "workers": list(names),
        "cost_model": cost_model,
        "replans": len(plan.replans),
        "observed": {name: list(ran) for name, ran in sorted(observed.items()) if ran},
    }
