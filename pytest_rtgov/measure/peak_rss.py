"""The resident set probe where Linux's ``/proc/self/clear_refs`` is not there (macOS,
Windows, the BSDs): the process's peak resident set, read when a region opens and closes.

That peak cannot be reset, so a region is measured only when it raised it: then the
region's peak is the new process peak (exact), less the resident set at its start. A
region that stayed under an earlier peak is not measured (None, never 0 B): its own
peak lies somewhere below that earlier one. On Linux the ``rss`` probe of
:mod:`pytest_rtgov.measure.memory` resets the mark per region instead and sees every
region; this one is its fallback elsewhere (docs/memory.md "Platforms").

The current resident set comes from psutil (a core dependency off Linux); the peak from
``getrusage`` (``ru_maxrss``: bytes on macOS, KiB elsewhere) or, on Windows, psutil's
``peak_wset``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

__all__ = ["PeakRssProbe", "peak_rss_available"]


def _psutil() -> Any | None:
    try:
        import psutil
    except ImportError:
        return None
    return psutil


def peak_rss_available() -> bool:
    """Whether this probe can run here: psutil is installed."""
    return _psutil() is not None


def _peak_reader(process: Any) -> Callable[[], int]:
    """The process's peak resident set in bytes, as this platform reports it."""
    if sys.platform == "win32":
        return lambda: int(process.memory_info().peak_wset)
    from resource import RUSAGE_SELF, getrusage

    scale = 1 if sys.platform == "darwin" else 1024
    return lambda: int(getrusage(RUSAGE_SELF).ru_maxrss) * scale


class PeakRssProbe:
    """Peak resident set of regions that raise the process's peak; None for the others.

    Regions nest without bookkeeping: the process peak only grows, so each open region
    keeps its own start (resident set, peak so far)."""

    mode = measured_by = "rss"
    __slots__ = ("_open", "_peak", "_rss")

    def __init__(self) -> None:
        psutil = _psutil()
        if psutil is None:
            from pytest_rtgov.extras import MissingExtraError

            raise MissingExtraError(
                "--rtgov-memory rss needs psutil where Linux's /proc/self/clear_refs is "
                "not there: pip install psutil (installed with pytest-rtgov off Linux)"
            )
        process = psutil.Process()
        self._rss: Callable[[], int] = lambda: int(process.memory_info().rss)
        self._peak = _peak_reader(process)
        self._open: list[tuple[int, int]] = []

    def start(self) -> None:
        self._open.append((self._rss(), self._peak()))

    def stop(self) -> tuple[int | None, str | None]:
        base, peak_before = self._open.pop()
        peak = self._peak()
        if peak <= peak_before:
            return None, None  # under an earlier peak: not measured
        return max(peak - base, 0), None

    def close(self) -> None:
        self._open.clear()
