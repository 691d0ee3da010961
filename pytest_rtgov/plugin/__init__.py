"""pytest entry point: options, the ``rtgov`` marker and fixture.

The measuring role plugins (``plugin/session.py`` registers them) exist only when
``--rtgov`` or ``--rtgov-gate`` is given; otherwise this module adds one fixture and
nothing runs per test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pytest_rtgov.plugin.api import Rtgov
from pytest_rtgov.plugin.options import (
    RtgovOptionWarning,
    add_options,
    header_line,
    merge_ini,
    warn_ignored_options,
)

__all__ = ["RtgovOptionWarning", "rtgov"]

# This module is pytest's entry point and loads in every session, active or not:
# it imports nothing heavy (records, probes and rich load only when rtgov is on).


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)  # every --rtgov* option, and its rtgov_* ini key


def pytest_configure(config: pytest.Config) -> None:
    # Not tryfirst: conftests' pytest_configure run before it, as before (the gates file
    # is checked against the markers they register); only this plugin reads its options.
    merge_ini(config)  # first: every getoption below and in the role plugins sees it
    warn_ignored_options(config)
    config.addinivalue_line(
        "markers",
        "rtgov(rounds=1, warmup=0, memory=False): run the test body warmup+rounds times, "
        "each measured; memory=True: peak memory measured precisely in the auto memory mode.",
    )
    if config.getoption("rtgov_shard") is not None:
        from pytest_rtgov.plugin.shard import register as register_shard

        register_shard(config)
    if _scheduled(config):
        from pytest_rtgov.plugin.schedule import register as register_schedule

        register_schedule(config)
    if config.getoption("rtgov") or config.getoption("rtgov_gate"):
        from pytest_rtgov.plugin.session import register

        register(config)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Here, in the entry point registered before any conftest, and trylast: after -k/-m
    # deselection and other plugins' reordering, and before a conftest's own trylast
    # reordering, which the schedule check then names (plugin/schedule).
    if _scheduled(config):
        from pytest_rtgov.plugin.schedule import reorder

        reorder(config, items)


def _scheduled(config: pytest.Config) -> bool:
    return any(
        config.getoption(key) is not None for key in ("rtgov_schedule", "rtgov_schedule_plan")
    )


def pytest_report_header(config: pytest.Config) -> str:
    from pytest_rtgov.plugin.settings import SETTINGS_KEY  # light: no probes, no records

    return header_line(config, config.stash.get(SETTINGS_KEY, None))


def pytest_unconfigure(config: pytest.Config) -> None:
    if config.getoption("rtgov") or config.getoption("rtgov_gate"):
        from pytest_rtgov.plugin.session import unregister

        unregister(config)


@pytest.fixture
def rtgov_rng(request: pytest.FixtureRequest) -> Any:
    """A ``numpy.random.Generator`` seeded with this test's own seed: from
    ``--rtgov-schedule``'s seed (0 without it) and the node id, whatever ran before."""
    from pytest_rtgov.plugin.schedule import rng_for

    return rng_for(request)


@pytest.fixture(scope="session")
def rtgov(pytestconfig: pytest.Config) -> Iterator[Rtgov]:
    """Record ML metrics: ``rtgov.record("val_accuracy", acc, higher_is_better=True)``.

    Session-scoped so that session fixtures (a trained model) can record too; each
    metric is attributed to the fixture setup or test running when it is recorded.
    """
    from pytest_rtgov.errors import RtgovError
    from pytest_rtgov.plugin.settings import CAPTURE_KEY  # light: no probes, no records

    capture = pytestconfig.stash.get(CAPTURE_KEY, None)
    if capture is None:
        yield Rtgov(None)
    else:
        # The artifact store loads the signing key and imports cryptography: here, outside
        # any measured region, not in the first fixture that saves an artifact (where it
        # added ~1.2 MB and its import time to that fixture's peak and time, in record
        # sessions and xdist workers only: a gated controller had loaded its keys before).
        # A key that cannot be loaded fails where it did before: when an artifact is saved.
        try:
            capture.artifacts()
        except RtgovError:
            pass
        yield Rtgov(
            capture.record_metric,
            artifacts=capture.artifacts,
            progress=capture.progress,
            checkpoints=capture,
        )
