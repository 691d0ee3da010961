"""The schedule planner: which worker runs which test, in which order, with which seed.

Pure: a seed, the collected node ids, the number of workers, the policy, the groups and
a cost model in; a frozen :class:`Plan` out. Nothing depends on the collection order,
on ``PYTHONHASHSEED`` or on the machine: every value comes from sha256.

- **Order key**: ``sha256(f"{seed}\\0{nodeid}")``. A test's key depends on itself and
  the seed only, so adding a test does not reshuffle the rest.
- ``hash``: a test goes to worker ``key mod workers`` and each worker runs its tests by
  key. Chosen over dealing the sorted keys round-robin: a new test then moves no other
  test to another worker nor changes any pair's relative order (round-robin shifts every
  later test); the balance is statistical (``lpt`` balances on measured costs).
- ``lpt``: longest first by cost (an unknown cost is the median of the known ones, 0
  when none is known), ties by key; each test to the least-loaded worker, ties to the
  one with fewer tests, then the lowest index (so with no costs at all it deals
  round-robin instead of piling everything on worker 0).
- ``group``: the tests of one group (an ``xdist_group`` name or a scope key) all on one
  worker, one after the other by key; groups placed as ``lpt`` places tests (a group's
  cost is its tests' sum, its key the sha256 of the seed and the group name).
- **Seeds**: per test, ``numpy.random.SeedSequence(seed, spawn_key=K)`` with ``K`` the
  eight big-endian 32-bit words of ``sha256(nodeid)``, then ``generate_state(1,
  uint64)``: a test's stream depends on the seed and its node id, never on what ran
  before it. Derived, so computed when asked (:attr:`Plan.seeds`) and not stored in
  the plan's JSON: 10,000 of them cost about 0.2 s.

>>> plan = plan_schedule(7, ["t.py::a", "t.py::b", "t.py::c"], workers=1)
>>> plan.workers == (plan.order_by_key(["t.py::a", "t.py::b", "t.py::c"]),)
True
>>> Plan.from_json(plan.to_json()) == plan
True
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final, Literal, cast

from pytest_rtgov.core.canonical import canonical_json
from pytest_rtgov.errors import InvalidOptionError, ReadError

__all__ = [
    "PLAN_SCHEMA",
    "POLICIES",
    "Plan",
    "PlanFileError",
    "Policy",
    "Replan",
    "ScheduleError",
    "cost_model_digest",
    "order_key",
    "per_test_seed",
    "plan_schedule",
    "replan",
]

Policy = Literal["hash", "lpt", "group"]
POLICIES: Final[tuple[Policy, ...]] = ("hash", "lpt", "group")
PLAN_SCHEMA: Final = "rtgov.plan/1"


class ScheduleError(InvalidOptionError):
    """The inputs cannot be planned: an unknown policy, fewer than one worker, more
    workers than tests, a negative seed, a group that cannot be satisfied."""


class PlanFileError(ReadError):
    """A plan's JSON is not a plan, or plans another collection: the message names the
    source and what differs."""


def order_key(seed: int, nodeid: str) -> bytes:
    """The 32-byte sha256 order key of ``nodeid`` under ``seed``."""
    return hashlib.sha256(f"{seed}\0{nodeid}".encode()).digest()


def per_test_seed(seed: int, nodeid: str) -> int:
    """The test's own uint64 seed (see the module docstring for the derivation)."""
    import numpy as np  # lazily: the planner's import stays cheap

    digest = hashlib.sha256(nodeid.encode()).digest()
    spawn_key = tuple(int.from_bytes(digest[i : i + 4], "big") for i in range(0, 32, 4))
    sequence = np.random.SeedSequence(seed, spawn_key=spawn_key)
    return int(sequence.generate_state(1, np.uint64)[0])


def cost_model_digest(costs: Mapping[str, float], *, chunk: int = 2048) -> str:
    """``sha256:<hex>`` of the canonical JSON of the costs a plan used. Encoded and
    hashed ``chunk`` keys at a time (the same bytes as :func:`canonical_json` of the
    whole): the encoder's pieces of 100,000 costs would outgrow the CPU's cache."""
    items = sorted(costs.items())  # the order canonical_json's encoder sorts them in
    digest, comma = hashlib.sha256(b"{"), b""
    for start in range(0, len(items), chunk):
        text = canonical_json(dict(items[start : start + chunk]))
        digest.update(comma + text[1:-1])
        comma = b","
    digest.update(b"}")
    return "sha256:" + digest.hexdigest()


class _Seeds(Mapping[str, int]):
    """The planned tests' seeds, each derived on first access."""

    def __init__(self, seed: int, nodeids: frozenset[str]) -> None:
        self._seed, self._nodeids, self._cache = seed, nodeids, dict[str, int]()

    def __getitem__(self, nodeid: str) -> int:
        if nodeid not in self._nodeids:
            raise KeyError(nodeid)
        if nodeid not in self._cache:
            self._cache[nodeid] = per_test_seed(self._seed, nodeid)
        return self._cache[nodeid]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._nodeids))

    def __len__(self) -> int:
        return len(self._nodeids)


@dataclasses.dataclass(frozen=True)
class Replan:
    """One re-plan: worker ``crashed`` stopped; ``moved`` are its tests that had not
    run, now appended to the live workers' lists (``to``: worker index per test)."""

    crashed: int
    moved: Mapping[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"crashed": self.crashed, "moved": dict(self.moved)}


@dataclasses.dataclass(frozen=True)
class Plan:
    """A schedule: each worker's ordered node ids and each test's seed."""

    seed: int
    policy: Policy
    workers: tuple[tuple[str, ...], ...]
    groups: Mapping[str, str] = dataclasses.field(default_factory=dict)
    replans: tuple[Replan, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", MappingProxyType(dict(self.groups)))

    @functools.cached_property
    def seeds(self) -> Mapping[str, int]:
        """Each planned test's seed (:func:`per_test_seed`), computed when first asked."""
        return _Seeds(self.seed, frozenset(self.nodeids))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Plan) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(self.digest)

    @property
    def nodeids(self) -> list[str]:
        """Every planned test, worker by worker, in planned order."""
        return [nodeid for tests in self.workers for nodeid in tests]

    def worker_of(self, nodeid: str) -> int:
        """Index of the worker ``nodeid`` is planned on (a ``KeyError`` if unplanned)."""
        for index, tests in enumerate(self.workers):
            if nodeid in tests:
                return index
        raise KeyError(nodeid)

    def order_by_key(self, nodeids: Sequence[str]) -> tuple[str, ...]:
        """``nodeids`` sorted by this plan's order key."""
        return tuple(sorted(nodeids, key=lambda nodeid: order_key(self.seed, nodeid)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": PLAN_SCHEMA,
            "seed": self.seed,
            "policy": self.policy,
            "workers": [list(tests) for tests in self.workers],
            "groups": dict(self.groups),
            "replans": [replan.to_dict() for replan in self.replans],
        }

    def to_json(self) -> bytes:
        """The plan's canonical JSON: the bytes the object store keeps."""
        return self._json

    @functools.cached_property
    def _json(self) -> bytes:  # made once: the plan is frozen
        return canonical_json(self.to_dict())

    @functools.cached_property
    def digest(self) -> str:
        """``sha256:<hex>`` of :meth:`to_json`."""
        return "sha256:" + hashlib.sha256(self.to_json()).hexdigest()

    @classmethod
    def from_json(
        cls, data: bytes | str, *, source: str = "plan", nodeids: Collection[str] | None = None
    ) -> Plan:
        """Parse and check a plan; with ``nodeids`` (this session's collection), refuse a
        plan of another collection, naming what differs. Raises :class:`PlanFileError`."""
        from pytest_rtgov.core.schedule_json import plan_from_json

        return plan_from_json(data, source=source, nodeids=nodeids)


def _check_inputs(seed: int, nodeids: Sequence[str], workers: int, policy: str) -> None:
    if policy not in POLICIES:
        raise ScheduleError(f"unknown policy {policy!r}: expected one of {', '.join(POLICIES)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ScheduleError(f"seed {seed!r}: expected a non-negative integer")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ScheduleError(f"workers {workers!r}: expected an integer of at least 1")
    if len(set(nodeids)) != len(nodeids):
        duplicate = next(n for n, count in Counter(nodeids).items() if count > 1)
        raise ScheduleError(f"node id {duplicate!r} is collected twice: node ids must be unique")
    if workers > len(nodeids):
        raise ScheduleError(
            f"{workers} workers for {len(nodeids)} tests: expected at most one worker per test"
        )


def _check_groups(collected: Collection[str], groups: Mapping[str, str]) -> None:
    for nodeid, name in groups.items():
        if nodeid not in collected:
            raise ScheduleError(
                f"group {name!r} cannot be satisfied: its test {nodeid!r} is not collected"
            )
        if not isinstance(name, str) or not name:
            raise ScheduleError(f"test {nodeid!r}: group name {name!r}: expected a non-empty name")


def plan_schedule(
    seed: int,
    nodeids: Sequence[str],
    *,
    workers: int,
    policy: Policy | str = "hash",
    groups: Mapping[str, str] | None = None,
    costs: Mapping[str, float] | None = None,
) -> Plan:
    """Plan ``nodeids`` over ``workers`` under ``policy``; see the module docstring.

    ``groups`` maps a node id to its group (used by ``group``; recorded by every policy
    so a re-plan keeps groups together), ``costs`` a node id to seconds (``lpt``,
    ``group``). Raises :class:`ScheduleError` for inputs that cannot be planned.
    """
    nodeids = list(nodeids)
    _check_inputs(seed, nodeids, workers, policy)
    groups = dict(groups or {})
    if groups:  # every policy records them (a re-plan keeps groups together)
        _check_groups(set(nodeids), groups)
    from pytest_rtgov.core.schedule_deal import deal

    lists = deal(seed, nodeids, workers, cast(Policy, policy), groups, dict(costs or {}))
    return Plan(
        seed=seed,
        policy=cast(Policy, policy),
        workers=tuple(tuple(tests) for tests in lists),
        groups=groups,
    )


def replan(plan: Plan, done: Collection[str], crashed: int) -> Plan:
    """``plan`` after worker ``crashed`` stopped having run ``done``: its tests that did
    not run go, in planned order, to the live workers (every worker but the ones that
    crashed, this one and earlier re-plans' ones), each to live worker ``key mod live``
    (a group's tests to its first test's worker, so groups stay together). The crashed
    worker's list keeps what it ran; the move is recorded in :attr:`Plan.replans`."""
    if not 0 <= crashed < len(plan.workers):
        raise ScheduleError(f"worker {crashed}: expected 0 to {len(plan.workers) - 1}")
    dead = {replan.crashed for replan in plan.replans} | {crashed}
    live = [index for index in range(len(plan.workers)) if index not in dead]
    remaining = [nodeid for nodeid in plan.workers[crashed] if nodeid not in done]
    if remaining and not live:
        raise ScheduleError(f"worker {crashed} crashed and no live worker is left to re-plan on")
    lists = [list(tests) for tests in plan.workers]
    lists[crashed] = [nodeid for nodeid in lists[crashed] if nodeid in done]
    moved: dict[str, int] = {}
    group_target: dict[str, int] = {}
    for nodeid in remaining:
        group = plan.groups.get(nodeid)
        target = group_target.get(group) if group is not None else None
        if target is None:
            target = live[int.from_bytes(order_key(plan.seed, nodeid), "big") % len(live)]
            if group is not None:
                group_target[group] = target
        lists[target].append(nodeid)
        moved[nodeid] = target
    return dataclasses.replace(
        plan,
        workers=tuple(tuple(tests) for tests in lists),
        replans=(*plan.replans, Replan(crashed=crashed, moved=moved)),
    )
