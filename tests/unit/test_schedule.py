"""The pure planner: determinism, stability under added tests, policies, re-plans, errors."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_rtgov.core.schedule import (
    Plan,
    PlanFileError,
    ScheduleError,
    cost_model_digest,
    order_key,
    per_test_seed,
    plan_schedule,
    replan,
)

NODEIDS = st.lists(
    st.text(alphabet="abcdefgh_:/.[]0123", min_size=1, max_size=12), min_size=1, max_size=40,
    unique=True,
)
SEEDS = st.integers(min_value=0, max_value=2**70)
POLICY = st.sampled_from(["hash", "lpt", "group"])


def _costs(nodeids: list[str]) -> dict[str, float]:
    return {n: float(i % 5) for i, n in enumerate(sorted(nodeids)) if i % 3}


def _groups(nodeids: list[str]) -> dict[str, str]:
    return {n: f"g{len(n) % 3}" for n in sorted(nodeids) if len(n) % 2}


@settings(max_examples=60, deadline=None)
@given(SEEDS, NODEIDS, st.integers(1, 6), POLICY, st.randoms(use_true_random=False))
def test_same_inputs_in_any_order_same_plan(
    seed: int, nodeids: list[str], workers: int, policy: str, rnd: random.Random
) -> None:
    workers = min(workers, len(nodeids))
    shuffled = list(nodeids)
    rnd.shuffle(shuffled)
    one = plan_schedule(seed, nodeids, workers=workers, policy=policy,
                        groups=_groups(nodeids), costs=_costs(nodeids))
    two = plan_schedule(seed, shuffled, workers=workers, policy=policy,
                        groups=_groups(shuffled), costs=_costs(shuffled))
    assert one.digest == two.digest and one.workers == two.workers
    # every test exactly once
    assert sorted(one.nodeids) == sorted(nodeids)
    assert len(one.workers) == workers
    assert Plan.from_json(one.to_json(), nodeids=shuffled) == one


@settings(max_examples=60, deadline=None)
@given(SEEDS, NODEIDS, st.integers(1, 6), st.text(alphabet="xyz", min_size=13, max_size=15))
def test_adding_a_test_moves_no_other_under_hash(
    seed: int, nodeids: list[str], workers: int, new: str
) -> None:
    workers = min(workers, len(nodeids))
    before = plan_schedule(seed, nodeids, workers=workers)
    after = plan_schedule(seed, [*nodeids, new], workers=workers)
    for old, now in zip(before.workers, after.workers, strict=True):
        assert [n for n in now if n != new] == list(old)


@settings(max_examples=40, deadline=None)
@given(SEEDS, NODEIDS, st.integers(1, 4), POLICY, st.data())
def test_group_policy_keeps_groups_together_and_replan_covers_all(
    seed: int, nodeids: list[str], workers: int, policy: str, data: st.DataObject
) -> None:
    workers = min(workers, len(nodeids))
    groups = _groups(nodeids)
    plan = plan_schedule(seed, nodeids, workers=workers, policy=policy, groups=groups)
    if policy == "group":
        for name in set(groups.values()):
            assert len({plan.worker_of(n) for n, g in groups.items() if g == name}) == 1
    if workers < 2:
        return
    crashed = data.draw(st.integers(0, workers - 1))
    ran = plan.workers[crashed][: data.draw(st.integers(0, len(plan.workers[crashed])))]
    after = replan(plan, set(ran), crashed)
    assert sorted(after.nodeids) == sorted(nodeids)
    assert after.workers[crashed] == tuple(ran)
    assert set(after.replans[0].moved) == set(plan.workers[crashed]) - set(ran)
    assert replan(plan, set(ran), crashed) == after  # deterministic
    assert Plan.from_json(after.to_json()) == after


def test_different_seed_different_plan() -> None:
    nodeids = [f"t.py::test_{i}" for i in range(20)]
    one, two = (plan_schedule(s, nodeids, workers=2) for s in (1, 2))
    assert one.digest != two.digest
    assert one.seeds["t.py::test_3"] != two.seeds["t.py::test_3"]
    assert one.seeds["t.py::test_3"] != one.seeds["t.py::test_4"]


def test_seed_comes_from_numpy_seed_sequence() -> None:
    import hashlib

    import numpy as np

    digest = hashlib.sha256(b"t.py::a").digest()
    key = tuple(int.from_bytes(digest[i : i + 4], "big") for i in range(0, 32, 4))
    expected = np.random.SeedSequence(5, spawn_key=key).generate_state(1, np.uint64)[0]
    assert per_test_seed(5, "t.py::a") == int(expected)
    assert plan_schedule(5, ["t.py::a"], workers=1).seeds == {"t.py::a": int(expected)}


def test_lpt_longest_first_least_loaded() -> None:
    costs = {"a": 5.0, "b": 4.0, "c": 3.0, "d": 3.0, "e": 1.0}
    plan = plan_schedule(0, list(costs), workers=2, policy="lpt", costs=costs)
    assert plan.workers[0][0] == "a" and plan.workers[1][0] == "b"
    loads = [sum(costs[n] for n in tests) for tests in plan.workers]
    assert sorted(loads) == [8.0, 8.0]


def test_lpt_without_costs_deals_round_robin() -> None:
    nodeids = [f"t{i}" for i in range(6)]
    plan = plan_schedule(3, nodeids, workers=3, policy="lpt")
    assert [len(tests) for tests in plan.workers] == [2, 2, 2]
    by_key = sorted(nodeids, key=lambda n: order_key(3, n))
    assert plan.workers[0] == (by_key[0], by_key[3])


def test_unknown_cost_is_the_median_of_known() -> None:
    costs = {"a": 1.0, "b": 3.0, "c": 9.0}
    plan = plan_schedule(0, ["a", "b", "c", "d"], workers=4, policy="lpt", costs=costs)
    assert plan.workers[0] == ("c",)  # then b (3.0) and d (3.0) by key, then a
    assert {plan.workers[1][0], plan.workers[2][0]} == {"b", "d"}
    assert cost_model_digest(costs) == cost_model_digest(dict(reversed(costs.items())))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"policy": "fastest"}, "unknown policy 'fastest': expected one of hash, lpt, group"),
        ({"workers": 0}, "workers 0: expected an integer of at least 1"),
        ({"workers": 3}, "3 workers for 2 tests"),
        ({"seed": -1}, "seed -1: expected a non-negative integer"),
        ({"groups": {"t::z": "g"}}, "group 'g' cannot be satisfied: its test 't::z' is not"),
        ({"policy": "lpt", "costs": {"t::a": float("nan")}},
         "cost of 't::a': expected a finite number of seconds, not nan"),
        ({"policy": "lpt", "costs": {"t::b": -1.0}}, "cost of 't::b': expected a finite"),
    ],
)
def test_bad_inputs_are_named(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"seed": 1, "workers": 1, **kwargs}
    seed = arguments.pop("seed")
    with pytest.raises(ScheduleError, match=message.replace("[", r"\[")):
        plan_schedule(seed, ["t::a", "t::b"], **arguments)  # type: ignore[arg-type]


def test_plan_of_another_collection_names_what_differs() -> None:
    plan = plan_schedule(1, ["t::a", "t::b"], workers=1)
    with pytest.raises(PlanFileError) as raised:
        Plan.from_json(plan.to_json(), source="plan.json", nodeids=["t::a", "t::c"])
    assert str(raised.value) == (
        "plan.json: a plan of another collection: it plans 1 test(s) not collected (t::b); "
        "does not plan 1 collected test(s) (t::c)"
    )


@pytest.mark.parametrize(
    ("edit", "place"),
    [
        (lambda d: d.update(policy="x"), "at policy: expected one of hash, lpt, group"),
        (lambda d: d.update(seed="1"), "at seed: expected a non-negative integer"),
        (lambda d: d["workers"][0].append("t::a"), "at workers[0]: expected 't::a' planned once"),
        (lambda d: d.pop("groups"), "at the top: expected exactly the keys"),
        (lambda d: d.update(schema="rtgov.plan/9"), "at schema"),
    ],
)
def test_malformed_plan_names_the_place(edit: object, place: str) -> None:
    document = json.loads(plan_schedule(1, ["t::a", "t::b"], workers=1).to_json())
    edit(document)  # type: ignore[operator]
    with pytest.raises(PlanFileError, match=f"^plan.json: {place}".replace("[", r"\[")):
        Plan.from_json(json.dumps(document), source="plan.json")


def test_digest_does_not_depend_on_pythonhashseed() -> None:
    code = (
        "from pytest_rtgov.core.schedule import plan_schedule\n"
        "ids = [f'tests/t{i % 7}.py::test_{i}' for i in range(300)]\n"
        "groups = {n: 'g' + n[7] for n in ids[::5]}\n"
        "for policy in ('hash', 'lpt', 'group'):\n"
        "    plan = plan_schedule(42, ids, workers=3, policy=policy, groups=groups,\n"
        "                         costs={n: len(n) / 10 for n in ids[::2]})\n"
        "    print(plan.digest, plan.seeds[ids[0]])\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True,
            env={**os.environ, "PYTHONHASHSEED": hashseed},
        ).stdout
        for hashseed in ("0", "12345")
    }
    assert len(outputs) == 1


def test_first_deviation_names_worker_position_expected_and_ran() -> None:
    from pytest_rtgov.core.schedule_check import first_deviation

    expected = {"gw0": ("a", "b", "c"), "gw1": ("d", "e")}
    assert first_deviation(expected, {"gw0": ["a", "b", "c"], "gw1": ["d", "e"]}) is None
    assert first_deviation(expected, {"gw0": ["a", "b", "c"], "gw1": ["e", "d"]}) == (
        "worker gw1: expected d at position 1, ran e"
    )
    assert first_deviation(expected, {"gw0": ["a", "c", "b"], "gw1": ["e"]}) == (
        "worker gw0: expected b at position 2, ran c"
    )
    assert first_deviation(expected, {"gw0": ["a", "b"], "gw1": ["d", "e"]}) == (
        "worker gw0: expected c at position 3, ran nothing more"
    )
    assert first_deviation(expected, {"gw0": ["a"], "gw1": ["d"]}, stopped=True) is None
    assert first_deviation(expected, {"gw0": ["a", "b", "c", "e"], "gw1": ["d"]}) == (
        "worker gw0: ran e after its 3 planned tests"
    )
    assert first_deviation({"gw0": ("a",)}, {"gw0": ["a"], "gw2": ["b"]}) == (
        "worker gw2: ran b with no planned test"
    )


def test_schedule_leaves_come_from_the_record_and_parse() -> None:
    from pytest_rtgov.core.ledger_records import parse_leaf, schedule_leaves
    from pytest_rtgov.core.schedule_check import schedule_facts

    plan = plan_schedule(9, ["t::a", "t::b", "t::c"], workers=2)
    observed = {"gw0": list(plan.workers[0]), "gw1": list(plan.workers[1])}
    facts = schedule_facts(plan, ("gw0", "gw1"), observed, cost_model=cost_model_digest({}))
    leaves = [parse_leaf(leaf) for leaf in schedule_leaves("r1", facts)]
    assert [leaf["kind"] for leaf in leaves] == ["schedule", "execution", "execution"]
    assert leaves[0]["plan"] == plan.digest and leaves[0]["seed"] == 9
    assert [(leaf["worker"], leaf["sequence"]) for leaf in leaves[1:]] == sorted(observed.items())
    assert schedule_leaves("r1", {}) == []


def test_fit_plan_refuses_other_workers_and_collections() -> None:
    from pytest_rtgov.core.schedule_json import fit_plan

    plan = plan_schedule(1, ["t::a", "t::b"], workers=2)
    fit_plan(plan, ["t::b", "t::a"], 2, source="p.json")
    with pytest.raises(PlanFileError, match=r"p\.json: a plan for 2 worker"):
        fit_plan(plan, ["t::a", "t::b"], 1, source="p.json")
    with pytest.raises(PlanFileError, match="does not plan 1 collected test"):
        fit_plan(plan, ["t::a", "t::b", "t::c"], 2, source="p.json")


def _shard(run_id: str, seed: int, nodeids: list[str], **changes: object) -> tuple:
    from pytest_rtgov.core.schedule_check import schedule_facts

    plan = plan_schedule(seed, nodeids, workers=1)
    facts = schedule_facts(plan, ("main",), {"main": list(plan.workers[0])},
                           cost_model=cost_model_digest({}))  # fmt: skip
    return (run_id, {**facts, **changes}, nodeids)


def test_shards_must_follow_one_schedule() -> None:
    from pytest_rtgov.core.schedule_check import shard_schedule_problem

    one, two = _shard("r1", 4, ["t::a", "t::b"]), _shard("r2", 4, ["t::c", "t::d"])
    assert shard_schedule_problem([one, two]) is None
    assert shard_schedule_problem([("r1", {}, ["t::a"]), ("r2", {}, ["t::c"])]) is None
    assert shard_schedule_problem([one, ("r2", {}, ["t::c"])]) == (
        "shard r2 ran without --rtgov-schedule, shard r1 with it"
    )
    assert shard_schedule_problem([one, _shard("r2", 5, ["t::c"])]) == (
        "shards r1 and r2 ran different schedules (seed 4 hash, seed 5 hash)"
    )
    deviated = _shard("r2", 4, ["t::c"], deviation="worker main: expected x at position 1, ran y")
    assert shard_schedule_problem([one, deviated]) == (
        "shard r2 did not follow its schedule: worker main: expected x at position 1, ran y"
    )
    backwards = _shard("r2", 4, ["t::c", "t::d"])
    backwards[1]["observed"] = {"main": list(reversed(backwards[1]["observed"]["main"]))}
    assert "shard r2 did not follow its schedule: worker main: expected" in str(
        shard_schedule_problem([one, backwards])
    )
    other_plan = _shard("r2", 4, ["t::c", "t::d"], plan="sha256:" + "0" * 64)
    assert "its plan sha256:000" in str(shard_schedule_problem([one, other_plan]))
    unseen = ("r2", two[1], ["t::c", "t::d", "t::e"])
    assert shard_schedule_problem([one, unseen]) == (
        "shard r2: t::e is recorded but no worker was seen to start it"
    )
