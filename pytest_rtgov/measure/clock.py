"""The plugin's own clock, and the context-switch counter of A/B rounds.

Bound at import time, so tests that monkeypatch ``time.perf_counter_ns`` or
``time.process_time_ns`` (freezegun and friends) cannot disturb our measurements.
"""

from __future__ import annotations

from time import perf_counter_ns as wall_ns
from time import process_time_ns as cpu_ns
from time import time_ns as epoch_ns

try:
    from resource import RUSAGE_SELF, getrusage
except ImportError:  # Windows: no getrusage
    getrusage = None  # type: ignore[assignment]

__all__ = ["cpu_ns", "epoch_ns", "voluntary_switches", "wall_ns"]


def voluntary_switches() -> int | None:
    """The process's voluntary context switches so far (it blocked: I/O, sleep, a lock,
    a device), or None without getrusage. Involuntary ones (a core taken away by
    other processes) are not counted: they are what load does, not what code does."""
    if getrusage is None:
        return None
    return getrusage(RUSAGE_SELF).ru_nvcsw
