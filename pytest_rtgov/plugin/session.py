"""The measuring plugin: capture wrappers on every process, aggregation on the controller.

Data flow under pytest-xdist: a worker measures, attaches plain builtin data to each
test report (``report.rtgov``), and the controller, which sees every report in
``pytest_runtest_logreport``, builds the run record in canonical order and writes it.
Without xdist the same process does both halves.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_rtgov.core.records import (
    FixtureEntry,
    FixtureSetup,
    Metric,
    RunRecord,
    Sample,
    TestEntry,
    canonical_run,
    escape_json,
    escape_text,
)
from pytest_rtgov.core.rounds import RoundsSpec, parse_rounds_marker
from pytest_rtgov.errors import InvalidMetricError, RtgovError
from pytest_rtgov.logs import add_json_lines_handler, log_event
from pytest_rtgov.measure.clock import epoch_ns
from pytest_rtgov.measure.gpu import GpuProbe, detect_cupy
from pytest_rtgov.measure.memory import make_probe
from pytest_rtgov.measure.region import Meter
from pytest_rtgov.plugin.ab import run_ab
from pytest_rtgov.store.files import atomic_write

__all__ = ["RtgovPlugin"]

REPORT_ATTR = "rtgov"
OWN_FIXTURES = frozenset({"rtgov"})
MAIN_WORKER = "main"
_ONE_ROUND = RoundsSpec()


def _iso(ns: int) -> str:
    import datetime as dt

    return (
        dt.datetime.fromtimestamp(ns / 1e9, tz=dt.timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class _ItemState:
    """What one test has measured so far in this process.

    Made per test, so its lists are made only when something goes in them: every
    container allocated per test brings pytest's next garbage collection closer.
    """

    __slots__ = ("metrics", "original", "samples", "spec")

    def __init__(self, spec: RoundsSpec) -> None:
        self.spec = spec
        self.samples: list[dict[str, Any]] | None = None
        self.metrics: list[Metric] | None = None
        self.original: Any = None  # the test function while the call wrapper runs


@dataclass(slots=True)
class _TestAccumulator:
    """Controller side: a test's phases merged into one entry.

    ``samples`` holds the sample dicts as measured (or received); they become
    :class:`Sample` records in :meth:`RtgovPlugin.build_record`. Lists are made lazily.
    """

    worker: str = MAIN_WORKER
    rounds: int = 1
    warmup: int = 0
    samples: list[dict[str, Any]] | None = None
    metrics: list[Metric] | None = None
    markers: tuple[str, ...] = ()
    call_outcome: str | None = None
    skipped: bool = False
    errored: bool = False

    def take_phase(self, when: str, outcome: str) -> None:
        """Fold one phase's report outcome in."""
        if when == "call":
            self.call_outcome = outcome
        elif outcome == "failed":
            self.errored = True
        elif outcome == "skipped":
            self.skipped = True

    def outcome(self) -> str:
        if self.errored:
            return "error"
        if self.call_outcome is not None:
            return self.call_outcome
        return "skipped" if self.skipped else "error"


class RtgovPlugin:
    """Registered by :func:`pytest_rtgov.plugin.pytest_configure` when rtgov is on."""

    def __init__(
        self,
        config: pytest.Config,
        *,
        mode: str,
        state_dir: Path,
        memory_mode: str,
        run_id: str,
        worker: str | None,
    ) -> None:
        self.config = config
        self.mode = mode
        self.state_dir = state_dir
        self.memory_mode = memory_mode
        self.run_id = run_id
        self.worker = worker or MAIN_WORKER
        self.is_worker = worker is not None
        self.started_ns = epoch_ns()
        cupy = detect_cupy()
        self.backend = "cupy" if cupy is not None else "numpy"
        self._gpu = GpuProbe(cupy) if cupy is not None else None
        capture_dir = state_dir / "captures" / run_id / self.worker
        self._meter = Meter(
            make_probe(memory_mode, capture_dir=capture_dir),
            self._gpu,
            relative_to=str(state_dir),
        )
        # Measuring side (every process that runs tests).
        self._measured = _make_measured(self)
        self._item: pytest.Item | None = None
        self._item_state: _ItemState | None = None
        self._fixture_metrics: list[list[Metric]] = []
        self._pending_fixtures: list[dict[str, Any]] = []
        # Controller side.
        self._tests: dict[str, _TestAccumulator] = {}
        self._fixture_setups: list[tuple[FixtureEntry, FixtureSetup]] = []
        self._workers: set[str] = set()
        self._usage_errors: list[str] = []
        self.record_path: Path | None = None
        self.record: RunRecord | None = None
        self._log_handler: logging.Handler | None = None
        self.gatekeeper: Any = None
        self.verdict: Any = None
        # Same-process A/B: {"root", "sha", "ref", "tests", "markers", "pairs"} or None.
        self.ab: dict[str, Any] | None = None
        self._ab_modules: dict[str, Any] = {}
        # Calibration: wanted in this process?, its result, and what the controller got.
        self.calibrate = False
        self._calibration: dict[str, Any] | None = None
        self._calibration_sent = False
        self._calibrations: dict[str, int] = {}
        self._calibration_kernel = ""
        # Default rounds of gated tests without a marker: {"rounds", "tests", "markers"}.
        self.default_rounds: dict[str, Any] | None = None
        # Signing: the key of this session, who is trusted, the ledger's outcome.
        self._key_plan: Any = None  # checked before the tests, loaded when first used
        self._loaded_keys: tuple[Any, Any] | None = None
        self._artifact_store: Any = None
        self.ledger_result: Any = None
        self.report_path: Path | None = None
        # Markers are kept where gates may select by them: gated runs and shards.
        self._record_markers = mode == "gate" or (
            worker is not None and bool(config.getoption("rtgov_shard"))
        )
        self._export_specs: list[tuple[str, Path]] = []
        self._interactive: bool | None = None
        self._locations: dict[str, tuple[str, int | None]] | None = (
            {} if os.environ.get("GITHUB_ACTIONS") == "true" else None
        )
        self.ledger_error: str | None = None
        self._run_leaves: list[bytes] | None = None  # what this session appended
        self._encoded: bytes | None = None  # the run record's canonical JSON

    @classmethod
    def from_config(cls, config: pytest.Config) -> RtgovPlugin:
        from pytest_rtgov.store.runs import new_run_id

        workerinput = getattr(config, "workerinput", None)
        state_dir = Path(config.getoption("rtgov_dir"))
        if not state_dir.is_absolute():
            state_dir = Path(config.invocation_params.dir) / state_dir
        run_id = workerinput.get("rtgov_run_id") if workerinput else None
        if not workerinput:  # workers write nothing there that the controller did not check
            _check_state_dir(state_dir)
        try:
            plugin = cls(
                config,
                mode="gate" if config.getoption("rtgov_gate") else "record",
                state_dir=state_dir,
                memory_mode=config.getoption("rtgov_memory"),
                run_id=run_id or new_run_id(),
                worker=workerinput["workerid"] if workerinput else None,
            )
        except RtgovError as exc:
            raise pytest.UsageError(str(exc)) from exc
        from pytest_rtgov.store.ledger import LedgerError, lock_timeout

        try:  # checked before the tests, used after them
            lock_timeout(config.getoption("rtgov_ledger_timeout"))
        except LedgerError as exc:
            raise pytest.UsageError(str(exc)) from None
        if plugin.mode == "gate" and not plugin.is_worker:
            from pytest_rtgov.plugin.gating import Gatekeeper

            plugin.gatekeeper = Gatekeeper.from_config(config)
            plugin._load_keys(config)
            try:  # the baseline's seal is checked before the tests: the keys are needed now
                plugin.gatekeeper.signing, plugin.gatekeeper.trust = plugin.signing, plugin.trust
            except RtgovError as exc:
                raise pytest.UsageError(str(exc)) from None
            plugin.ab = plugin.gatekeeper.prepare_ab(state_dir / "ab")
            plugin.calibrate = plugin.gatekeeper.gates.calibrated
            plugin.default_rounds = plugin.gatekeeper.default_rounds()
        else:
            plugin._load_keys(config)
            if not plugin.is_worker and config.getoption("rtgov_shard") is not None:
                plugin._measure_like_the_gate(config)
        if plugin.is_worker:
            plugin.ab = workerinput.get("rtgov_ab")
            plugin.calibrate = bool(workerinput.get("rtgov_calibrate"))
            plugin.default_rounds = workerinput.get("rtgov_default_rounds")
        plugin.calibrate = plugin.calibrate or bool(config.getoption("rtgov_calibrate"))
        plugin._export_specs = _export_specs(config) if not plugin.is_worker else []
        # Whether the terminal is interactive, asked now: once tests run, pytest's fd
        # capture makes stdout a temporary file.
        from pytest_rtgov.plugin.progress import wants_progress

        plugin._interactive = wants_progress(config, is_worker=plugin.is_worker)
        log_path = config.getoption("rtgov_log_json")
        if log_path and not plugin.is_worker:
            try:
                plugin._log_handler = add_json_lines_handler(Path(log_path))
            except OSError as exc:
                raise pytest.UsageError(
                    f"--rtgov-log-json: cannot open {log_path}: {exc.strerror or exc}"
                ) from None
        if not plugin.is_worker:
            log_event(
                "session.start",
                run_id=plugin.run_id,
                mode=plugin.mode,
                memory_mode=plugin.memory_mode,
                backend=plugin.backend,
                state_dir=str(state_dir),
            )
        return plugin

    def _measure_like_the_gate(self, config: pytest.Config) -> None:
        """A shard (``--rtgov --rtgov-shard``) is gated later, by ``rtgov merge --gate``:
        measure as ``--rtgov-gate`` would (A/B pairs, default rounds, calibration,
        markers), so that the merged run gates like an unsharded one."""
        from pytest_rtgov.plugin.gating import Gatekeeper

        option = config.getoption("rtgov_gates")
        path = Path(option) if option else Path(config.rootpath) / "gates.toml"
        if not path.is_absolute():
            path = Path(config.invocation_params.dir) / path
        if not path.is_file():
            return
        keeper = Gatekeeper.from_config(config)
        self.ab = keeper.prepare_ab(self.state_dir / "ab")
        self.calibrate = keeper.gates.calibrated
        self.default_rounds = keeper.default_rounds()
        self._record_markers = True

    def _load_keys(self, config: pytest.Config) -> None:
        """Check the signing key and the keyring before any test runs; refuse an
        untrusted key where signatures are required (``--rtgov-require-signature`` or
        ``CI=true``). The keys themselves (and cryptography) are loaded when first
        used, after the tests in a recording session (see ``core.keys``)."""
        from pytest_rtgov.store.keys import plan_keys, require_signatures

        rootdir = Path(config.rootpath)
        key_option = config.getoption("rtgov_signing_key")
        ring_option = config.getoption("rtgov_keyring")
        required = require_signatures(bool(config.getoption("rtgov_require_signature")))
        invocation = Path(config.invocation_params.dir)
        try:
            plan = plan_keys(
                key_file=invocation / key_option if key_option else None,
                keyring=invocation / ring_option if ring_option else rootdir / "rtgov.keyring",
                state_dir=self.state_dir,
                required=required,
            )
        except RtgovError as exc:
            raise pytest.UsageError(str(exc)) from None
        self._key_plan = plan

    def _keys(self) -> tuple[Any, Any]:
        if self._loaded_keys is None:
            assert self._key_plan is not None, "_load_keys runs in from_config"
            self._loaded_keys = self._key_plan.load()
        return self._loaded_keys

    @property
    def signing(self) -> Any:
        """The session's :class:`~pytest_rtgov.store.keys.SigningKey`, loaded on first use."""
        return self._keys()[0]

    @property
    def trust(self) -> Any:
        """The session's :class:`~pytest_rtgov.store.keys.Trust`, loaded on first use."""
        return self._keys()[1]

    def progress(self, description: str, total: float | None) -> Any:
        from pytest_rtgov.plugin.progress import NullProgress, TerminalProgress, wants_progress

        if self._interactive is None:  # decided once, before the first capture
            self._interactive = wants_progress(self.config, is_worker=self.is_worker)
        if self._interactive:
            return TerminalProgress(self.config, description, total)
        return NullProgress()

    def artifacts(self) -> Any:
        """This process's artifact store, created on first use."""
        if self._artifact_store is None:
            from pytest_rtgov.store.artifacts import ArtifactStore

            self._artifact_store = ArtifactStore(
                self.state_dir / "artifacts" / self.run_id / self.worker,
                self.signing.signer,
                self.trust,
                run_id=self.run_id,
                worker=self.worker,
            )
        return self._artifact_store

    def close(self) -> None:
        self._meter.close_probes()
        if self._log_handler is not None:
            logging.getLogger("pytest_rtgov").removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None

    # -- xdist glue -------------------------------------------------------------

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["rtgov_run_id"] = self.run_id
        if self.ab is not None:
            node.workerinput["rtgov_ab"] = self.ab
        node.workerinput["rtgov_calibrate"] = self.calibrate
        if self.default_rounds is not None:
            node.workerinput["rtgov_default_rounds"] = self.default_rounds

    # -- collection -----------------------------------------------------------------

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        if self.default_rounds is not None:
            import fnmatch

            spec = RoundsSpec(rounds=int(self.default_rounds["rounds"]), warmup=1)
            globs, markers = self.default_rounds["tests"], set(self.default_rounds["markers"])
            for item in items:
                if item.get_closest_marker("rtgov") is None and (
                    any(fnmatch.fnmatchcase(item.nodeid, p) for p in globs)
                    or any(m.name in markers for m in item.iter_markers())
                ):
                    item.stash[_SPEC_KEY] = spec
        if self.ab is not None:
            import fnmatch

            ab_tests, ab_markers = self.ab["tests"], set(self.ab["markers"])
            for item in items:
                if any(fnmatch.fnmatchcase(item.nodeid, p) for p in ab_tests) or any(
                    m.name in ab_markers for m in item.iter_markers()
                ):
                    item.stash[_AB_KEY] = True
        problems = []
        parents: dict[int, Any] = {}
        for item in items:
            marker = _closest_rtgov_marker(item, parents)
            if marker is None:
                continue
            try:
                item.stash[_SPEC_KEY] = parse_rounds_marker(marker.args, marker.kwargs)
            except RtgovError as exc:
                problems.append((item, f"{item.nodeid}: {exc}"))
        if not problems:
            return
        if not self.is_worker:
            raise pytest.UsageError("\n".join(message for _, message in problems))
        # A UsageError raised inside an xdist worker's collection crashes the
        # controller. Instead the test errors with the message and the controller
        # turns the session's exit status into a usage error (4).
        for item, message in problems:
            item.stash[_USAGE_KEY] = message
            if isinstance(item, pytest.Function):
                item.obj = _raiser(message)

    # -- measuring side -------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        # tryfirst: before pytest's own setup, which sets the fixtures up.
        if self.calibrate and self._calibration is None:
            from pytest_rtgov.measure.calibration import calibrate

            self._calibration = calibrate()  # once per process, before any region opens
        self._item = item
        # ``in`` then ``[]``: Stash.get raises and catches a KeyError for every
        # test without a marker.
        stash = item.stash
        self._item_state = _ItemState(stash[_SPEC_KEY] if _SPEC_KEY in stash else _ONE_ROUND)

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef: Any, request: Any) -> Any:
        if fixturedef.argname in OWN_FIXTURES or _is_direct_param(fixturedef):
            return (yield)
        metrics: list[Metric] = []
        self._fixture_metrics.append(metrics)
        region = self._meter.open()
        completed = False
        try:
            result = yield
            completed = True
            return result
        finally:
            sample = self._meter.close(region, completed=completed)
            self._fixture_metrics.pop()
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
                }
            )

    @pytest.hookimpl(wrapper=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> Any:
        state = self._item_state
        if state is None:
            return (yield)
        original = pyfuncitem.obj
        if state.samples is None:
            state.samples = []
        baseline = self._baseline_function(pyfuncitem) if _AB_KEY in pyfuncitem.stash else None

        if baseline is None:
            # One function made with the plugin, reading the running test's state:
            # no closure (a function and its cells) made per test.
            state.original = original
            measured = self._measured
        else:
            meter, spec, samples, ab = self._meter, state.spec, state.samples, self.ab

            def measured(*args: Any, **kwargs: Any) -> Any:
                return run_ab(original, baseline, args, kwargs, meter, samples, spec, ab)

        pyfuncitem.obj = measured
        try:
            return (yield)
        finally:
            pyfuncitem.obj = original
            state.original = None

    def _baseline_function(self, item: pytest.Function) -> Any:
        """The test's function at the A/B baseline ref, or None (new test, class test)."""
        if self.ab is None or getattr(item, "cls", None) is not None:
            return None
        from pytest_rtgov.store.ab_code import load_baseline_module

        key = str(item.path)
        if key not in self._ab_modules:
            self._ab_modules[key] = load_baseline_module(
                Path(item.path),
                Path(item.config.rootpath),
                Path(self.ab["root"]),
                private_name=f"_rtgov_ab_{len(self._ab_modules)}",
            )
        module = self._ab_modules[key]
        function = getattr(module, item.originalname, None) if module is not None else None
        return function if callable(function) else None

    def _drain(self, when: str) -> dict[str, Any]:
        """What this process measured during the phase ``when``, as builtin types."""
        payload: dict[str, Any] = {"worker": self.worker}
        if self._pending_fixtures:
            payload["fixtures"], self._pending_fixtures = self._pending_fixtures, []
        state, item = self._item_state, self._item
        if state is None:
            return payload
        if when == "call":
            if self._calibration is not None and not self._calibration_sent:
                payload["calibration"] = self._calibration
                self._calibration_sent = True
            if self._record_markers and item is not None:
                payload["markers"] = sorted({escape_text(m.name) for m in item.iter_markers()})
            payload["rounds"] = state.spec.rounds
            payload["warmup"] = state.spec.warmup
            payload["samples"], state.samples = state.samples or [], None
            if item is not None and _USAGE_KEY in item.stash:
                payload["usage_error"] = item.stash[_USAGE_KEY]
        if state.metrics:
            payload["metrics"] = [m.to_dict() for m in state.metrics]
            state.metrics = None
        if when == "teardown":
            self._item = self._item_state = None
        return payload

    def record_metric(self, metric: Metric) -> None:
        """Sink of the ``rtgov`` fixture: attach to the running fixture setup or test."""
        if not (metric.unit.isascii() and metric.name.isascii()):
            metric = dataclasses.replace(
                metric, name=escape_text(metric.name), unit=escape_text(metric.unit)
            )
        if self._fixture_metrics:
            self._fixture_metrics[-1].append(metric)
        elif self._item_state is not None:
            if self._item_state.metrics is None:
                self._item_state.metrics = []
            self._item_state.metrics.append(metric)
        else:
            raise InvalidMetricError(
                f"metric {metric.name!r} recorded outside any test or fixture setup; "
                "record from a test body or a fixture"
            )

    # -- controller side ------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # tryfirst: a worker attaches its payload before xdist sends the report on.
        payload = getattr(report, REPORT_ATTR, None)
        if payload is None:
            if self.is_worker:
                setattr(report, REPORT_ATTR, self._drain(report.when))
            else:
                self._take(report)
            return
        nodeid = report.nodeid  # a property that formats the id: read it once
        acc = self._tests.get(nodeid)
        if acc is None:
            acc = self._tests[nodeid] = _TestAccumulator()
            if self._locations is not None:  # only on GitHub Actions: for ::error lines
                path, lineno, _ = report.location
                self._locations[nodeid] = (path, None if lineno is None else lineno + 1)
        worker = payload.get("worker", MAIN_WORKER)
        if "usage_error" in payload:
            self._usage_errors.append(str(payload["usage_error"]))
        if "calibration" in payload:
            self._calibrations[worker] = int(payload["calibration"]["median_ns"])
            self._calibration_kernel = str(payload["calibration"]["kernel"])
        if len(payload) > 1:
            self._ingest(acc, payload)
        acc.worker = worker
        self._workers.add(worker)
        acc.take_phase(report.when, report.outcome)

    def _take(self, report: pytest.TestReport) -> None:
        """Without xdist: what :meth:`_drain` and the controller side do for a
        report, straight from the measuring state (no payload dict per phase)."""
        nodeid = report.nodeid
        acc = self._tests.get(nodeid)
        if acc is None:
            acc = self._tests[nodeid] = _TestAccumulator(worker=self.worker)
            self._workers.add(self.worker)
        if self._pending_fixtures:
            fixtures, self._pending_fixtures = self._pending_fixtures, []
            self._add_fixtures(fixtures, self.worker)
        when, outcome = report.when, report.outcome
        state = self._item_state
        if state is not None:
            item = self._item
            if when == "call":
                if self._calibration is not None and not self._calibration_sent:
                    self._calibration_sent = True
                    self._calibrations[self.worker] = int(self._calibration["median_ns"])
                    self._calibration_kernel = str(self._calibration["kernel"])
                if self._record_markers and item is not None:
                    acc.markers = tuple(sorted({escape_text(m.name) for m in item.iter_markers()}))
                acc.rounds, acc.warmup = state.spec.rounds, state.spec.warmup
                if state.samples:
                    if acc.samples is None:
                        acc.samples = state.samples
                    else:
                        acc.samples.extend(state.samples)
                state.samples = None
                if item is not None and _USAGE_KEY in item.stash:
                    self._usage_errors.append(str(item.stash[_USAGE_KEY]))
            if state.metrics:
                if acc.metrics is None:
                    acc.metrics = []
                acc.metrics.extend(state.metrics)
                state.metrics = None
            if when == "teardown":
                self._item = self._item_state = None
        acc.take_phase(when, outcome)

    def _ingest(self, acc: _TestAccumulator, payload: dict[str, Any]) -> None:
        worker = str(payload.get("worker", MAIN_WORKER))
        # Payloads come from this plugin's own workers: built from our records and
        # sent as plain builtins, so they are rebuilt without re-validation.
        self._add_fixtures(payload.get("fixtures", ()), worker)
        if "markers" in payload:
            acc.markers = tuple(payload["markers"])
        if "samples" in payload:
            acc.rounds, acc.warmup = payload["rounds"], payload["warmup"]
            if acc.samples is None:
                acc.samples = []
            acc.samples.extend(payload["samples"])
        if "metrics" in payload:
            if acc.metrics is None:
                acc.metrics = []
            acc.metrics.extend(Metric(**m) for m in payload["metrics"])

    def _add_fixtures(self, fixtures: Any, worker: str) -> None:
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
            )
            self._fixture_setups.append((entry, setup))

    def build_record(self, exitstatus: int) -> RunRecord:
        from pytest_rtgov.measure.environment import collect_environment, plugin_versions

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
                )
                for nodeid, acc in self._tests.items()
            ),
            fixture_setups=self._fixture_setups,
        )
        gpu_facts = self._gpu.device_facts() if self._gpu is not None else None
        return RunRecord(
            run_id=self.run_id,
            started_at=_iso(self.started_ns),
            ended_at=_iso(epoch_ns()),
            mode=self.mode,
            exit_status=int(exitstatus),
            pytest_args=tuple(escape_text(a) for a in self.config.invocation_params.args),
            memory_mode=self.memory_mode,
            backend=self.backend,
            workers=tuple(sorted(self._workers)),
            environment={
                escape_text(name): escape_text(value)
                for name, value in collect_environment(
                    backend=self.backend,
                    gpu_facts=gpu_facts,
                    rootdir=Path(self.config.rootpath),
                    plugins=plugin_versions(
                        (dist.project_name, dist.version)
                        for _, dist in self.config.pluginmanager.list_plugin_distinfo()
                    ),
                ).items()
            },
            tests=tests,
            fixtures=fixtures,
            calibration={"kernel": self._calibration_kernel, "workers": dict(self._calibrations)}
            if self._calibrations
            else {},
        )

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.is_worker:
            return
        from pytest_rtgov.store.runs import RunStore

        if self._usage_errors:
            for message in sorted(self._usage_errors):
                sys.stderr.write(f"ERROR: {message}\n")
            session.exitstatus = exitstatus = pytest.ExitCode.USAGE_ERROR

        self.record = self.build_record(exitstatus)
        if self.gatekeeper is not None:
            self.verdict = self.gatekeeper.decide(self.record, int(exitstatus))
            session.exitstatus = self.verdict.exit_status
            self.record = dataclasses.replace(
                self.record,
                exit_status=self.verdict.exit_status,
                gate_results=tuple(r.to_dict() for r in self.verdict.results),
                # Its notes name paths, which need not be UTF-8: escaped as the rest of
                # the record is. The results need not be: gates.toml is UTF-8, and their
                # subjects come from the escaped tests and fixtures.
                verdict=escape_json(self.verdict.to_dict()),
            )
        store = RunStore(self.state_dir)
        try:
            self._encoded = self.record.canonical_json()  # the file, and the ledger's digest
            self.record_path = store.write(self.record, encoded=self._encoded)
        except OSError as exc:  # a disk that filled up during the tests (ENOSPC), EIO...
            # The state directory took a file before the tests (_check_state_dir): what
            # fails now is the disk. Nothing earlier is lost: the writes are atomic, so
            # the last record, ``latest`` and the ledger stay as they were.
            from pytest_rtgov.core.constants import EXIT_INTEGRITY

            path = store.path_for(self.run_id)
            if path.is_file():  # the record was written, its ``latest`` pointer was not
                path = self.state_dir / "latest"
            reason = exc.strerror or str(exc)
            log_event("record.write_failed", level=logging.ERROR, path=str(path), error=reason)
            sys.stderr.write(
                f"pytest-rtgov: could not write the run record ({path}): {reason}; "
                "the ledger, the report and the exports were not written either\n"
            )
            session.exitstatus = EXIT_INTEGRITY
            return
        log_event(
            "record.written",
            run_id=self.run_id,
            path=str(self.record_path),
            tests=len(self.record.tests),
            fixtures=len(self.record.fixtures),
            exit_status=int(exitstatus),
        )
        self._append_to_ledger(session)
        self._write_report()
        self._write_exports(session)

    def _write_exports(self, session: pytest.Session) -> None:
        """``--rtgov-export FORMAT:PATH`` files, and the GitHub Actions step summary and
        annotations; failures are reported, never fatal."""
        from pytest_rtgov.report.ci import github_actions
        from pytest_rtgov.report.export import export

        assert self.record is not None
        for fmt, path in self._export_specs:
            try:
                atomic_write(path, export(self.record, fmt))
                log_event("export.written", format=fmt, path=str(path))
            except (RtgovError, OSError) as exc:
                log_event("export.failed", level=logging.WARNING, format=fmt, error=str(exc))
                sys.stderr.write(f"pytest-rtgov: could not write the {fmt} export: {exc}\n")
        if self._locations is not None:
            try:
                github_actions(self.record, environ=os.environ, locations=self._locations)
            except (RtgovError, OSError) as exc:
                sys.stderr.write(f"pytest-rtgov: GitHub Actions summary not written: {exc}\n")

    def _write_report(self) -> None:
        """The HTML gate report; a failure to write it is reported, never fatal."""
        from pytest_rtgov.publish.report_files import write_report

        assert self.record is not None
        option = self.config.getoption("rtgov_report")
        if option == "off":
            return
        path = Path(option) if option else self.state_dir / "report.html"
        if not path.is_absolute():
            path = Path(self.config.invocation_params.dir) / path
        appended = None
        result = self.ledger_result
        if result is not None and self._run_leaves is not None:
            from pytest_rtgov.store.delta_index import Appended

            if result.size - result.first_index == len(self._run_leaves):  # nothing else
                appended = Appended(self.record, self._run_leaves, result.first_index)
        try:
            self.report_path = write_report(
                path, self.record, state_dir=self.state_dir, trust=self.trust, appended=appended
            )
        except (RtgovError, OSError) as exc:
            log_event("report.write_failed", level=logging.WARNING, error=str(exc))
            sys.stderr.write(f"pytest-rtgov: could not write the HTML report: {exc}\n")
            return
        log_event("report.written", path=str(self.report_path))

    def _append_to_ledger(self, session: pytest.Session) -> None:
        """The record's leaves, baseline refreshes, then a signed checkpoint."""
        from pytest_rtgov.core.constants import EXIT_INTEGRITY
        from pytest_rtgov.core.ledger_records import run_leaves
        from pytest_rtgov.store.ledger import Ledger, append_session

        assert self.record is not None
        leaves = self._run_leaves = run_leaves(self.record, encoded=self._encoded)
        if self.gatekeeper is not None and self.gatekeeper.ledger_leaves:
            leaves = [*leaves, *self.gatekeeper.ledger_leaves]
        origin = f"pytest-rtgov.local/{escape_text(Path(self.config.rootpath).name) or 'project'}"
        try:
            self.ledger_result = append_session(
                Ledger(self.state_dir / "ledger"),
                leaves,
                signer=self.signing.signer,
                origin=origin,
                created_at=self.record.ended_at,
                fsync_each=self.config.getoption("rtgov_ledger_fsync") == "record",
                lock_timeout=self.config.getoption("rtgov_ledger_timeout"),
                on_wait=lambda message: sys.stderr.write(f"pytest-rtgov: {message}\n"),
                sign_uncovered=not self.trust.required,
            )
        except (RtgovError, OSError) as exc:
            self.ledger_error = str(exc)
            log_event("ledger.append_failed", level=logging.ERROR, error=str(exc))
            sys.stderr.write(
                f"pytest-rtgov: ledger not appended: {exc}\n"
                f"pytest-rtgov: the run record is kept at {self.record_path}; "
                "run `rtgov verify` for details\n"
            )
            session.exitstatus = EXIT_INTEGRITY
            return
        result = self.ledger_result
        if result.set_aside is not None:
            log_event(
                "ledger.torn_tail_set_aside", level=logging.WARNING, path=str(result.set_aside)
            )
        log_event(
            "ledger.appended",
            leaves=len(leaves),
            size=result.size,
            root=result.root.hex(),
            checkpoint=str(result.checkpoint_path),
            signed_by=self.signing.verifier.name,
        )

    def _ledger_line(self) -> str | None:
        if self.ledger_error is not None:
            return f"rtgov: ledger NOT appended: {self.ledger_error}"
        result = self.ledger_result
        if result is None:
            return None
        who = self.signing.verifier.name
        if self.signing.local:
            who += " (local key, not in any keyring)"
        line = (
            f"rtgov: ledger {result.size} leaves, root {result.root.hex()[:16]}..., "
            f"checkpoint {result.checkpoint_path} signed by {who}"
        )
        if result.set_aside is not None:
            line += f"; an interrupted append was set aside in {result.set_aside}"
        if result.invalid is not None:
            line += (
                f"\nrtgov: WARNING: leaves from {result.invalid.index} on were not signed but "
                f"set aside in {result.invalid.path}: {result.invalid.reason}"
            )
        if self.report_path is not None:
            line += f"\nrtgov: report {self.report_path}"
        return line

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker or self.record is None:
            return
        from pytest_rtgov.core.constants import EXIT_INTEGRITY
        from pytest_rtgov.report.terminal import render_summary, render_verdict

        verbosity = self.config.get_verbosity()
        if verbosity < -1 and self.verdict is None:
            return
        writer = self.config.get_terminal_writer()
        if verbosity >= -1:
            terminalreporter.write(
                render_summary(
                    self.record,
                    record_path=self.record_path,
                    markup=writer.hasmarkup,
                    width=writer.fullwidth,
                    compact=verbosity < 0,
                    ledger_line=self._ledger_line(),
                )
            )
        if self.verdict is not None:
            # The verdict comes last: the line a CI log reader sees first.
            terminalreporter.write(
                render_verdict(
                    self.verdict,
                    markup=writer.hasmarkup,
                    width=writer.fullwidth,
                    show_all=self.config.getoption("rtgov_show") == "all" or verbosity > 0,
                    compact=verbosity < -1,
                    overridden=(EXIT_INTEGRITY, "the ledger was not appended (above)")
                    if self.ledger_error is not None
                    else None,
                )
            )


def _check_state_dir(state_dir: Path) -> None:
    """Before any test runs: create the state directory, and write (then remove) a small
    file in ``runs/`` and ``ledger/``, so that a directory that is a file, read-only or
    full is a usage error (exit 4) now, not a lost record after the whole session.

    A probe write rather than ``os.access``: root passes any permission check, and
    only a write finds a full disk or a read-only mount."""
    import tempfile

    if state_dir.exists() and not state_dir.is_dir():
        raise pytest.UsageError(
            f"pytest-rtgov: state directory {state_dir} is not usable: it is a file, "
            "not a directory (choose another with --rtgov-dir DIR)"
        )
    from pytest_rtgov.store.files import symlinks_inside

    links = symlinks_inside(state_dir) if state_dir.is_dir() else []
    if links:
        raise pytest.UsageError(
            f"pytest-rtgov: state directory {state_dir} is not usable: {links[0]} is a "
            f"symbolic link (to {os.readlink(links[0])}); rtgov writes only plain files and "
            "folders there, and a link would carry its writes elsewhere: replace it"
            + (f" ({len(links) - 1} more)" if len(links) > 1 else "")
        )
    for directory in (state_dir / "runs", state_dir / "ledger"):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".rtgov-probe-", dir=directory)
            try:
                os.write(fd, b"rtgov\n")
            finally:
                os.close(fd)
                os.unlink(probe)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if isinstance(exc, (FileExistsError, NotADirectoryError)):
                reason = "not a directory"
            raise pytest.UsageError(
                f"pytest-rtgov: state directory {state_dir} is not usable: cannot write a file "
                f"in {directory}: {reason} (choose another with --rtgov-dir DIR)"
            ) from None


def _export_specs(config: pytest.Config) -> list[tuple[str, Path]]:
    """``--rtgov-export FORMAT:PATH`` values, checked before any test runs (exit 4)."""
    from pytest_rtgov.core.constants import EXPORT_FORMATS as FORMATS

    specs = []
    for value in config.getoption("rtgov_export") or []:
        fmt, sep, path = str(value).partition(":")
        if not sep or fmt not in FORMATS or not path:
            raise pytest.UsageError(
                f"invalid value for --rtgov-export, expected FORMAT:PATH with FORMAT one of "
                f"{', '.join(FORMATS)} (not {value!r})"
            )
        target = Path(path)
        if not target.is_absolute():
            target = Path(config.invocation_params.dir) / target
        specs.append((fmt, target))
    return specs


_SPEC_KEY = pytest.StashKey[RoundsSpec]()


def _is_direct_param(fixturedef: Any) -> bool:
    """``@pytest.mark.parametrize`` arguments are desugared into pseudo-fixtures that
    only hand out the parameter; measuring them would double every test's cost."""
    return getattr(fixturedef.func, "__name__", "") == "get_direct_param_fixture_func"


def _closest_rtgov_marker(item: pytest.Item, parents: dict[int, Any]) -> Any:
    """``item.get_closest_marker("rtgov")``, the parents' answer cached in ``parents``
    (by id; a collection's nodes outlive it): walking every item's whole chain of
    nodes costs microseconds per test."""
    for mark in item.own_markers:
        if mark.name == "rtgov":
            return mark
    parent = item.parent
    key = id(parent)
    if key not in parents:
        found, node = None, parent
        while node is not None and found is None:
            found = next((m for m in node.own_markers if m.name == "rtgov"), None)
            node = node.parent
        parents[key] = found
    return parents[key]


_USAGE_KEY = pytest.StashKey[str]()
_AB_KEY = pytest.StashKey[bool]()


def _make_measured(plugin: RtgovPlugin) -> Any:
    """The stand-in for a test function: its rounds, each a measured region."""
    meter = plugin._meter

    def measured(*args: Any, **kwargs: Any) -> Any:
        state: Any = plugin._item_state  # set by the call wrapper, with its samples list
        original, spec, samples = state.original, state.spec, state.samples
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


def _raiser(message: str) -> Any:
    def invalid_rtgov_marker(*args: Any, **kwargs: Any) -> None:
        raise pytest.UsageError(message)

    return invalid_rtgov_marker
