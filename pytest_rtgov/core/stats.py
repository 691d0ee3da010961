"""Summaries of samples for display (gating statistics come with the gates)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import NamedTuple

from pytest_rtgov.core.records import Sample

__all__ = ["SampleSummary", "summarize"]


class SampleSummary(NamedTuple):
    n: int
    wall_median_ns: float
    wall_min_ns: int
    cpu_median_ns: float
    peak_memory_max: int | None
    gpu_time_median_ns: float | None


def summarize(samples: Iterable[Sample]) -> SampleSummary | None:
    """Median and extremes over measured (non-warm-up) samples; None if there are none.

    Incomplete samples (the region raised) count only when no complete one exists.
    """
    measured = [s for s in samples if not s.warmup]
    if len(measured) == 1:  # the common case (one round): no sorting, no statistics
        s = measured[0]
        return SampleSummary(1, s.wall_ns, s.wall_ns, s.cpu_ns, s.peak_memory_bytes, s.gpu_time_ns)
    complete = [s for s in measured if s.completed] or measured
    if not complete:
        return None
    peaks = [s.peak_memory_bytes for s in complete if s.peak_memory_bytes is not None]
    gpu = [s.gpu_time_ns for s in complete if s.gpu_time_ns is not None]
    return SampleSummary(
        n=len(complete),
        wall_median_ns=statistics.median(s.wall_ns for s in complete),
        wall_min_ns=min(s.wall_ns for s in complete),
        cpu_median_ns=statistics.median(s.cpu_ns for s in complete),
        peak_memory_max=max(peaks) if peaks else None,
        gpu_time_median_ns=statistics.median(gpu) if gpu else None,
    )
