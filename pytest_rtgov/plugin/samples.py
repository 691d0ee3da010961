"""Collection of samples: one fold of every phase's measurements into the run record.

A :class:`Phase` is what one test phase measured in one process. Without xdist the
capture plugin hands it over directly; under xdist it crosses the wire as builtins
(:meth:`Phase.to_wire`, :meth:`Phase.from_wire`). Either way the controller's
:class:`Collector` folds it with the same code (its ``pytest_runtest_logreport``), and
builds the record in canonical order (:meth:`Collector.build_record`).

A test that a rerun plugin runs again (pytest-rerunfailures) repeats its setup, call
and teardown reports under one node id: each attempt after the first begins with a
setup report after a teardown, and the attempt before it becomes one of the test's
``reruns`` (:class:`~pytest_rtgov.core.records.Rerun`), so the entry's samples,
metrics and outcome are the final attempt's alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_rtgov.core.records import (
    FixtureEntry,
    FixtureSetup,
    Metric,
    Rerun,
    RunRecord,
    Sample,
    TestEntry,
    escape_text,
)
from pytest_rtgov.core.run_order import canonical_run, sorted_metrics
from pytest_rtgov.measure.clock import epoch_ns
from pytest_rtgov.measure.memory import TRACEMALLOC_UNMEASURED
from pytest_rtgov.plugin.checkpoints import from_wire as checkpoints_from_wire
from pytest_rtgov.plugin.settings import MAIN_WORKER, OUTCOME_KEY, Settings

if TYPE_CHECKING:
    from pytest_rtgov.plugin.capture import Capture

__all__ = ["REPORT_ATTR", "Collector", "Phase"]

REPORT_ATTR = "rtgov"  # a worker's report carries its Phase on the wire as report.rtgov


class Phase:
    """What one phase (setup, call, teardown) of a test measured in one process.

    ``samples`` is None except for a call phase; ``fixtures`` holds the fixture setups
    that ran as builtins (as measured, ready for the wire)."""

    __slots__ = ("checkpoints", "fixtures", "markers", "metrics", "rounds", "samples", "seq",
                 "usage_error", "warmup", "worker")

    def __init__(self, worker: str, *, fixtures: list[dict[str, Any]] | None = None) -> None:
        self.worker = worker
        self.fixtures = fixtures
        self.markers: tuple[str, ...] | None = None
        self.rounds = 1
        self.warmup = 0
        self.samples: list[dict[str, Any]] | None = None
        self.metrics: list[Metric] | None = None
        self.usage_error: str | None = None
        self.checkpoints: list[dict[str, Any]] | None = None  # the test's (plugin/checkpoints.py)
        self.seq: int | None = None  # a call phase: its test's start in causal order

    def to_wire(self) -> dict[str, Any]:
        """Builtin types only: what an xdist worker attaches to the report."""
        wire: dict[str, Any] = {"worker": self.worker}
        if self.fixtures:
            wire["fixtures"] = self.fixtures
        if self.markers is not None:
            wire["markers"] = list(self.markers)
        if self.samples is not None:
            wire["rounds"], wire["warmup"], wire["samples"] = self.rounds, self.warmup, self.samples
        if self.metrics:
            wire["metrics"] = [m.to_dict() for m in self.metrics]
        if self.usage_error is not None:
            wire["usage_error"] = self.usage_error
        if self.checkpoints:
            wire["checkpoints"] = self.checkpoints
        if self.seq is not None:
            wire["seq"] = self.seq
        return wire

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> Phase:
        # Payloads come from this plugin's own workers: built from our records and
        # sent as plain builtins, so they are rebuilt without re-validation.
        phase = cls(str(wire.get("worker", MAIN_WORKER)), fixtures=wire.get("fixtures"))
        if "markers" in wire:
            phase.markers = tuple(wire["markers"])
        if "samples" in wire:
            phase.rounds, phase.warmup = wire["rounds"], wire["warmup"]
            phase.samples = wire["samples"]
        if "metrics" in wire:
            phase.metrics = [Metric(**m) for m in wire["metrics"]]
        if "usage_error" in wire:
            phase.usage_error = str(wire["usage_error"])
        phase.checkpoints = wire.get("checkpoints")
        phase.seq = wire.get("seq")
        return phase


@dataclass(slots=True)
class _TestAccumulator:
    """A test's phases merged into one entry; lists are made lazily."""

    worker: str = MAIN_WORKER
    rounds: int = 1
    warmup: int = 0
    samples: list[dict[str, Any]] | None = None
    metrics: list[Metric] | None = None
    checkpoints: list[dict[str, Any]] | None = None  # as metrics: the final attempt's
    seq: int | None = None  # the final attempt's start, in its process's causal order
    markers: tuple[str, ...] = ()
    call_outcome: str | None = None
    skipped: bool = False
    errored: bool = False
    torn_down: bool = False  # this attempt ended: its teardown (or crash) was reported
    reruns: list[Rerun] | None = None  # earlier attempts, oldest first

    def take_phase(self, when: str, outcome: str) -> None:
        """Fold one phase's report outcome in. ``rerun`` is pytest-rerunfailures'
        outcome of a failed phase whose test it runs again: failed, for this attempt."""
        if outcome == "rerun":
            outcome = "failed"
        if when == "call":
            self.call_outcome = outcome
        else:
            if outcome == "failed":
                self.errored = True
            elif outcome == "skipped":
                self.skipped = True
            if when != "setup":  # teardown, or xdist's report of a crashed worker
                self.torn_down = True

    def end_attempt(self, fixtures: tuple[FixtureEntry, ...]) -> None:
        """Keep the attempt folded so far as a rerun and start the next one afresh."""
        rerun = Rerun(
            outcome=self.outcome(),
            samples=tuple(Sample(**s) for s in self.samples) if self.samples else (),
            metrics=sorted_metrics(self.metrics) if self.metrics else (),
            fixtures=fixtures,
        )
        if self.reruns is None:
            self.reruns = []
        self.reruns.append(rerun)
        self.samples = self.metrics = self.checkpoints = self.call_outcome = None
        self.skipped = self.errored = self.torn_down = False

    def outcome(self) -> str:
        if self.errored:
            return "error"
        if self.call_outcome is not None:
            return self.call_outcome
        return "skipped" if self.skipped else "error"


class Collector:
    """The controller's side: every test report of the session, folded."""

    # Slots: see Capture (a registered plugin's split __dict__ defeats specialization).
    __slots__ = ("_calibration_kernel", "_calibrations", "_fixture_setups", "_tests",
                 "_workers", "capture", "config", "locations", "settings", "started_ns",
                 "usage_errors")  # fmt: skip

    def __init__(self, config: pytest.Config, settings: Settings, capture: Capture) -> None:
        self.config = config
        self.settings = settings
        self.capture = capture
        self.started_ns = epoch_ns()
        self._tests: dict[str, _TestAccumulator] = {}
        self._fixture_setups: list[tuple[FixtureEntry, FixtureSetup]] = []
        self._workers: set[str] = set()
        self.usage_errors: list[str] = []
        self._calibrations: dict[str, int] = {}
        self._calibration_kernel = ""
        # Test locations, for GitHub Actions' ::error lines only.
        self.locations: dict[str, tuple[str, int | None]] | None = (
            {} if settings.github_actions else None
        )

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """The one fold of a test phase, wherever it was measured: an xdist worker's
        phase arrives on the report, this process's is drained from the capture."""
        wire = getattr(report, REPORT_ATTR, None)
        when = report.when  # a report's attributes live in a dict: read each once
        phase = Phase.from_wire(wire) if wire is not None else self.capture.drain(when)
        nodeid = report.nodeid  # a property that formats the id: read it once
        acc = self._tests.get(nodeid)
        if acc is None:
            acc = self._tests[nodeid] = _TestAccumulator()
            self._workers.add(acc.worker if phase is None else phase.worker)
            if self.locations is not None:
                path, lineno, _ = report.location
                self.locations[nodeid] = (path, None if lineno is None else lineno + 1)
        elif acc.torn_down and when == "setup":  # the test runs again: a rerun
            acc.end_attempt(self._take_superseded(nodeid, phase))
        if phase is not None:
            worker = acc.worker = phase.worker
            if phase.fixtures:
                self._add_fixtures(phase.fixtures, worker)
            if phase.usage_error is not None:
                self.usage_errors.append(phase.usage_error)
            if phase.markers is not None:
                acc.markers = phase.markers
            if phase.samples is not None:
                acc.rounds, acc.warmup = phase.rounds, phase.warmup
                if acc.samples is None:
                    acc.samples = phase.samples
                else:
                    acc.samples.extend(phase.samples)
            if phase.metrics:
                if acc.metrics is None:
                    acc.metrics = phase.metrics
                else:
                    acc.metrics.extend(phase.metrics)
            if phase.checkpoints:
                acc.checkpoints = (acc.checkpoints or []) + phase.checkpoints
            if phase.seq is not None:
                acc.seq = phase.seq
        acc.take_phase(when, report.outcome)

    def _take_superseded(self, nodeid: str, phase: Phase | None) -> tuple[FixtureEntry, ...]:
        """The fixture setups an attempt of ``nodeid`` made that its next attempt (whose
        setup ``phase`` is) makes again, taken out of the run's fixtures: they belong to
        the rerun. A setup made once for all attempts (a session fixture) stays."""
        fixtures = (phase.fixtures if phase is not None else None) or ()
        again = {(fx["nodeid"], fx["name"], fx["param_index"]) for fx in fixtures}
        requested_by = escape_text(nodeid)
        kept: list[tuple[FixtureEntry, FixtureSetup]] = []
        taken: list[tuple[FixtureEntry, FixtureSetup]] = []
        for entry, setup in self._fixture_setups:
            superseded = setup.requested_by == requested_by and (
                entry.nodeid, entry.name, entry.param_index
            ) in again
            (taken if superseded else kept).append((entry, setup))
        if not taken:
            return ()
        self._fixture_setups = kept
        return canonical_run(tests=(), fixture_setups=taken)[1]

    @pytest.hookimpl(tryfirst=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Notes on what the record holds but does not count: regions whose memory the
        code under test made unmeasurable, and tests that were rerun."""
        outcome = self.config.stash.get(OUTCOME_KEY, None)
        if outcome is None or outcome.record is None:
            return
        for line in _record_notes(outcome.record):
            terminalreporter.write_line(line)

    def add_calibration(self, worker: str, calibration: dict[str, Any]) -> None:
        """A process's timing of the calibration kernel (``measure/calibration.py``)."""
        self._calibrations[worker] = int(calibration["median_ns"])
        self._calibration_kernel = str(calibration["kernel"])

    def _add_fixtures(self, fixtures: list[dict[str, Any]], worker: str) -> None:
        for fx in fixtures:
            entry = FixtureEntry(
                nodeid=fx["nodeid"],
                name=fx["name"],
                scope=fx["scope"],
                param_index=fx["param_index"],
            )
            setup = FixtureSetup(
                worker=worker,
                requested_by=fx["requested_by"],
                outcome=fx["outcome"],
                sample=Sample(**fx["sample"]),
                metrics=tuple(Metric(**m) for m in fx["metrics"]),
                stage=fx.get("stage"),
                checkpoints=checkpoints_from_wire(fx.get("checkpoints")),
            )
            self._fixture_setups.append((entry, setup))

    def build_record(self, exitstatus: int) -> RunRecord:
        """The run record, in canonical order (``core.records.canonical_run``)."""
        from pytest_rtgov.measure.environment import collect_environment, plugin_versions

        settings, capture, config = self.settings, self.capture, self.config
        if capture.calibration is not None:  # this process ran tests
            self.add_calibration(settings.worker, capture.calibration)
        tests, fixtures = canonical_run(
            tests=(
                TestEntry(
                    nodeid=escape_text(nodeid),
                    outcome=acc.outcome(),
                    worker=acc.worker,
                    rounds=acc.rounds,
                    warmup=acc.warmup,
                    samples=tuple(Sample(**s) for s in acc.samples) if acc.samples else (),
                    markers=acc.markers,
                    metrics=tuple(acc.metrics) if acc.metrics else (),
                    reruns=tuple(acc.reruns) if acc.reruns else (),
                    checkpoints=checkpoints_from_wire(acc.checkpoints),
                    seq=acc.seq,
                )
                for nodeid, acc in self._tests.items()
            ),
            fixture_setups=self._fixture_setups,
        )
        gpu_facts = capture.gpu.device_facts() if capture.gpu is not None else None
        return RunRecord(
            run_id=settings.run_id,
            started_at=_iso(self.started_ns),
            ended_at=_iso(epoch_ns()),
            mode=settings.mode,
            exit_status=int(exitstatus),
            pytest_args=tuple(escape_text(a) for a in config.invocation_params.args),
            memory_mode=settings.memory_mode,
            backend=capture.backend,
            workers=tuple(sorted(self._workers)),
            environment={
                escape_text(name): escape_text(value)
                for name, value in collect_environment(
                    backend=capture.backend,
                    gpu_facts=gpu_facts,
                    rootdir=Path(config.rootpath),
                    plugins=plugin_versions(
                        (dist.project_name, dist.version)
                        for _, dist in config.pluginmanager.list_plugin_distinfo()
                    ),
                ).items()
            },
            tests=tests,
            fixtures=fixtures,
            calibration={"kernel": self._calibration_kernel, "workers": dict(self._calibrations)}
            if self._calibrations
            else {},
        )


_LISTED = 10  # subjects a terminal note names before "and N more"


def _record_notes(record: RunRecord) -> list[str]:
    """The terminal notes about ``record``: unmeasured memory, reruns."""
    unmeasured = [
        t.nodeid for t in record.tests for s in t.samples if s.evidence == TRACEMALLOC_UNMEASURED
    ] + [
        f"fixture {f.name} (set up for {setup.requested_by})"
        for f in record.fixtures
        for setup in f.setups
        if setup.sample.evidence == TRACEMALLOC_UNMEASURED
    ]
    rerun = [f"{t.nodeid} ({len(t.reruns)} earlier attempts)" for t in record.tests if t.reruns]
    notes: list[str] = []
    if unmeasured:
        notes.append(
            f"rtgov: memory not measured for {len(unmeasured)} regions: the code under test "
            "started, stopped or cleared tracemalloc itself, so their peak is unknown "
            "(recorded as null, never 0 B; measure them with --rtgov-memory rss or memray):"
        )
        notes += _listed(dict.fromkeys(unmeasured))
    if rerun:
        notes.append(
            f"rtgov: {len(rerun)} tests rerun: only each one's final attempt counts (samples, "
            "metrics, outcome, gates); the record keeps the earlier ones as its reruns:"
        )
        notes += _listed(rerun)
    return notes


def _listed(subjects: Any) -> list[str]:
    subjects = list(subjects)
    lines = [f"  {s}" for s in subjects[:_LISTED]]
    if len(subjects) > _LISTED:
        lines.append(f"  and {len(subjects) - _LISTED} more")
    return lines


def _iso(ns: int) -> str:
    import datetime as dt

    return (
        dt.datetime.fromtimestamp(ns / 1e9, tz=dt.timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
