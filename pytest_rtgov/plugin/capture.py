"""Capture: the measured regions of every process that runs tests.

Registered on every process (xdist workers included). It opens a region per fixture
setup and per test round, keeps the metrics the ``rtgov`` fixture records, and hands
what a phase measured over as a :class:`~pytest_rtgov.plugin.samples.Phase` when asked
(:meth:`Capture.drain`): the collector folds it in this process, or xdist carries it
to the controller (``plugin/transport.py``).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_rtgov.core.records import Metric, escape_text
from pytest_rtgov.core.rounds import RoundsSpec
from pytest_rtgov.errors import InvalidMetricError, RtgovError
from pytest_rtgov.measure.gpu import GpuProbe, detect_cupy
from pytest_rtgov.measure.memory import AutoProbe, OffProbe, make_probe
from pytest_rtgov.measure.region import Meter
from pytest_rtgov.plugin.ab import run_ab
from pytest_rtgov.plugin.checkpoints import Checkpoints
from pytest_rtgov.plugin.marks import AB_KEY, SPEC_KEY, USAGE_KEY
from pytest_rtgov.plugin.memory_select import PRECISE_KEY, FixtureSelection
from pytest_rtgov.plugin.samples import Phase
from pytest_rtgov.plugin.settings import Settings

__all__ = ["OWN_FIXTURES", "Capture"]

OWN_FIXTURES = frozenset({"rtgov"})
_ONE_ROUND = RoundsSpec()


class Capture:
    """The measuring hooks, and the ``rtgov`` fixture's sinks."""

    # Slots, as every per-test object here: pluggy's ``dir(plugin)`` at registration
    # turns a small instance's attributes into a split ``__dict__``, which CPython 3.11
    # cannot specialize attribute access on (each ``self.x`` took the generic lookup).
    __slots__ = ("_ab_modules", "_artifact_store", "_auto", "_call", "_fixture_metrics",
                 "_item", "_measured", "_meter", "_metrics", "_original", "_pending_fixtures",
                 "_precise_fixtures", "_spec", "_timing_meter", "backend", "calibration",
                 "checkpoints", "config", "gpu", "settings", "worker")  # fmt: skip

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.worker = settings.worker
        cupy = detect_cupy()
        self.backend = "cupy" if cupy is not None else "numpy"
        self.gpu = GpuProbe(cupy) if cupy is not None else None
        capture_dir = settings.state_dir / "captures" / settings.run_id / settings.worker
        try:
            probe = make_probe(settings.memory_mode, capture_dir=capture_dir)
            self._meter = Meter(
                probe,
                self.gpu,
                relative_to=str(settings.state_dir),
            )
            # A/B rounds but the first measured pair: time without tracing (plugin/ab.py)
            self._timing_meter = Meter(
                OffProbe(), self.gpu, relative_to=str(settings.state_dir)
            )
        except RtgovError as exc:
            raise pytest.UsageError(str(exc)) from exc
        self._measured = _make_measured(self)
        # The auto memory mode: which regions it measures precisely (plugin/memory_select.py).
        self._auto = probe if isinstance(probe, AutoProbe) else None
        self._precise_fixtures = FixtureSelection(settings.memory_select)
        # The running test (None between tests), its rounds, its call phase (made at
        # setup, filled by the rounds, handed over whole: no second object per test),
        # the metrics it recorded since the last hand-over, and its function while the
        # call wrapper runs.
        self._item: pytest.Item | None = None
        self._spec = _ONE_ROUND
        self._call: Phase | None = None
        self._metrics: list[Metric] | None = None
        self._original: Any = None
        self._fixture_metrics: list[list[Metric]] = []
        self._pending_fixtures: list[dict[str, Any]] = []
        self._ab_modules: dict[str, Any] = {}
        self._artifact_store: Any = None
        # This process's calibration: timed before its first test, when asked.
        self.calibration: dict[str, Any] | None = None
        keep_all = bool(config.getoption("rtgov_keep_checkpoints", False))
        self.checkpoints = Checkpoints(settings.state_dir, keep_all=keep_all)

    def close(self) -> None:
        self._meter.close_probes()

    # -- the rtgov fixture's sinks ----------------------------------------------------

    def record_metric(self, metric: Metric) -> None:
        """Attach a metric to the running fixture setup or test."""
        if not (metric.unit.isascii() and metric.name.isascii()):
            metric = dataclasses.replace(
                metric, name=escape_text(metric.name), unit=escape_text(metric.unit)
            )
        if self._fixture_metrics:
            self._fixture_metrics[-1].append(metric)
        elif self._item is not None:
            if self._metrics is None:
                self._metrics = []
            self._metrics.append(metric)
        else:
            raise InvalidMetricError(
                f"metric {metric.name!r} recorded outside any test or fixture setup; "
                "record from a test body or a fixture"
            )

    def checkpoint(self, name: str, array: Any, keep: bool) -> str:
        """``rtgov.checkpoint``: attributed as a metric is (plugin/checkpoints.py)."""
        return self.checkpoints.capture(name, array, keep=keep, in_test=self._item is not None)

    def digest_checkpoint(self, metric: Metric, data: Any) -> None:
        """``rtgov.record_digest``'s checkpoint (kind ``digest``), beside its metric."""
        in_test = self._item is not None
        self.checkpoints.digest(metric.name, str(metric.value), data, in_test=in_test)

    def forget_unlogged(self) -> None:
        """After the determinism check's unlogged run of a test (plugin/determinism.py):
        what it measured is dropped, except the setups of wider-scoped fixtures, which
        the logged run reuses and does not make again."""
        self._pending_fixtures = [f for f in self._pending_fixtures if f["scope"] != "function"]
        self._metrics = self._call = None
        self.checkpoints.test = None

    def artifacts(self) -> Any:
        """This process's artifact store, created on first use."""
        if self._artifact_store is None:
            from pytest_rtgov.store.artifacts import ArtifactStore

            settings = self.settings
            self._artifact_store = ArtifactStore(
                settings.state_dir / "artifacts" / settings.run_id / settings.worker,
                settings.signing.signer,
                settings.trust,
                run_id=settings.run_id,
                worker=settings.worker,
            )
        return self._artifact_store

    def progress(self, description: str, total: float | None) -> Any:
        from pytest_rtgov.plugin.progress import NullProgress, TerminalProgress

        if self.settings.interactive:
            return TerminalProgress(self.config, description, total)
        return NullProgress()

    # -- measuring hooks --------------------------------------------------------------

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        # Where the collected code declares @stage fixtures (their module was imported),
        # the stage machinery is imported and the keys loaded now, once per process:
        # session costs, not the first stage's (plugin/stage_session.py).
        if "pytest_rtgov.plugin.stages" in sys.modules:
            from pytest_rtgov.plugin.stage_session import warm_up

            warm_up(self.config)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        # tryfirst: before pytest's own setup, which sets the fixtures up.
        if self.settings.calibrate and self.calibration is None:
            from pytest_rtgov.measure.calibration import calibrate

            self.calibration = calibrate()  # once per process, before any region opens
        self._item = item
        # ``in`` then ``[]``: Stash.get raises and catches a KeyError for every
        # test without a marker.
        stash = item.stash
        self._spec = stash[SPEC_KEY] if SPEC_KEY in stash else _ONE_ROUND
        self._call = Phase(self.worker)
        self._call.seq = self.checkpoints.start_test()
        if self._auto is not None:
            self._auto.precise_next = PRECISE_KEY in stash

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef: Any, request: Any) -> Any:
        __tracebackhide__ = True  # a failing fixture's traceback is the user's code
        if fixturedef.argname in OWN_FIXTURES or _is_direct_param(fixturedef):
            return (yield)
        # A @stage: its key is computed and looked up first, outside the region, which
        # then measures the hit or the run alone; a hit is not judged, so the auto mode
        # measures it with the cheap probe (plugin/stage_session.py).
        hit = False
        is_stage = hasattr(fixturedef.func, "_rtgov_stage")
        if is_stage:
            from pytest_rtgov.plugin.stage_session import prepare

            hit = prepare(fixturedef, request, self.config)
        metrics: list[Metric] = []
        self._fixture_metrics.append(metrics)
        checkpoints: list[dict[str, Any]] = []  # compared twice only at function scope
        owner = f"fixture {fixturedef.argname}" if fixturedef.scope == "function" else None
        self.checkpoints.fixtures.append((owner, checkpoints))
        auto = self._auto
        if auto is not None:  # the fixture's own choice, then the test's again
            test_precise, auto.precise_next = auto.precise_next, (
                not hit and self._precise_fixtures.wants(fixturedef.argname)
            )
            region = self._meter.open()
            auto.precise_next = test_precise
        else:
            region = self._meter.open()
        completed = False
        stage = None
        try:
            result = yield
            completed = True
            # a @stage fixture's event (plugin/stages.py): it goes into the record
            if hasattr(result, "_rtgov_stage_result"):
                stage = result.event
            return result
        finally:
            sample = self._meter.close(region, completed=completed)
            if stage is not None:  # its outputs, as checkpoints of this setup
                self.checkpoints.stage_outputs(stage, result, metrics)
            self._fixture_metrics.pop()
            self.checkpoints.fixtures.pop()
            if is_stage:
                from pytest_rtgov.plugin.stage_session import discard

                discard(request, self.config)
            # Node ids and names are escaped here, before xdist sends them: lone
            # surrogates cannot cross its wire nor be written (core.records.escape_text).
            item = self._item
            self._pending_fixtures.append(
                {
                    "nodeid": escape_text(request.node.nodeid),
                    "name": escape_text(fixturedef.argname),
                    "scope": fixturedef.scope,
                    "param_index": request.param_index if fixturedef.params else None,
                    "requested_by": escape_text(item.nodeid) if item is not None else "",
                    "outcome": "passed" if completed else "error",
                    "sample": sample,
                    "metrics": [m.to_dict() for m in metrics],
                    **({"stage": stage} if stage is not None else {}),
                    **({"checkpoints": checkpoints} if checkpoints else {}),
                }
            )

    @pytest.hookimpl(wrapper=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> Any:
        call = self._call
        if call is None:
            return (yield)
        original = pyfuncitem.obj
        if call.samples is None:
            call.samples = []
        baseline = self._baseline_function(pyfuncitem) if AB_KEY in pyfuncitem.stash else None

        if baseline is None:
            # One function made with the plugin, reading the running test's state:
            # no closure (a function and its cells) made per test.
            self._original = original
            measured = self._measured
        else:
            meter, spec, samples, ab = self._meter, self._spec, call.samples, self.settings.ab
            timing = self._timing_meter

            def measured(*args: Any, **kwargs: Any) -> Any:
                return run_ab(
                    original, baseline, args, kwargs, meter, samples, spec, ab,
                    len(pyfuncitem.session.items), timing,
                )

        pyfuncitem.obj = measured
        try:
            return (yield)
        finally:
            pyfuncitem.obj = original
            self._original = None

    def _baseline_function(self, item: pytest.Function) -> Any:
        """The test's function at the A/B baseline ref, or None (new test, class test)."""
        ab = self.settings.ab
        if ab is None or getattr(item, "cls", None) is not None:
            return None
        from pytest_rtgov.store.ab_code import load_baseline_module

        key = str(item.path)
        if key not in self._ab_modules:
            self._ab_modules[key] = load_baseline_module(
                Path(item.path),
                Path(item.config.rootpath),
                Path(ab["root"]),
                private_name=f"_rtgov_ab_{len(self._ab_modules)}",
            )
        module = self._ab_modules[key]
        function = getattr(module, item.originalname, None) if module is not None else None
        return function if callable(function) else None

    def drain(self, when: str) -> Phase | None:
        """What this process measured during the phase ``when`` (None: nothing), handed
        over: the lists go with it, so nothing is copied. The call phase is the object
        the rounds filled; a setup or teardown phase gets one only when it carries
        fixture setups or metrics."""
        fixtures, metrics, checkpoints = self._pending_fixtures, self._metrics, self.checkpoints
        phase = self._call if when == "call" else None
        if phase is not None:
            self._call = None
            item = self._item
            if self.settings.record_markers and item is not None:
                phase.markers = tuple(sorted({escape_text(m.name) for m in item.iter_markers()}))
            phase.rounds, phase.warmup = self._spec.rounds, self._spec.warmup
            if phase.samples is None:
                phase.samples = []
            if item is not None and USAGE_KEY in item.stash:
                phase.usage_error = item.stash[USAGE_KEY]
        elif fixtures or metrics or checkpoints.test:
            phase = Phase(self.worker)
        if when == "teardown":
            self._item = self._call = None
        if phase is None:
            return None  # most setup and teardown phases: no object made
        if fixtures:
            phase.fixtures, self._pending_fixtures = fixtures, []
        if metrics:
            phase.metrics, self._metrics = metrics, None
        if checkpoints.test:
            phase.checkpoints, checkpoints.test = checkpoints.test, None
        return phase


def _is_direct_param(fixturedef: Any) -> bool:
    """``@pytest.mark.parametrize`` arguments are desugared into pseudo-fixtures that
    only hand out the parameter; measuring them would double every test's cost."""
    return getattr(fixturedef.func, "__name__", "") == "get_direct_param_fixture_func"


def _make_measured(capture: Capture) -> Any:
    """The stand-in for a test function: its rounds, each a measured region."""
    meter = capture._meter

    def measured(*args: Any, **kwargs: Any) -> Any:
        # set by the call wrapper: the test's function, its rounds, its samples list
        call: Any = capture._call
        original, spec, samples = capture._original, capture._spec, call.samples
        result = None
        for index in range(spec.warmup + spec.rounds):
            region = meter.open()
            completed = False
            try:
                result = original(*args, **kwargs)
                completed = True
            finally:
                samples.append(meter.close(region, warmup=index < spec.warmup, completed=completed))
        return result

    return measured
