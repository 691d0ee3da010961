"""Which samples count, and the statistics every face shows of them (pure).

One rule decides which samples of a test count (:func:`counted`): those of the
current code, not warm-up rounds, and completed. The terminal tables, the HTML
report, the exports, the delta index and the gates all read samples through it, so
one test shows one median everywhere. A/B pairs (current against baseline code,
measured interleaved) are summarised by :func:`paired_effect`, used by both the
gate and the plugin's decision to re-measure.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from pytest_rtgov.core.records import Sample

__all__ = [
    "PairedEffect",
    "SampleSummary",
    "counted",
    "counts",
    "measured",
    "paired_effect",
    "summarize",
]


def measured(
    samples: Iterable[Sample], variant: str = "current", block: int | None = None
) -> list[Sample]:
    """The completed, non-warm-up samples of one code variant (and one A/B block)."""
    return [
        s
        for s in samples
        if not s.warmup
        and s.completed
        and s.variant == variant
        and (block is None or s.block == block)
    ]


def counts(sample: Sample) -> bool:
    """Does this sample count for its test: current code, not warm-up, completed?"""
    return not sample.warmup and sample.completed and sample.variant == "current"


def counted(samples: Iterable[Sample]) -> list[Sample]:
    """The samples that count for a test: current code, not warm-up, completed.

    >>> samples = [Sample(5, 5), Sample(1, 1, variant="baseline"), Sample(9, 9, warmup=True)]
    >>> [s.wall_ns for s in counted([*samples, Sample(7, 7, completed=False)])]
    [5]
    """
    return [s for s in samples if counts(s)]


class SampleSummary(NamedTuple):
    n: int
    wall_median_ns: float
    cpu_median_ns: float
    peak_memory_max: int | None


def summarize(samples: Iterable[Sample]) -> SampleSummary | None:
    """Medians and extremes over the :func:`counted` samples; None if none count."""
    chosen = counted(samples)
    if not chosen:
        return None
    if len(chosen) == 1:  # the common case (one round): no sorting, no statistics
        s = chosen[0]
        return SampleSummary(1, s.wall_ns, s.cpu_ns, s.peak_memory_bytes)
    peaks = [s.peak_memory_bytes for s in chosen if s.peak_memory_bytes is not None]
    return SampleSummary(
        n=len(chosen),
        wall_median_ns=statistics.median(s.wall_ns for s in chosen),
        cpu_median_ns=statistics.median(s.cpu_ns for s in chosen),
        peak_memory_max=max(peaks) if peaks else None,
    )


class PairedEffect(NamedTuple):
    """The effect of A/B pairs: the median paired ratio current / baseline.

    ``worse`` is the effect in the metric's units (``ratio * baseline - baseline``),
    ``relative`` the ratio less one; both are positive when the current code is slower.
    """

    ratio: float
    current: float
    baseline: float

    @property
    def relative(self) -> float:
        return self.ratio - 1

    @property
    def delta(self) -> float:
        return self.current - self.baseline

    @property
    def worse(self) -> float:
        return self.ratio * self.baseline - self.baseline


def paired_effect(pairs: Sequence[tuple[float, float]]) -> PairedEffect | None:
    """Median paired ratio and the medians of each side; None without pairs.

    >>> paired_effect([(2.0, 1.0), (3.0, 1.0), (1.0, 1.0)])
    PairedEffect(ratio=2.0, current=2.0, baseline=1.0)
    """
    if not pairs:
        return None
    ratios = [c / b for c, b in pairs if b > 0]
    return PairedEffect(
        ratio=statistics.median(ratios) if ratios else 1.0,
        current=statistics.median(c for c, _ in pairs),
        baseline=statistics.median(b for _, b in pairs),
    )
