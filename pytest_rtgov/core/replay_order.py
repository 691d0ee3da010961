"""The order a replay runs a record's tests in: the order they ran.

A record lists its tests in canonical (node id) order, whatever order they ran in. A
session in one process (``-n 0``) ran them in pytest's collection order, and that order
matters to a replay: a session fixture is set up by its first requester, and a fault
shows first where it is first observed. Each test entry holds ``seq``: the place its
start took in its process's causal order, which its checkpoints share (a test takes one
``seq`` as it starts, each checkpoint one as it is captured). Tests are replayed by
``seq``; a test without one (a record older than ``seq``, or a test that never reached
its setup) keeps its place after the test before it in node id order. Under xdist
(more than one worker) there was no single order: node id order is used.

>>> from pytest_rtgov.core.records import RunRecord, TestEntry
>>> tests = (TestEntry("a.py::t_b", "passed", "main", seq=5),
...          TestEntry("a.py::t_c", "passed", "main"),
...          TestEntry("a.py::t_z", "passed", "main", seq=1))
>>> record = RunRecord("r", "", "", "record", (), "off", "numpy", ("main",), {}, tests, ())
>>> execution_order(record)
['a.py::t_z', 'a.py::t_b', 'a.py::t_c']
"""

from __future__ import annotations

from pytest_rtgov.core.records import RunRecord

__all__ = ["execution_order"]


def execution_order(record: RunRecord) -> list[str]:
    """The record's test node ids in the order they ran (see the module's docstring)."""
    nodeids = [t.nodeid for t in record.tests]
    if len({t.worker for t in record.tests}) > 1:
        return nodeids
    keys: list[tuple[int, int, int]] = []
    anchor = -1
    for position, test in enumerate(record.tests):
        own = test.seq is not None
        anchor = test.seq if test.seq is not None else anchor
        keys.append((anchor, 0 if own else 1, position))
    order = sorted(range(len(nodeids)), key=lambda i: keys[i])
    return [nodeids[i] for i in order]
