"""The planned scheduler under pytest-xdist: each worker gets its planned list up front.

Plugged in through xdist's ``pytest_xdist_make_scheduler`` hook (no fork of xdist). It
is xdist's :class:`~xdist.scheduler.LoadScheduling` for what every scheduler shares
(nodes, the collections and their check that every worker collected the same tests)
with the distribution replaced:

- when every worker has collected, the plan is made over the collection for as many
  workers as ``-n`` started (``gw0`` is the plan's worker 0, ...), and each worker is sent
  its whole list, in planned order, with one ``send_runtest_some``;
- a worker keeps its last test until it is told to shut down (xdist runs a test once it
  knows the next one), so no worker is shut down before every worker is down to its
  last test: until then a crash can still move tests to it;
- a worker that crashes with tests pending (``remove_node``): the test it was running
  is xdist's crash item; the rest are re-planned over the live workers
  (:func:`pytest_rtgov.core.schedule.replan`, recorded in the plan) and sent to them;
- a worker xdist starts to replace a crashed one gets nothing and is shut down.

A plan that cannot be made (more workers than tests, a group that cannot be
satisfied) runs nothing: every worker is shut down and the session exits 4 naming it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pytest
from xdist.scheduler import LoadScheduling

from pytest_rtgov.core.schedule import PlanFileError, ScheduleError, replan
from pytest_rtgov.plugin.schedule import ScheduleState, make_plan

__all__ = ["PlannedScheduling", "SchedulerHook"]

_GROUP_SUFFIX = re.compile(r"@([^@/:\[\]]+)$")  # xdist's --dist loadgroup node id suffix


class SchedulerHook:
    """Registered on the controller when ``--rtgov-schedule`` runs under xdist."""

    def __init__(self, state: ScheduleState) -> None:
        self.state = state

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> PlannedScheduling:
        return PlannedScheduling(config, log, self.state)


def _groups(collection: Sequence[str]) -> dict[str, str]:
    """Groups from node ids alone (the controller collects nothing): xdist's ``@name``
    suffix of an ``xdist_group`` under ``--dist loadgroup``, else the module."""
    groups = {}
    for nodeid in collection:
        match = _GROUP_SUFFIX.search(nodeid)
        groups[nodeid] = f"xdist_group:{match[1]}" if match else nodeid.split("::")[0]
    return groups


def _index(node: Any) -> int:
    match = re.fullmatch(r"gw(\d+)", str(node.gateway.id))
    return int(match[1]) if match else 1 << 30


class PlannedScheduling(LoadScheduling):
    """Sends each worker its planned list up front; re-plans a crashed worker's rest."""

    collection: list[str] | None  # LoadScheduling's: the one collection, once checked

    def __init__(self, config: pytest.Config, log: Any, state: ScheduleState) -> None:
        super().__init__(config, log)
        self.state = state
        self.planned: list[Any] = []  # the plan's workers' nodes, by plan index
        self.position: dict[str, int] = {}

    @property
    def tests_finished(self) -> bool:
        # LoadScheduling's rule without its queue: every worker down to its last test (a
        # worker runs a test once it knows the next one, or is told to shut down). Also
        # true after collections that differ: nothing was sent, the session ends.
        if not self.collection_is_completed:
            return False
        return all(len(pending) < 2 for pending in self.node2pending.values())

    def schedule(self) -> None:
        if self.collection is not None:  # a late (replacement) node: nothing for it
            for node in self.nodes:
                self.check_schedule(node)
            return
        if not self._check_nodes_have_same_collection():
            self.log("**Different tests collected, aborting run**")
            return
        self.collection = next(iter(self.node2collection.values()))
        if not self.collection:
            return
        self.position = {nodeid: i for i, nodeid in enumerate(self.collection)}
        self.planned = sorted(self.nodes, key=_index)
        state, collection = self.state, self.collection
        try:
            state.plan = make_plan(
                state, collection, len(self.planned), lambda: _groups(collection)
            )
        except (ScheduleError, PlanFileError) as exc:
            option = "--rtgov-schedule-plan" if state.given else "--rtgov-schedule"
            state.error = f"{option}: {exc}"
            self.collection = []
            for node in self.nodes:
                node.shutdown()
            return
        state.names = tuple(str(node.gateway.id) for node in self.planned)
        for node, tests in zip(self.planned, state.plan.workers, strict=True):
            self._send(node, tests)

    def _send(self, node: Any, tests: Sequence[str]) -> None:
        indices = [self.position[nodeid] for nodeid in tests]
        if indices and not node.shutting_down and node in self.node2pending:
            self.node2pending[node].extend(indices)
            node.send_runtest_some(indices)

    def check_schedule(self, node: Any, duration: float = 0) -> None:
        if self.collection is not None and node not in self.planned and not node.shutting_down:
            node.shutdown()  # a replacement worker: the plan has nothing for it

    def mark_test_pending(self, item: str) -> None:
        # A test a plugin asks to run again: on the first live planned worker.
        for node in self.planned:
            if node in self.node2pending and not node.shutting_down:
                self._send(node, [item])
                return

    def remove_node(self, node: Any) -> str | None:
        pending = self.node2pending.pop(node)
        if not pending:
            return None
        assert self.collection is not None
        crashitem = self.collection[pending[0]]
        plan = self.state.plan
        if plan is not None and node in self.planned:
            crashed = self.planned.index(node)
            left = {self.collection[i] for i in pending[1:]}
            done = {nodeid for nodeid in plan.workers[crashed] if nodeid not in left}
            try:
                after = replan(plan, done, crashed)
            except ScheduleError as exc:  # no live worker left: xdist reports the rest
                self.log(f"re-plan impossible: {exc}")
                return crashitem
            self.state.plan = after
            moved = after.replans[-1].moved
            for index, target in enumerate(self.planned):
                self._send(target, [n for n, to in moved.items() if to == index])
        return crashitem
