"""A calibration kernel: a fixed numpy workload timed in every process that runs tests.

Dividing a test's time by its process's calibration time expresses it in
"calibration units", meant to cancel how fast this machine, or this session, is.
Whether that helps is measured, not assumed: ``benches/calibration.py`` compares the
between-session spread of raw and calibrated kernel times (docs/benchmarks.md).
"""

from __future__ import annotations

import statistics
from typing import Any

from pytest_rtgov.measure.clock import wall_ns

__all__ = ["CALIBRATION_KERNEL", "calibrate"]

CALIBRATION_KERNEL = "rtgov-calibration-1: 64x64 matmul x8, sort 20k, exp 50k (float64)"


def calibrate(repeats: int = 15) -> dict[str, Any]:
    """Median wall time of the calibration kernel over ``repeats`` runs (after 2 warm-ups)."""
    import numpy as np

    rng = np.random.Generator(np.random.PCG64(20261122))
    a = rng.standard_normal((64, 64))
    v = rng.standard_normal(20_000)
    w = rng.standard_normal(50_000)

    def kernel() -> None:
        for _ in range(8):
            a @ a
        np.sort(v)
        np.exp(w)

    samples = []
    for index in range(repeats + 2):
        start = wall_ns()
        kernel()
        elapsed = wall_ns() - start
        if index >= 2:
            samples.append(elapsed)
    return {"kernel": CALIBRATION_KERNEL, "median_ns": int(statistics.median(samples))}
