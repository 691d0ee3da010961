"""xdist transport: settings out through ``workerinput``, measurements back.

As pytest-xdist's own ``remote.py`` does: the controller hands each worker the run id
and the measuring settings in ``node.workerinput`` (``pytest_configure_node``); a
worker attaches each phase's :class:`~pytest_rtgov.plugin.samples.Phase` to its test
report (``report.rtgov``, builtins only) before xdist sends it, and what belongs to
the whole process (its calibration) to ``config.workeroutput``, which the controller
reads in ``pytest_testnodedown``.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_rtgov.plugin.capture import Capture
from pytest_rtgov.plugin.determinism import FINDINGS_KEY, WORKER_OUTPUT
from pytest_rtgov.plugin.samples import REPORT_ATTR, Collector
from pytest_rtgov.plugin.settings import Settings

__all__ = ["ControllerTransport", "WorkerTransport"]

CALIBRATION = "rtgov_calibration"


class ControllerTransport:
    """The controller's end; its hooks are optional (they run only with xdist)."""

    __slots__ = ("collector", "settings")  # see Capture: no split __dict__ per plugin

    def __init__(self, settings: Settings, collector: Collector) -> None:
        self.settings = settings
        self.collector = collector

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        settings = self.settings
        node.workerinput["rtgov_run_id"] = settings.run_id
        if settings.ab is not None:
            node.workerinput["rtgov_ab"] = settings.ab
        node.workerinput["rtgov_calibrate"] = settings.calibrate
        if settings.default_rounds is not None:
            node.workerinput["rtgov_default_rounds"] = settings.default_rounds
        if settings.memory_select is not None:
            node.workerinput["rtgov_memory_select"] = settings.memory_select

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        # A worker that crashed sent no workeroutput: its calibration is lost with it.
        output = getattr(node, "workeroutput", None) or {}
        calibration = output.get(CALIBRATION)
        if calibration is not None:
            self.collector.add_calibration(str(node.workerinput["workerid"]), calibration)
        findings = output.get(WORKER_OUTPUT)  # --rtgov-determinism-check's, as builtins
        if findings:
            self.collector.config.stash.setdefault(FINDINGS_KEY, []).extend(findings)


class WorkerTransport:
    """A worker's end: what it measured goes back to the controller."""

    __slots__ = ("capture", "config")  # see Capture: no split __dict__ per plugin

    def __init__(self, config: pytest.Config, capture: Capture) -> None:
        self.config = config
        self.capture = capture

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # tryfirst: attached before xdist sends the report on.
        phase = self.capture.drain(report.when)
        wire = phase.to_wire() if phase is not None else {"worker": self.capture.worker}
        setattr(report, REPORT_ATTR, wire)

    def pytest_sessionfinish(self) -> None:
        # xdist sends workeroutput after every pytest_sessionfinish ran (a wrapper).
        if self.capture.calibration is not None:
            workeroutput: dict[str, Any] = self.config.workeroutput  # type: ignore[attr-defined]
            workeroutput[CALIBRATION] = self.capture.calibration
