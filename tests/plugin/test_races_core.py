"""core/races.py: the permuted plans, signatures, ddmin and the concurrent suspects."""

from __future__ import annotations

from types import SimpleNamespace

from pytest_rtgov.core.races import (
    Finding,
    concurrent_suspects,
    ddmin,
    dependent_tests,
    permuted_plan,
    signatures,
)
from pytest_rtgov.core.schedule import plan_schedule

IDS = [f"t.py::test_{i}" for i in range(12)]


def test_permuted_plans_vary_order_and_co_location_but_not_the_seeds():
    plans = [permuted_plan(42, IDS, workers=2, index=i) for i in range(5)]
    assert plans[0] == plan_schedule(42, IDS, workers=2)
    assert len({p.workers for p in plans}) == 5  # every plan another schedule
    assert len({frozenset(p.workers[0]) for p in plans}) > 1  # other tests share a worker
    assert all(p.seed == 42 and dict(p.seeds) == dict(plans[0].seeds) for p in plans)
    for i, plan in enumerate(plans):  # the placement of --rtgov-schedule 42+i
        assert plan.workers == plan_schedule(42 + i, IDS, workers=2).workers
        assert sorted(plan.nodeids) == sorted(IDS)


def test_ddmin_finds_a_minimal_set_and_keeps_the_order():
    calls = []

    def needs_3_and_8(subset):
        calls.append(tuple(subset))
        return "t.py::test_3" in subset and "t.py::test_8" in subset

    assert ddmin(IDS, needs_3_and_8) == ["t.py::test_3", "t.py::test_8"]
    assert ddmin(IDS, lambda s: "t.py::test_11" in s) == ["t.py::test_11"]
    assert ddmin(["t.py::a"], lambda s: True) == ["t.py::a"]
    assert len(set(calls)) <= 21  # distinct subsets: the sessions the bisection caches


def test_dependent_tests_are_those_whose_signature_differs():
    same, other = ("passed", (("x", "sha256:1"),)), ("passed", (("x", "sha256:2"),))
    runs = [{"a": same, "b": ("passed", ())}, {"a": other, "b": ("passed", ())},
            {"b": ("failed", ())}]  # fmt: skip
    assert dependent_tests(runs) == ["a", "b"]
    assert dependent_tests(runs[:1] * 3) == []


def test_signatures_take_outcome_and_checkpoint_digests():
    checkpoint = SimpleNamespace(name="out", sha256="sha256:ab")
    record = SimpleNamespace(tests=[SimpleNamespace(nodeid="a", outcome="passed",
                                                    checkpoints=(checkpoint,))])  # fmt: skip
    assert signatures(record) == {"a": ("passed", (("out", "sha256:ab"),))}


def test_concurrent_suspects_are_on_another_worker_in_every_changing_plan():
    plans = [{"gw0": ["v", "a"], "gw1": ["w", "b", "c"]},
             {"gw0": ["b", "v"], "gw1": ["w", "a"]}]  # fmt: skip
    assert concurrent_suspects("v", plans) == ["w"]
    assert concurrent_suspects("v", []) == []


def test_finding_sentences():
    alone, failed = ("passed", ()), ("failed", ())
    pair = Finding(victim="t::b", kind="same-worker", seed=3, worker="gw0", reference=alone,
                   changed=failed, predecessors=("t::a",))  # fmt: skip
    assert pair.sentence() == (
        "t::b failed (alone: passed) when t::a ran before it on the same worker"
    )
    digest = Finding(victim="t::b", kind="concurrent", seed=3, worker="gw0",
                     reference=("passed", (("x", "sha256:1"),)),
                     changed=("passed", (("x", "sha256:2"),)), concurrent=("t::c",))  # fmt: skip
    assert digest.sentence().startswith("t::b records other digests (x) depending on what ran")
    assert pair.to_dict()["changed"] == {"outcome": "failed", "checkpoints": {}}
