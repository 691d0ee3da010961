"""Race checks, the pure part: permuted plans, each test's signature, which tests depend
on the plan, and the delta debugging (ddmin) that shrinks a victim's predecessors.

``rtgov races`` (cli/races.py) runs K plans. Plan ``i`` orders and places the tests as
``plan_schedule(seed + i, ...)`` does (``hash`` policy: so with several workers it also
varies which tests share a worker), but keeps the per-test seeds of ``seed``
(:func:`permuted_plan`): only the order and the co-location change between plans, never
a test's random stream, so a test whose result depends on its seed is not mistaken for
an order dependence.

A test's signature is its outcome and its checkpoints' sha256 digests. A test depends on
the plan when its signature differs between the K plans; its reference is its signature
when it runs alone. In a plan where it differs from that reference, its candidate
predecessors are the tests that ran before it on its worker; :func:`ddmin` halves them
(Zeller's delta debugging) to a minimal set that still changes it. When even all of them
do not, nothing on its own worker explains it: it depends on what ran concurrently on
another worker, and the suspects are the tests that ran on another worker in every plan
that changed it (:func:`concurrent_suspects`).

>>> ddmin(["a", "b", "c", "d"], lambda subset: "c" in subset)
['c']
>>> ids = ["t.py::a", "t.py::b"]
>>> permuted_plan(5, ids, workers=1, index=0) == plan_schedule(5, ids, workers=1)
True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pytest_rtgov.core.schedule import Plan, plan_schedule

__all__ = [
    "Finding",
    "Signature",
    "concurrent_suspects",
    "ddmin",
    "dependent_tests",
    "permuted_plan",
    "signatures",
]

Signature = tuple[str, tuple[tuple[str, str], ...]]  # (outcome, ((checkpoint, sha256), ...))


def permuted_plan(seed: int, nodeids: Sequence[str], *, workers: int, index: int) -> Plan:
    """Plan ``index`` of a race check: the placement and order of ``hash`` under seed
    ``seed + index``, with the per-test seeds of ``seed``."""
    placed = plan_schedule(seed + index, nodeids, workers=workers, policy="hash")
    return Plan(seed=seed, policy="hash", workers=placed.workers)


def signatures(record: Any) -> dict[str, Signature]:
    """Each recorded test's signature: its outcome and its checkpoints' digests."""
    return {
        test.nodeid: (test.outcome, tuple((c.name, c.sha256) for c in test.checkpoints))
        for test in record.tests
    }


def dependent_tests(runs: Sequence[Mapping[str, Signature]]) -> list[str]:
    """The tests whose signature is not the same in every run that recorded them."""
    seen: dict[str, set[Signature]] = {}
    for run in runs:
        for nodeid, signature in run.items():
            seen.setdefault(nodeid, set()).add(signature)
    return sorted(nodeid for nodeid, found in seen.items() if len(found) > 1)


def ddmin(candidates: Sequence[str], fails: Callable[[list[str]], bool]) -> list[str]:
    """A 1-minimal subset of ``candidates`` (order kept) for which ``fails`` holds, given
    that it holds for all of them: removing any one element of the result makes it
    pass. Zeller and Hildebrandt's ddmin: try each of ``n`` chunks, then each
    complement, doubling ``n`` when neither fails."""
    current = list(candidates)
    n = 2
    while len(current) >= 2:
        size = -(-len(current) // n)  # ceil
        chunks = [current[i : i + size] for i in range(0, len(current), size)]
        reduced = False
        for chunk in chunks:
            if fails(chunk):
                current, n, reduced = chunk, 2, True
                break
        if not reduced:
            for i in range(len(chunks)):
                complement = [t for j, c in enumerate(chunks) if j != i for t in c]
                if fails(complement):
                    current, n, reduced = complement, max(n - 1, 2), True
                    break
        if not reduced:
            if n >= len(current):
                break
            n = min(2 * n, len(current))
    return current


def concurrent_suspects(
    victim: str, plans: Sequence[Mapping[str, Sequence[str]]]
) -> list[str]:
    """The tests that ran on another worker than ``victim`` in every one of ``plans``
    (each: worker name to the tests it ran): the only tests that can explain, on their
    own, a change that its own worker's predecessors do not."""
    suspects: set[str] | None = None
    for plan in plans:
        others = {t for tests in plan.values() if victim not in tests for t in tests}
        suspects = others if suspects is None else suspects & others
    return sorted(suspects or ())


@dataclasses.dataclass(frozen=True)
class Finding:
    """One test that depends on the plan: how, with which plan seed, and the witnesses."""

    victim: str
    kind: str  # "same-worker" or "concurrent"
    seed: int  # the order seed of the first plan that changed it
    worker: str  # its worker in that plan
    reference: Signature  # alone
    changed: Signature  # in that plan
    predecessors: tuple[str, ...] = ()  # same-worker: a minimal set, in order
    suspects: tuple[str, ...] = ()  # concurrent: on another worker in every changing plan
    concurrent: tuple[str, ...] = ()  # concurrent: the other workers' tests in that plan
    plan_file: str = ""

    def sentence(self) -> str:
        """The finding in one sentence."""
        how = _describe(self.reference, self.changed)
        if self.kind == "same-worker":
            before = ", ".join(self.predecessors)
            return f"{self.victim} {how} when {before} ran before it on the same worker"
        if not self.concurrent:
            return (
                f"{self.victim} {how} in some plans, but its predecessors do not reproduce "
                "it: it is flaky or depends on time"
            )
        return (
            f"{self.victim} {how} depending on what ran concurrently on another worker "
            "(its own worker's predecessors do not reproduce it)"
        )

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["reference"] = _signature_dict(self.reference)
        data["changed"] = _signature_dict(self.changed)
        data["sentence"] = self.sentence()
        return data


def _signature_dict(signature: Signature) -> dict[str, Any]:
    outcome, checkpoints = signature
    return {"outcome": outcome, "checkpoints": {name: sha for name, sha in checkpoints}}


def _describe(reference: Signature, changed: Signature) -> str:
    if reference[0] != changed[0]:
        return f"{changed[0]} (alone: {reference[0]})"
    names = sorted({n for n, _ in reference[1]} ^ {n for n, _ in changed[1]})
    names += sorted(n for n, s in set(reference[1]) - set(changed[1]) if n not in names)
    return f"records other digests ({', '.join(names) or 'checkpoints'})"
