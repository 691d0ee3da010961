"""Time budgets: tell waiting from work when a wall-time budget breaches.

A ``max`` on ``wall_time`` counts every moment the test took, including the time it
waited: descheduled by other processes on a loaded machine, asleep, blocked on I/O or
on a GPU. Such a budget still breaches (waiting may be the very cost it limits), but
when the CPU-time median of the same rounds stays within the maximum, the breach says
so, so that a reader can tell load from work. A budget meant for CPU-bound code should
be set on ``cpu_time``, which load does not stretch (docs/gates.md, "Timing budgets").

>>> from pytest_rtgov.core.gates_config import Gate
>>> gate = Gate(name="t", metric="wall_time", maximum=0.1)
>>> waiting_note(gate, 0.25, [0.02, 0.03, 0.02])
['CPU time 0.02 within max 0.1: the rest was waiting (a loaded machine, sleep, I/O); \
budget CPU-bound code on cpu_time']
>>> waiting_note(gate, 0.25, [0.2, 0.3, 0.25])
[]
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from pytest_rtgov.core.gates_config import Gate

__all__ = ["waiting_note"]


def waiting_note(gate: Gate, wall_median: float, cpu_seconds: Sequence[float]) -> list[str]:
    """A reason to add to a breached wall-time maximum whose CPU time stayed within it.

    Empty unless ``gate`` is an uncalibrated ``wall_time`` gate with a ``max`` that
    ``wall_median`` (seconds) exceeds and the median of ``cpu_seconds`` (the same
    rounds' CPU times) does not.
    """
    if gate.metric != "wall_time" or gate.calibrated or gate.maximum is None:
        return []
    if wall_median <= gate.maximum or not cpu_seconds:
        return []
    cpu = statistics.median(cpu_seconds)
    if cpu > gate.maximum:
        return []
    return [
        f"CPU time {cpu:g} within max {gate.maximum:g}: the rest was waiting "
        "(a loaded machine, sleep, I/O); budget CPU-bound code on cpu_time"
    ]
