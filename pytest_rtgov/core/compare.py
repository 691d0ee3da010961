"""Compare two runs (or a run and the baseline) row by row, and say what changed.

Each side maps ``(subject, metric)`` to ``(value, q1, q3, n)``: a measured metric's
median, quartiles and sample count, or a recorded value (``n = 1``, quartiles equal
to the value, or NaN for digests). A row is *changed* when:

- a digest differs, or the row exists on one side only;
- a recorded number differs at all;
- a measured time moved by at least ``threshold_pct`` percent AND the interquartile
  ranges of the two sides do not overlap; with fewer than 3 samples on a side there
  is no noise estimate, and a time is not judged (shown with ``--all``, marked);
- a measured memory figure moved by at least ``threshold_pct`` percent (and, with 3
  or more samples on both sides, the ranges do not overlap).

The default threshold, 10%, is the run-to-run noise of kernel timings on a shared
2-core machine (docs/measurements.md): session-to-session comparisons are
noisier than the same-process A/B gates, and this view must not cry wolf.

>>> a = {("t", "wall_time"): (1.0, 0.95, 1.05, 7), ("t", "acc"): (0.9, 0.9, 0.9, 1)}
>>> b = {("t", "wall_time"): (1.5, 1.45, 1.6, 7), ("t", "acc"): (0.9, 0.9, 0.9, 1)}
>>> [r.metric for r in compare_values(a, b) if r.changed]
['wall_time']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_rtgov.core.format import format_change
from pytest_rtgov.core.metrics import BUILTIN_METRICS

__all__ = ["DEFAULT_THRESHOLD_PCT", "Row", "compare_values"]

DEFAULT_THRESHOLD_PCT = 10.0
TIMES = tuple(m.name for m in BUILTIN_METRICS.values() if m.is_time)
MEMORY = tuple(m.name for m in BUILTIN_METRICS.values() if not m.is_time)
MIN_SAMPLES = 3

Side = tuple[Any, float, float, int]


@dataclass(frozen=True, slots=True)
class Row:
    subject: str
    metric: str
    a: Any
    b: Any
    delta: float | None
    relative: float | None
    changed: bool
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def _row(key: tuple[str, str], a: Side | None, b: Side | None, threshold_pct: float) -> Row:
    subject, metric = key
    if a is None or b is None:
        side = "only in B" if a is None else "only in A"
        return Row(subject, metric, a and a[0], b and b[0], None, None, True, side)
    (va, a_lo, a_hi, na), (vb, b_lo, b_hi, nb) = a, b
    if isinstance(va, str) or isinstance(vb, str) or va is None or vb is None:
        same = va == vb
        return Row(subject, metric, va, vb, None, None, not same, "" if same else "differs")
    delta = vb - va
    relative = delta / abs(va) if va else (0.0 if not delta else None)
    if metric not in TIMES and metric not in MEMORY:  # a recorded number
        changed = delta != 0
        return Row(subject, metric, va, vb, delta, relative, changed, "differs" if changed else "")
    big = relative is None or abs(relative) * 100 >= threshold_pct
    enough = na >= MIN_SAMPLES and nb >= MIN_SAMPLES
    apart = (vb > a_hi and va < b_lo) if delta > 0 else (vb < a_lo and va > b_hi)
    if metric in TIMES and not enough:
        why = f"not judged: {min(na, nb)} sample(s), no noise estimate" if big else ""
        return Row(subject, metric, va, vb, delta, relative, False, why)
    changed = big and (apart if enough else True)
    why = ""
    if changed:
        pct = format_change(metric, va, vb) if relative is not None else "from 0"
        why = f"{pct}, IQRs apart" if enough else pct
    return Row(subject, metric, va, vb, delta, relative, changed, why)


def compare_values(
    a: Mapping[tuple[str, str], Side],
    b: Mapping[tuple[str, str], Side],
    *,
    threshold_pct: float = DEFAULT_THRESHOLD_PCT,
) -> list[Row]:
    """Every (subject, metric) of either side, sorted, with the changed flag."""
    return [_row(key, a.get(key), b.get(key), threshold_pct) for key in sorted(set(a) | set(b))]
