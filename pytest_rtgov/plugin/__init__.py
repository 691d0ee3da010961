"""pytest entry point: options, the ``rtgov`` marker and fixture.

The measuring role plugins (``plugin/session.py`` registers them) exist only when
``--rtgov`` or ``--rtgov-gate`` is given; otherwise this module adds one fixture and
nothing runs per test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_rtgov.core.constants import DEFAULT_MEMORY_MODE, MEMORY_MODES
from pytest_rtgov.plugin.api import Rtgov

__all__ = ["rtgov"]

# This module is pytest's entry point and loads in every session, active or not:
# it imports nothing heavy (records, probes and rich load only when rtgov is on).


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rtgov", "regression gates and telemetry (pytest-rtgov)")
    group.addoption(
        "--rtgov",
        action="store_true",
        default=False,
        help="measure every test and fixture setup and write a run record.",
    )
    group.addoption(
        "--rtgov-gate",
        action="store_true",
        default=False,
        help="like --rtgov, then gate the results against the baseline (gates.toml).",
    )
    group.addoption(
        "--rtgov-dir",
        default=".rtgov",
        metavar="DIR",
        help="state directory for run records and captures (default: .rtgov).",
    )
    group.addoption(
        "--rtgov-memory",
        default=DEFAULT_MEMORY_MODE,
        choices=MEMORY_MODES,
        help=f"how peak memory is measured (default: {DEFAULT_MEMORY_MODE}: precisely for "
        "what a peak_memory gate or memory=True marker selects, the resident set elsewhere).",
    )
    group.addoption(
        "--rtgov-gates",
        default=None,
        metavar="PATH",
        help="gates file (default: gates.toml in the rootdir).",
    )
    group.addoption(
        "--rtgov-update-baseline",
        action="store_true",
        default=False,
        help="with --rtgov-gate: refresh the baseline from this run's passed subjects.",
    )
    group.addoption(
        "--rtgov-require-baseline",
        action="store_true",
        default=False,
        help="with --rtgov-gate: fail when there is no baseline to compare with (for CI).",
    )
    group.addoption(
        "--rtgov-bootstrap-baseline",
        action="store_true",
        default=False,
        help="with --rtgov-gate: record this run as the baseline where there is none, or add "
        "this machine's measurements to the committed baseline (needed with CI=true, or when "
        "the ledger recorded a baseline that is gone).",
    )
    group.addoption(
        "--rtgov-reason",
        default=None,
        metavar="TEXT",
        help="why the baseline is refreshed (recorded in the audit log; required when CI=true).",
    )
    group.addoption(
        "--rtgov-ab-ref",
        default=None,
        metavar="REF",
        help="git ref of the baseline code for A/B timing gates (default: ab_ref in gates.toml).",
    )
    group.addoption(
        "--rtgov-calibrate",
        action="store_true",
        default=False,
        help="time the calibration kernel in every process (implied by calibrated gates).",
    )
    group.addoption(
        "--rtgov-show",
        default="breaches",
        choices=("breaches", "all"),
        help="gate results to show: breaches and notices (default), or all.",
    )
    group.addoption(
        "--rtgov-signing-key",
        default=None,
        metavar="PATH",
        help="key that signs checkpoints, baselines and artifacts (default: $RTGOV_SIGNING_KEY, "
        "else a local untrusted key in the state directory).",
    )
    group.addoption(
        "--rtgov-keyring",
        default=None,
        metavar="PATH",
        help="trusted public keys (default: rtgov.keyring in the rootdir).",
    )
    group.addoption(
        "--rtgov-require-signature",
        action="store_true",
        default=False,
        help="refuse keys and signatures outside the keyring (implied by CI=true).",
    )
    group.addoption(
        "--rtgov-report",
        default=None,
        metavar="PATH",
        help="self-contained HTML gate report (default: report.html in the state directory; "
        "'off': none).",
    )
    group.addoption(
        "--rtgov-ledger-fsync",
        default="session",
        choices=("record", "session"),
        help="fsync the ledger once per session, after its last record and before its "
        "checkpoint is signed (default: group commit), or after every record.",
    )
    group.addoption(
        "--rtgov-ledger-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="wait at most this long for another writer's ledger lock, then exit 7 "
        "(default: $RTGOV_LEDGER_TIMEOUT, else 60).",
    )
    group.addoption(
        "--rtgov-export",
        action="append",
        default=[],
        metavar="FORMAT:PATH",
        help="also write the run as json|prometheus|otlp|junit|markdown to PATH (repeatable).",
    )
    group.addoption(
        "--rtgov-shard",
        default=None,
        metavar="I/N",
        help="run only shard I of N (1-based), split by node id; merge shards with rtgov merge.",
    )
    group.addoption(
        "--rtgov-log-json",
        default=None,
        metavar="PATH",
        help="append pytest-rtgov's log events to PATH as JSON lines.",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "rtgov(rounds=1, warmup=0, memory=False): run the test body warmup+rounds times, "
        "each measured; memory=True: peak memory measured precisely in the auto memory mode.",
    )
    if config.getoption("rtgov_shard") is not None:
        from pytest_rtgov.plugin.shard import register as register_shard

        register_shard(config)
    if config.getoption("rtgov") or config.getoption("rtgov_gate"):
        from pytest_rtgov.plugin.session import register

        register(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    if config.getoption("rtgov") or config.getoption("rtgov_gate"):
        from pytest_rtgov.plugin.session import unregister

        unregister(config)


@pytest.fixture(scope="session")
def rtgov(pytestconfig: pytest.Config) -> Iterator[Rtgov]:
    """Record ML metrics: ``rtgov.record("val_accuracy", acc, higher_is_better=True)``.

    Session-scoped so that session fixtures (a trained model) can record too; each
    metric is attributed to the fixture setup or test running when it is recorded.
    """
    from pytest_rtgov.plugin.settings import CAPTURE_KEY  # light: no probes, no records

    capture = pytestconfig.stash.get(CAPTURE_KEY, None)
    if capture is None:
        yield Rtgov(None)
    else:
        yield Rtgov(capture.record_metric, artifacts=capture.artifacts, progress=capture.progress)
