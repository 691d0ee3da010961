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

__all__ = [
    "expected_sequences",
    "first_deviation",
    "schedule_facts",
    "shard_schedule_problem",
    "worker_names",
]


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
    deviation: str | None = None,
) -> dict[str, Any]:
    """What a run record keeps of its schedule (``RunRecord.schedule``): the plan's
    digest, seed, policy and worker names, the cost model's digest, the re-plans'
    count, the first deviation (``None``: followed) and each worker's observed
    sequence."""
    return {
        "deviation": deviation,
        "plan": plan.digest,
        "seed": plan.seed,
        "policy": plan.policy,
        "workers": list(names),
        "cost_model": cost_model,
        "replans": len(plan.replans),
        "observed": {name: list(ran) for name, ran in sorted(observed.items()) if ran},
    }


def shard_schedule_problem(shards: Sequence[tuple[str, Mapping[str, Any], Sequence[str]]]) -> (
    str | None
):
    """Why the shards of one run (``(run id, its record's schedule, its tests' node
    ids)``) did not follow one schedule, or ``None``: all scheduled or none, with one
    seed and policy; each shard followed its plan (its own check, ``deviation``) and
    observed every test it recorded; under ``hash`` without re-plans, each shard's plan
    is the plan of its tests (recomputed: its digest and the observed sequences)."""
    from pytest_rtgov.core.schedule import plan_schedule

    scheduled = [shard for shard in shards if shard[1]]
    if not scheduled:
        return None
    if len(scheduled) != len(shards):
        bare = next(run_id for run_id, schedule, _ in shards if not schedule)
        return f"shard {bare} ran without --rtgov-schedule, shard {scheduled[0][0]} with it"
    first_id, first, _ = shards[0]
    for run_id, schedule, nodeids in shards:
        if (schedule.get("seed"), schedule.get("policy")) != (first["seed"], first["policy"]):
            return (
                f"shards {first_id} and {run_id} ran different schedules (seed "
                f"{first['seed']} {first['policy']}, seed {schedule.get('seed')} "
                f"{schedule.get('policy')})"
            )
        if schedule.get("deviation"):
            return f"shard {run_id} did not follow its schedule: {schedule['deviation']}"
        observed = {str(n): list(s) for n, s in dict(schedule.get("observed", {})).items()}
        unseen = sorted(set(nodeids) - {nodeid for ran in observed.values() for nodeid in ran})
        if unseen:
            return f"shard {run_id}: {unseen[0]} is recorded but no worker was seen to start it"
        if schedule["policy"] != "hash" or schedule.get("replans") or not nodeids:
            continue
        names = list(schedule.get("workers", ()))
        plan = plan_schedule(int(schedule["seed"]), nodeids, workers=max(len(names), 1))
        if plan.digest != schedule.get("plan"):
            return (
                f"shard {run_id}: its plan {schedule.get('plan')} is not the plan of its "
                f"tests under seed {schedule['seed']} ({plan.digest})"
            )
        found = first_deviation(expected_sequences(plan, names), observed)
        if found is not None:
            return f"shard {run_id} did not follow its schedule: {found}"
    return None
