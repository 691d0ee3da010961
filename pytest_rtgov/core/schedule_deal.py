"""The planner's dealing: the order keys sorted in numpy, LPT's placement, each worker's list.

Pure; called by :func:`~pytest_rtgov.core.schedule.plan_schedule` (whose docstring has
the policies) on checked inputs. Its cost per test stays about flat from 10,000 to
100,000 tests (issue 17's scaling target, ``benches/scheduler.py``): the order keys are
sorted as one uint64 array, costs are read once into a float64 array, LPT's heap sees
floats only, and the node ids, scattered in memory once in key order, are read once and
copied into new strings laid out in planned order (:func:`_fresh`).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from hashlib import sha256
from itertools import repeat
from operator import itemgetter
from typing import Any

from pytest_rtgov.core.schedule import Policy, ScheduleError, order_key

__all__ = ["deal"]


def _cost_array(nodeids: Sequence[str], costs: Mapping[str, float]) -> Any:
    """Each test's cost in ``nodeids`` order (float64): its own, else the median of the
    known ones (0 when none is known); one lookup per test, no dict."""
    import numpy as np

    count = len(nodeids)
    values = np.fromiter(map(costs.get, nodeids, repeat(math.nan, count)), np.float64, count)
    unknown = np.isnan(values)
    if unknown.any():  # NaN is the "no cost" mark: a NaN given as a cost is bad
        unknown[[i for i in np.flatnonzero(unknown).tolist() if nodeids[i] in costs]] = False
    bad = ~unknown & ~((values >= 0) & (values < math.inf))
    if bad.any():
        name = nodeids[int(np.argmax(bad))]
        raise ScheduleError(f"cost of {name!r}: expected a finite number of seconds, not "
                            f"{costs[name]!r}")  # fmt: skip
    if unknown.any():
        known = values[~unknown]  # numpy's median: the middle one, or the two's mean
        values[unknown] = float(np.median(known)) if len(known) else 0.0
    return values


def _place(units: Iterable[tuple[float, Sequence[str]]], workers: int) -> list[list[str]]:
    """LPT over ``units`` (cost, tests), already longest first with ties by key: each to
    the least-loaded worker (then the one with fewer tests, then the lowest index)."""
    lists: list[list[str]] = [[] for _ in range(workers)]
    heap = [(0.0, 0, index) for index in range(workers)]
    for cost, tests in units:
        load, count, index = heap[0]  # heapreplace: one sift per unit, the same choices
        heapq.heapreplace(heap, (load + cost, count + len(tests), index))
        lists[index].extend(tests)
    return lists


def _place_each(costs: list[float], workers: int) -> list[int]:
    """:func:`_place` for one test per unit, on costs alone: each unit's worker index."""
    heap = [(0.0, 0, index) for index in range(workers)]
    where: list[int] = []
    append, replace = where.append, heapq.heapreplace
    for cost in costs:
        load, count, index = heap[0]
        replace(heap, (load + cost, count + 1, index))
        append(index)
    return where


def _key_words(seed: int, nodeids: Sequence[str]) -> Any:
    """The order keys as an (n, 4) uint64 array of their big-endian 64-bit words: sorting
    and reducing them in numpy keeps the cost per test flat from 10,000 to 100,000."""
    import numpy as np

    prefix = f"{seed}\0".encode()
    raw = b"".join([sha256(prefix + nodeid.encode()).digest() for nodeid in nodeids])
    return np.frombuffer(raw, dtype=">u8").reshape(len(nodeids), 4).astype(np.uint64)


def _by_key(words: Any, *first: Any) -> Any:
    """Row indices (an array) sorted by ``first`` (arrays, the first one primary), then
    the key. With at most one ``first``: one sort of a uint64, the rank of ``first`` in
    its ``b`` high bits and the key's first word's high ``64 - b`` below; only where two
    neighbours tie on it (about 2**-48 a pair of one rank at b = 16) the full key's stable
    sort decides."""
    import numpy as np

    if len(first) <= 1:
        combined = words[:, 0]
        if first:
            distinct, rank = np.unique(first[0], return_inverse=True)
            bits = (len(distinct) - 1).bit_length()
            if bits:
                high = rank.astype(np.uint64) << np.uint64(64 - bits)
                combined = high | (combined >> np.uint64(bits))
        order = np.argsort(combined)
        ranked = combined[order]
        if not (ranked[1:] == ranked[:-1]).any():
            return order
    return np.lexsort((words[:, 3], words[:, 2], words[:, 1], words[:, 0], *reversed(first)))


def _key_mod(words: Any, modulus: int) -> Any:
    """Each 256-bit key mod ``modulus`` (< 2**32: no product overflows 64 bits)."""
    import numpy as np

    base, mod = np.uint64((1 << 64) % modulus), np.uint64(modulus)
    rest = np.zeros(len(words), dtype=np.uint64)
    for column in range(4):
        rest = (rest * base + words[:, column] % mod) % mod
    return rest


def _fresh(nodeids: Sequence[str], indices: list[int], chunk: int = 2048) -> list[str]:
    """``nodeids[i]`` for ``i`` in ``indices``, as new strings laid out one after another
    in that order. The plan is in key order, a hash order, over strings scattered in
    memory; each is read here once, a chunk at a time (picked, joined and released while
    still in the CPU's cache), so everything after (the plan's JSON, the observed
    sequences, the leaves) reads contiguous ones. Node ids with a newline are kept."""
    fresh: list[str] = []
    for start in range(0, len(indices), chunk):
        part = indices[start : start + chunk]
        picked = [nodeids[part[0]]] if len(part) == 1 else list(itemgetter(*part)(nodeids))
        made = "\n".join(picked).split("\n")
        fresh += made if len(made) == len(picked) else picked
    return fresh


def _lists(nodeids: Sequence[str], order: Any, where: Any, workers: int) -> list[list[str]]:
    """Each worker's tests (:func:`_fresh`): ``order`` (indices into ``nodeids``, in
    planned order) split by ``where`` (the worker of each position)."""
    import numpy as np

    where = np.asarray(where, dtype=np.intp)
    fresh = _fresh(nodeids, np.asarray(order)[np.argsort(where, kind="stable")].tolist())
    bounds = np.cumsum(np.bincount(where, minlength=workers)).tolist()
    return [fresh[lo:hi] for lo, hi in zip([0, *bounds], bounds, strict=False)]


def _groups_of(nodeids: Sequence[str], groups: Mapping[str, str]) -> dict[str, list[str]]:
    """Each group's tests, in ``nodeids`` order; an ungrouped test is a group alone."""
    members: dict[str, list[str]] = {}
    for nodeid in nodeids:
        members.setdefault(groups.get(nodeid, "\0" + nodeid), []).append(nodeid)
    return members


def deal(
    seed: int,
    nodeids: Sequence[str],
    workers: int,
    policy: Policy,
    groups: Mapping[str, str],
    costs: Mapping[str, float],
) -> list[list[str]]:
    """Each worker's ordered node ids under ``policy`` (see ``core.schedule``)."""
    words = _key_words(seed, nodeids)
    if policy == "hash":
        order = _by_key(words)
        return _lists(nodeids, order, _key_mod(words, workers)[order], workers)
    values = _cost_array(nodeids, costs)
    if policy == "lpt":
        order = _by_key(words, -values)
        return _lists(nodeids, order, _place_each(values[order].tolist(), workers), workers)
    filled = dict(zip(nodeids, values.tolist(), strict=True))
    rank = {nodeids[i]: position for position, i in enumerate(_by_key(words).tolist())}
    units = []
    for name, tests in _groups_of(nodeids, groups).items():
        alone = name.startswith("\0")  # an ungrouped test: its own key
        key = order_key(seed, tests[0] if alone else "group\0" + name)
        units.append((key, sum(filled[n] for n in tests), sorted(tests, key=rank.__getitem__)))
    units.sort(key=lambda unit: (-unit[1], unit[0]))
    return _place(((cost, tests) for _key, cost, tests in units), workers)
