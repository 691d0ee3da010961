"""pytest-rtgov: noise-aware, tamper-evident regression gates for ML kernels.

The public API is small: the ``@stage`` fixture decorator (:mod:`pytest_rtgov.plugin.stages`),
the ``rtgov`` fixture (see :class:`pytest_rtgov.plugin.api.Rtgov`)
and the record types that ``rtgov show`` and the run files use.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "FixtureEntry",
    "Metric",
    "RunRecord",
    "Sample",
    "StageResult",
    "TestEntry",
    "__version__",
    "stage",
]


def __getattr__(name: str) -> Any:
    # Keep import cheap: pytest loads this package for every session via the entry
    # point, whether or not rtgov is switched on.
    if name == "__version__":
        from importlib.metadata import version

        return version("pytest-rtgov")
    if name in ("FixtureEntry", "Metric", "RunRecord", "Sample", "TestEntry"):
        from pytest_rtgov.core import records

        return getattr(records, name)
    if name in ("stage", "StageResult"):
        from pytest_rtgov.plugin import stages

        return getattr(stages, name)
    raise AttributeError(name)
