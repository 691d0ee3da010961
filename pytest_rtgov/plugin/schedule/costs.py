"""The ``lpt`` and ``group`` policies' cost model: each test's median call wall time over
the state directory's last run records.

Read from the run records (``runs/*.json``, the newest :data:`HISTORY` by run id), not
the delta index: a test's call wall time is the sum of its samples' ``wall_ns`` (every
round, warm-ups included: what the worker spends), which the records keep per test and
the index only as gated metrics. A record that cannot be read is skipped: costs only
order the plan, and the plan records their digest (``cost_model``).
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

__all__ = ["HISTORY", "history_costs", "median_costs"]

HISTORY = 5


def median_costs(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per node id, the median of its seconds over the runs that have it."""
    seen: dict[str, list[float]] = {}
    for run in runs:
        for nodeid, seconds in run.items():
            seen.setdefault(nodeid, []).append(seconds)
    return {nodeid: statistics.median(values) for nodeid, values in sorted(seen.items())}


def history_costs(config: pytest.Config) -> dict[str, float]:
    """The cost model of this session's state directory (``--rtgov-dir``)."""
    from pytest_rtgov.errors import RtgovError
    from pytest_rtgov.store.paths import Paths
    from pytest_rtgov.store.runs import RunStore

    try:
        paths = Paths.resolve(
            invocation=Path(config.invocation_params.dir),
            rootdir=Path(config.rootpath),
            state_dir=config.getoption("rtgov_dir"),
            gates=None,
            keyring=None,
        )
        store = RunStore(paths.state_dir)
        run_ids = store.run_ids()[-HISTORY:]
    except (RtgovError, OSError):
        return {}
    runs = []
    for run_id in run_ids:
        try:
            record = store.read(run_id)
        except (RtgovError, OSError):
            continue
        runs.append(
            {t.nodeid: sum(s.wall_ns for s in t.samples) / 1e9 for t in record.tests if t.samples}
        )
    return median_costs(runs)
