"""The planner's flat per-task cost (issue 17's scaling target) keeps its plans: the
numpy placement against the plain one it replaced, the short sort against the full key,
the plan's fresh strings, the cost model's digest hashed in chunks."""

from __future__ import annotations

import hashlib
import heapq
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_rtgov.core import schedule_deal
from pytest_rtgov.core.canonical import canonical_json
from pytest_rtgov.core.schedule import cost_model_digest, order_key, plan_schedule

NODEIDS = st.lists(
    st.text(alphabet="ab_:/.[]01\n", min_size=1, max_size=8), min_size=1, max_size=60, unique=True
)
COSTS = st.sampled_from([0.0, 0.5, 1.0, 2.0, 7.25])


def _reference(seed: int, nodeids: list[str], workers: int, policy: str,
               costs: dict[str, float]) -> list[list[str]]:  # fmt: skip
    """The planner before the change, in plain Python: sorted by the whole key."""
    key = {nodeid: order_key(seed, nodeid) for nodeid in nodeids}
    if policy == "hash":
        lists: list[list[str]] = [[] for _ in range(workers)]
        for nodeid in sorted(nodeids, key=key.__getitem__):
            lists[int.from_bytes(key[nodeid], "big") % workers].append(nodeid)
        return lists
    known = [costs[n] for n in nodeids if n in costs]
    fallback = statistics.median(known) if known else 0.0
    filled = {n: costs.get(n, fallback) for n in nodeids}
    lists = [[] for _ in range(workers)]
    heap = [(0.0, 0, index) for index in range(workers)]
    for nodeid in sorted(nodeids, key=lambda n: (-filled[n], key[n])):
        load, count, index = heapq.heappop(heap)
        lists[index].append(nodeid)
        heapq.heappush(heap, (load + filled[nodeid], count + 1, index))
    return lists


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**40), NODEIDS, st.integers(1, 7), st.sampled_from(["hash", "lpt"]),
       st.data())  # fmt: skip
def test_the_plans_are_the_reference_ones(
    seed: int, nodeids: list[str], workers: int, policy: str, data: st.DataObject
) -> None:
    workers = min(workers, len(nodeids))
    known = data.draw(st.lists(st.sampled_from(nodeids), unique=True))
    costs = {nodeid: data.draw(COSTS) for nodeid in known}
    plan = plan_schedule(seed, nodeids, workers=workers, policy=policy, costs=costs)
    assert [list(tests) for tests in plan.workers] == _reference(
        seed, nodeids, workers, policy, costs
    )


def test_a_tie_on_the_first_word_is_broken_by_the_whole_key() -> None:
    words = np.array([[5, 9, 0, 0], [5, 1, 0, 0], [2, 0, 0, 7], [5, 1, 0, 0]], dtype=np.uint64)
    words[3, 3] = 1  # rows 1 and 3 tie on three words: the fourth decides
    assert schedule_deal._by_key(words).tolist() == [2, 1, 3, 0]
    primary = np.array([0.0, -1.0, 0.0, 0.0])
    assert schedule_deal._by_key(words, primary).tolist() == [1, 2, 3, 0]


def test_the_plan_holds_fresh_equal_strings_laid_out_in_planned_order() -> None:
    nodeids = [f"tests/test_m{i // 10}.py::test_{i}" for i in range(200)]
    plan = plan_schedule(42, nodeids, workers=3, policy="lpt",
                         costs={n: float(i % 7) for i, n in enumerate(nodeids)})  # fmt: skip
    originals = {id(nodeid) for nodeid in nodeids}
    assert sorted(plan.nodeids) == sorted(nodeids)
    assert not originals & {id(nodeid) for nodeid in plan.nodeids}


def test_node_ids_with_newlines_keep_their_objects() -> None:
    nodeids = ["t.py::a[x\ny]", "t.py::b", "t.py::c[\n]"]
    plan = plan_schedule(1, nodeids, workers=2, policy="hash")
    assert sorted(plan.nodeids) == sorted(nodeids)


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 7])
def test_the_cost_model_digest_is_that_of_the_canonical_json(size: int) -> None:
    costs = {f"t.py::test_{i}": i / 3 for i in reversed(range(size))}
    whole = "sha256:" + hashlib.sha256(canonical_json(costs)).hexdigest()
    assert cost_model_digest(costs, chunk=3) == whole == cost_model_digest(costs)


def test_a_non_finite_cost_in_the_cost_model_is_refused() -> None:
    with pytest.raises(ValueError):
        cost_model_digest({"t.py::a": 1.0, "t.py::b": float("inf")}, chunk=1)


def test_a_tie_in_the_shortened_first_word_is_broken_by_the_whole_key() -> None:
    # two costs: one bit of rank, so the first word loses its lowest bit: 2 and 3 tie
    words = np.array([[3, 0, 0, 0], [2, 0, 0, 0], [9, 0, 0, 0]], dtype=np.uint64)
    assert schedule_deal._by_key(words, np.array([1.0, 1.0, 0.0])).tolist() == [2, 1, 0]
    assert schedule_deal._by_key(words, np.array([1.0, 1.0, 1.0])).tolist() == [1, 0, 2]
