"""The arithmetic of one gate rule: how much worse, relative change, why a budget or a
regression rule fails, significance p-values (:mod:`pytest_rtgov.core.rank_tests`), and
the threshold a gate compares against.

Pure. :mod:`pytest_rtgov.core.gates` applies these to each subject a gate selects.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pytest_rtgov.core.format import format_number
from pytest_rtgov.core.gates_config import Gate
from pytest_rtgov.core.rank_tests import mann_whitney_greater_p, wilcoxon_greater_p

__all__ = [
    "budget_reasons",
    "gate_threshold",
    "mann_whitney_worse_p",
    "regression_reasons",
    "relative_change",
    "wilcoxon_worse_p",
    "worse_by",
]


def mann_whitney_worse_p(current: Sequence[float], baseline: Sequence[float]) -> float:
    """One-sided p-value that ``current`` tends to be larger than ``baseline``.

    Mann-Whitney U as scipy computes it (:mod:`pytest_rtgov.core.rank_tests`: exact for
    small samples without ties, normal approximation with tie correction otherwise).
    Identical samples give p >= 0.5.
    """
    if len(set(current) | set(baseline)) == 1:
        return 1.0
    return mann_whitney_greater_p(current, baseline)


def worse_by(current: float, baseline: float, higher_is_better: bool) -> float:
    """How much worse current is than baseline, in metric units (negative: better)."""
    return baseline - current if higher_is_better else current - baseline


def relative_change(worse: float, baseline: float) -> float:
    if baseline == 0:
        return math.inf if worse > 0 else 0.0
    return worse / abs(baseline)


def regression_reasons(gate: Gate, worse: float, relative: float) -> list[str]:
    reasons = []
    if gate.max_regression_pct is not None and relative * 100 > gate.max_regression_pct:
        shown = "inf" if math.isinf(relative) else f"{relative * 100:.1f}%"
        reasons.append(f"{shown} worse > {gate.max_regression_pct:g}%")
    if gate.max_regression is not None and worse > gate.max_regression:
        reasons.append(f"{format_number(worse)} worse > {format_number(gate.max_regression)}")
    return reasons


def budget_reasons(minimum: float | None, maximum: float | None, value: float) -> list[str]:
    reasons = []
    if minimum is not None and value < minimum:
        reasons.append(f"{format_number(value)} < min {format_number(minimum)}")
    if maximum is not None and value > maximum:
        reasons.append(f"{format_number(value)} > max {format_number(maximum)}")
    return reasons


def wilcoxon_worse_p(pairs: Sequence[tuple[float, float]]) -> float:
    """One-sided p-value that current exceeds baseline, paired: Wilcoxon signed-rank
    test on log(current / baseline) as scipy computes it (exact for small samples)."""
    logs = [math.log(c / b) for c, b in pairs if c > 0 and b > 0]
    if not logs or all(x == 0 for x in logs):
        return 1.0
    return wilcoxon_greater_p(logs)


def gate_threshold(
    gate: Gate,
    current: float | str | None,
    reference: float | str | None,
    higher_is_better: bool | None,
) -> float | None:
    """The one number a gate compares the current value against, in metric units.

    Budgets give ``min`` and ``max``; a regression rule against a numeric baseline
    ``b`` gives ``b + |b| * pct / 100`` and ``b + max_regression`` (minus, for a
    metric where higher is better). The tightest bound on each side wins; where a
    gate bounds both sides, the side the current value breaches, else the one it is
    closest to. None for exact and A/B gates (A/B compares a paired ratio, not the
    value), and where no rule gives a number (a regression rule with no baseline yet).

    >>> gate_threshold(Gate(name="t", metric="wall_time", max_regression_pct=5), 1.0, 2.0, False)
    2.1
    """
    if gate.exact or gate.ab:
        return None
    lower: list[float] = [gate.minimum] if gate.minimum is not None else []
    upper: list[float] = [gate.maximum] if gate.maximum is not None else []
    numeric_reference = (
        isinstance(reference, (int, float))
        and not isinstance(reference, bool)
        and math.isfinite(reference)
    )
    if numeric_reference and higher_is_better is not None:
        base = float(reference)  # type: ignore[arg-type]
        allowed = []
        if gate.max_regression_pct is not None:
            allowed.append(abs(base) * gate.max_regression_pct / 100)
        if gate.max_regression is not None:
            allowed.append(gate.max_regression)
        if higher_is_better:
            lower += [base - a for a in allowed]
        else:
            upper += [base + a for a in allowed]
    low = max(lower) if lower else None
    high = min(upper) if upper else None
    if low is None or high is None:
        return high if low is None else low
    if not isinstance(current, (int, float)) or isinstance(current, bool):
        return high
    if current < low or current > high:
        return low if current < low else high
    return low if current - low < high - current else high
