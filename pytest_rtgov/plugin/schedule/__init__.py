"""``--rtgov-schedule SEED``: the session runs a planned schedule, seeded per test, and
checks that it ran as planned.

Registered from ``pytest_rtgov.plugin.pytest_configure`` only when the option (or the
``rtgov_schedule`` ini key) is given; it works with or without ``--rtgov``. Without
pytest-xdist the plan's one worker orders ``items`` (:func:`reorder`, called from the
entry point's ``trylast`` ``pytest_collection_modifyitems``, so that a plugin reordering
after it is caught); under ``-n N`` the scheduler of :mod:`.xdist` sends each worker its
planned list up front. Every process seeds ``random`` and numpy's legacy global state
with the test's plan seed before its setup; the ``rtgov_rng`` fixture hands the test a
``numpy.random.Generator`` of the same seed. The controller notes which test each worker
started, in order, and at the session end names the first deviation from the plan
(exit 6 where the session had passed). With ``--rtgov`` the record keeps the schedule
(``RunRecord.schedule``), the plan's canonical JSON goes to the object store and the
ledger gets the ``schedule`` and ``execution`` leaves ([schedule.md](docs/schedule.md)).
"""

from __future__ import annotations

import dataclasses
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_rtgov.core.constants import ExitCode
from pytest_rtgov.core.schedule import (
    POLICIES,
    Plan,
    PlanFileError,
    ScheduleError,
    cost_model_digest,
    per_test_seed,
    plan_schedule,
)
from pytest_rtgov.core.schedule_json import fit_plan

__all__ = [
    "PLUGIN_NAME",
    "ScheduleState",
    "make_plan",
    "register",
    "reorder",
    "rng_for",
    "state_of",
]

PLUGIN_NAME = "rtgov-schedule"
_STATE_KEY = pytest.StashKey["ScheduleState"]()
_SEED_KEY = pytest.StashKey[int]()


@dataclass
class ScheduleState:
    """The session's schedule: the options, then the plan and what each worker ran."""

    seed: int
    policy: str
    costs: dict[str, float] = field(default_factory=dict)
    cost_model: str = ""
    plan: Plan | None = None
    names: tuple[str, ...] = ()  # the plan's workers' process names
    observed: dict[str, list[str]] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    error: str | None = None  # the plan could not be made (exit 4)
    given: Plan | None = None  # --rtgov-schedule-plan's plan, run as it is
    source: str = ""  # its file


def state_of(config: pytest.Config) -> ScheduleState | None:
    """The session's :class:`ScheduleState`, or None when nothing is scheduled."""
    return config.stash.get(_STATE_KEY, None)


def _parse_seed(text: str) -> int:
    try:
        seed = int(str(text).strip(), 10)
    except ValueError:
        seed = -1
    if seed < 0:
        raise pytest.UsageError(
            f"pytest-rtgov: --rtgov-schedule: expected a non-negative integer seed, not {text!r}"
        )
    return seed


def _read_plan(config: pytest.Config, path: str) -> Plan:
    """``--rtgov-schedule-plan``'s plan; a file that is not one is a usage error naming it."""
    from pathlib import Path

    file = Path(config.invocation_params.dir) / path
    try:
        return Plan.from_json(file.read_bytes(), source=str(file))
    except OSError as exc:
        what = exc.strerror or str(exc)
        raise pytest.UsageError(f"pytest-rtgov: --rtgov-schedule-plan: {file}: {what}") from None
    except PlanFileError as exc:
        raise pytest.UsageError(f"pytest-rtgov: --rtgov-schedule-plan: {exc}") from None


def register(config: pytest.Config) -> None:
    """Check the options (usage errors: exit 4) and register the schedule's hooks."""
    path = config.getoption("rtgov_schedule_plan")
    given = _read_plan(config, str(path)) if path is not None else None
    text = config.getoption("rtgov_schedule")
    seed = _parse_seed(text) if text is not None else given.seed if given else 0
    if given is not None and seed != given.seed:
        raise pytest.UsageError(
            f"pytest-rtgov: --rtgov-schedule {seed}: --rtgov-schedule-plan {path} was planned "
            f"from seed {given.seed}"
        )
    policy = given.policy if given else str(config.getoption("rtgov_schedule_policy") or "hash")
    if policy not in POLICIES:  # an ini value; the option's choices refuse it earlier
        raise pytest.UsageError(
            f"pytest-rtgov: --rtgov-schedule-policy: unknown policy {policy!r}: "
            f"expected one of {', '.join(POLICIES)}"
        )
    if config.getoption("dist", "no") == "each":
        raise pytest.UsageError(
            "pytest-rtgov: --rtgov-schedule plans each test on one worker: not with --dist each"
        )
    state = config.stash[_STATE_KEY] = ScheduleState(seed=seed, policy=policy, given=given)
    state.source = str(path)
    is_worker = hasattr(config, "workerinput")
    if policy != "hash" and not is_worker and given is None:
        from pytest_rtgov.plugin.schedule.costs import history_costs

        state.costs = history_costs(config)
    state.cost_model = cost_model_digest(state.costs)
    config.pluginmanager.register(SchedulePlugin(config, state), PLUGIN_NAME)
    if not is_worker and config.getoption("dist", "no") != "no":
        from pytest_rtgov.plugin.schedule.xdist import SchedulerHook

        config.pluginmanager.register(SchedulerHook(state), PLUGIN_NAME + "-xdist")


def groups_of(items: list[pytest.Item]) -> dict[str, str]:
    """The ``group`` policy's groups: an ``xdist_group`` mark's name, else the module."""
    groups = {}
    for item in items:
        mark = item.get_closest_marker("xdist_group")
        name = (mark.args[0] if mark.args else mark.kwargs.get("name")) if mark else None
        groups[item.nodeid] = f"xdist_group:{name}" if name else item.nodeid.split("::")[0]
    return groups


def reorder(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without xdist: ``items`` in the order of the plan's one worker."""
    state = state_of(config)
    # xdist workers see dist "no": the controller's scheduler orders them by index
    distributed = config.getoption("dist", "no") != "no" or hasattr(config, "workerinput")
    if state is None or not items or distributed:
        return
    try:
        nodeids = [item.nodeid for item in items]
        state.plan = make_plan(state, nodeids, 1, lambda: groups_of(items))
    except PlanFileError as exc:
        raise pytest.UsageError(f"pytest-rtgov: --rtgov-schedule-plan: {exc}") from None
    except ScheduleError as exc:
        raise pytest.UsageError(f"pytest-rtgov: --rtgov-schedule: {exc}") from None
    state.names = ("main",)
    position = {nodeid: i for i, nodeid in enumerate(state.plan.workers[0])}
    items.sort(key=lambda item: position[item.nodeid])


def make_plan(
    state: ScheduleState,
    nodeids: list[str],
    workers: int,
    groups: Callable[[], dict[str, str]],
) -> Plan:
    """The session's plan: ``--rtgov-schedule-plan``'s when it fits this collection and
    these workers (else :class:`PlanFileError`), else planned now (else
    :class:`ScheduleError`). ``groups`` is asked only by the ``group`` policy."""
    if state.given is not None:
        fit_plan(state.given, nodeids, workers, source=state.source)
        return state.given
    return plan_schedule(
        state.seed, nodeids, workers=workers, policy=state.policy,
        groups=groups() if state.policy == "group" else {}, costs=state.costs,
    )  # fmt: skip


def rng_for(request: pytest.FixtureRequest) -> Any:
    """The ``rtgov_rng`` fixture's generator: the test's plan seed (the schedule's seed,
    else 0, and the node id: :func:`~pytest_rtgov.core.schedule.per_test_seed`)."""
    import numpy as np

    seed = request.node.stash.get(_SEED_KEY, None)
    if seed is None:
        state = state_of(request.config)
        seed = per_test_seed(state.seed if state else 0, request.node.nodeid)
    return np.random.default_rng(seed)


class SchedulePlugin:
    """Per test: the seeds; on the controller: what each worker started, and the check."""

    def __init__(self, config: pytest.Config, state: ScheduleState) -> None:
        self.config, self.state = config, state

    def pytest_report_header(self, config: pytest.Config) -> str:
        state = self.state
        if state.given is not None:
            return f"rtgov schedule: the plan {state.source} (seed {state.seed}, {state.policy})"
        return (
            f"rtgov schedule: seed {state.seed}, policy {state.policy} (again: "
            f"--rtgov-schedule {state.seed} --rtgov-schedule-policy {state.policy})"
        )

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        import numpy as np

        seed = item.stash[_SEED_KEY] = per_test_seed(self.state.seed, item.nodeid)
        random.seed(seed)
        np.random.seed([seed & 0xFFFFFFFF, seed >> 32])

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if hasattr(self.config, "workerinput") or report.nodeid in self.state.seen:
            return
        self.state.seen.add(report.nodeid)
        node = getattr(report, "node", None)  # xdist's WorkerController, on the controller
        worker = node.gateway.id if node is not None else "main"
        self.state.observed.setdefault(worker, []).append(report.nodeid)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if hasattr(self.config, "workerinput") or _measuring(self.config):
            return  # with --rtgov the session end's pipeline decides (plugin/finish.py)
        status, lines = problems(self.config, int(exitstatus), [])
        for line in lines:
            sys.stderr.write(f"pytest-rtgov: {line}\n")
        session.exitstatus = status


def _measuring(config: pytest.Config) -> bool:
    return bool(config.getoption("rtgov") or config.getoption("rtgov_gate"))


def deviation(config: pytest.Config, status: int = 0) -> str | None:
    """The first deviation of the session's observed sequences from its plan (a session
    stopped early, by ``-x``, ``--maxfail`` or an interruption, may run a prefix)."""
    from pytest_rtgov.core.schedule_check import expected_sequences, first_deviation

    state = state_of(config)
    if state is None or state.plan is None:
        return None
    stopped = bool(config.getoption("maxfail", 0)) or status == ExitCode.USAGE
    expected = expected_sequences(state.plan, state.names)
    return first_deviation(expected, state.observed, stopped=stopped)


def problems(config: pytest.Config, status: int, lines: list[str]) -> tuple[int, list[str]]:
    """The schedule's findings added to ``lines``: a plan that could not be made (exit
    4), a deviation (exit 6 where the session had passed)."""
    state = state_of(config)
    if state is None:
        return status, lines
    if state.error is not None:
        return int(ExitCode.BAD_INPUT), [*lines, state.error]
    found = deviation(config, status)
    if found is None:
        return status, lines
    if status == ExitCode.OK:
        status = int(ExitCode.GATE_BREACHED)
    return status, [*lines, f"the schedule was not followed: {found}"]


def attach(config: pytest.Config, record: Any, state_dir: Any) -> Any:
    """``record`` with its schedule (``RunRecord.schedule``); the plan's canonical JSON
    kept in the object store under its digest."""
    from pytest_rtgov.core.schedule_check import schedule_facts
    from pytest_rtgov.store.objects import ObjectStore

    state = state_of(config)
    if state is None or state.plan is None:
        return record
    ObjectStore.of_state_dir(state_dir).put(state.plan.to_json())
    facts = schedule_facts(
        state.plan, state.names, state.observed, cost_model=state.cost_model,
        deviation=deviation(config, record.exit_status),
    )  # fmt: skip
    return dataclasses.replace(record, schedule=facts)
