"""Reading a plan back: a plan's JSON checked field by field, and against a collection.

Pure. Every refusal is a :class:`~pytest_rtgov.core.schedule.PlanFileError` naming
the source, the place and what was expected; a plan of another collection names the
tests it plans that were not collected and the collected tests it does not plan.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any, cast

from pytest_rtgov.core.schedule import (
    PLAN_SCHEMA,
    POLICIES,
    Plan,
    PlanFileError,
    Policy,
    Replan,
)

__all__ = ["collection_difference", "fit_plan", "plan_from_json"]

_SHOWN = 3


def _fail(source: str, place: str, expected: str) -> PlanFileError:
    return PlanFileError(f"{source}: at {place}: expected {expected}")


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _names(values: list[str]) -> str:
    shown = ", ".join(values[:_SHOWN])
    more = f" and {len(values) - _SHOWN} more" if len(values) > _SHOWN else ""
    return shown + more


def collection_difference(planned: Collection[str], collected: Collection[str]) -> str | None:
    """What differs between a plan's tests and a collection's, or ``None``."""
    extra = sorted(set(planned) - set(collected))
    missing = sorted(set(collected) - set(planned))
    parts = []
    if extra:
        parts.append(f"plans {len(extra)} test(s) not collected ({_names(extra)})")
    if missing:
        parts.append(f"does not plan {len(missing)} collected test(s) ({_names(missing)})")
    return "; ".join(parts) or None


def fit_plan(plan: Plan, nodeids: Collection[str], workers: int, *, source: str) -> None:
    """Refuse to run ``plan`` (read from ``source``) in a session that collected
    ``nodeids`` for ``workers`` workers: :class:`PlanFileError` naming what differs."""
    if len(plan.workers) != workers:
        raise PlanFileError(
            f"{source}: a plan for {len(plan.workers)} worker(s): this session runs {workers} "
            f"({'-n ' + str(workers) if workers > 1 else 'no xdist'})"
        )
    difference = collection_difference(plan.nodeids, nodeids)
    if difference is not None:
        raise PlanFileError(f"{source}: a plan of another collection: it {difference}")


def _workers(source: str, value: Any) -> tuple[tuple[str, ...], ...]:
    if not isinstance(value, list) or not value:
        raise _fail(source, "workers", "a non-empty list of lists of node ids")
    seen: set[str] = set()
    for index, tests in enumerate(value):
        if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
            raise _fail(source, f"workers[{index}]", "a list of node ids")
        for nodeid in tests:
            if nodeid in seen:
                raise _fail(source, f"workers[{index}]", f"{nodeid!r} planned once, not twice")
            seen.add(nodeid)
    return tuple(tuple(tests) for tests in value)


def _replans(source: str, value: Any, workers: int) -> tuple[Replan, ...]:
    if not isinstance(value, list):
        raise _fail(source, "replans", "a list")
    replans = []
    for index, item in enumerate(value):
        place = f"replans[{index}]"
        if not isinstance(item, dict) or set(item) != {"crashed", "moved"}:
            raise _fail(source, place, "an object with crashed and moved")
        crashed, moved = item["crashed"], item["moved"]
        if not _int(crashed) or not 0 <= crashed < workers:
            raise _fail(source, f"{place}.crashed", f"a worker index below {workers}")
        if not isinstance(moved, dict) or not all(
            _int(w) and 0 <= w < workers for w in moved.values()
        ):
            raise _fail(source, f"{place}.moved", "an object of node id to worker index")
        replans.append(Replan(crashed=crashed, moved=moved))
    return tuple(replans)


def plan_from_json(
    data: bytes | str, *, source: str = "plan", nodeids: Collection[str] | None = None
) -> Plan:
    """The :class:`Plan` in ``data`` (see :meth:`Plan.from_json`)."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise _fail(source, "the top", f"JSON ({error})") from None
    if not isinstance(value, dict):
        raise _fail(source, "the top", "a JSON object")
    keys = {"schema", "seed", "policy", "workers", "groups", "replans"}
    if set(value) != keys:
        raise _fail(source, "the top", f"exactly the keys {', '.join(sorted(keys))}")
    if value["schema"] != PLAN_SCHEMA:
        raise _fail(source, "schema", repr(PLAN_SCHEMA))
    seed = value["seed"]
    if not _int(seed) or seed < 0:
        raise _fail(source, "seed", "a non-negative integer")
    if value["policy"] not in POLICIES:
        raise _fail(source, "policy", f"one of {', '.join(POLICIES)}")
    workers = _workers(source, value["workers"])
    planned = [nodeid for tests in workers for nodeid in tests]
    groups, planned_set = value["groups"], set(planned)
    if not isinstance(groups, dict) or not all(
        isinstance(g, str) and g and n in planned_set for n, g in groups.items()
    ):
        raise _fail(source, "groups", "an object of planned node id to group name")
    plan = Plan(
        seed=seed,
        policy=cast(Policy, value["policy"]),
        workers=workers,
        groups=groups,
        replans=_replans(source, value["replans"], len(workers)),
    )
    if nodeids is not None:
        difference = collection_difference(planned, nodeids)
        if difference is not None:
            raise PlanFileError(f"{source}: a plan of another collection: it {difference}")
    return plan
