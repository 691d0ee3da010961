"""Which regions the ``auto`` memory mode measures precisely.

Precise (tracemalloc) measurement costs a hook on every allocation, so ``auto`` pays it
only where something needs it: the tests and fixtures a ``peak_memory`` gate selects
(by the same test globs, markers and fixture names as ``core.subjects.selects``) and the
tests marked ``@pytest.mark.rtgov(memory=True)``. The controller derives the selection
from the gates (:func:`memory_selection`; a recording session from the gates file when
there is one, :func:`selection_of_file`); xdist workers get it through ``workerinput``
(``plugin/transport.py``); collection marks each precise test (``plugin/marks.py``,
:data:`PRECISE_KEY`); the capture asks the probe for a precise region
(:meth:`FixtureSelection.wants`, ``AutoProbe.precise_next``).
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

import pytest

__all__ = ["PRECISE_KEY", "FixtureSelection", "memory_selection", "selection_of_file"]

# Set on the items whose regions the auto mode measures precisely.
PRECISE_KEY = pytest.StashKey[bool]()
MEMORY_METRIC = "peak_memory"


def memory_selection(gates: Any) -> dict[str, list[str]] | None:
    """``{"tests", "markers", "fixtures"}`` of the ``peak_memory`` gates in ``gates``
    (a ``core.gates_config.GatesConfig``), or None when no gate judges memory."""
    memory = [g for g in gates.gates if g.metric == MEMORY_METRIC]
    if not memory:
        return None
    return {
        "tests": sorted({t for g in memory for t in g.tests}),
        "markers": sorted({m for g in memory for m in g.markers}),
        "fixtures": sorted({f for g in memory for f in g.fixtures}),
    }


def selection_of_file(path: Path) -> dict[str, list[str]] | None:
    """:func:`memory_selection` of the gates file at ``path``, for a recording session
    (``--rtgov``): its records measure precisely what a later gate would judge. None
    when there is no such file, or it is not valid: only a gated session reports that."""
    if not path.is_file():
        return None
    from pytest_rtgov.core.gates_config import GatesConfigError
    from pytest_rtgov.store.gates_file import load_gates

    try:
        return memory_selection(load_gates(path))
    except GatesConfigError:
        return None


class FixtureSelection:
    """Whether a fixture's setup is measured precisely: its name matches a fixture glob
    of a ``peak_memory`` gate. Answers are kept per name (one glob match per fixture)."""

    __slots__ = ("_globs", "_known")

    def __init__(self, selection: dict[str, list[str]] | None) -> None:
        self._globs = tuple(selection["fixtures"]) if selection else ()
        self._known: dict[str, bool] = {}

    def wants(self, name: str) -> bool:
        known = self._known.get(name)
        if known is None:
            known = self._known[name] = any(fnmatch.fnmatchcase(name, g) for g in self._globs)
        return known
