"""The two rank tests the gates use, one-sided ("greater"): Mann-Whitney U for a run
against its history, Wilcoxon signed-rank for A/B pairs. Pure, standard library only.

Each follows scipy.stats (1.17) with its defaults, branch for branch, so a gate's
p-value is scipy's to the last few bits (property-tested against it in
``tests/unit/test_rank_tests.py``, scipy being a dev dependency only):

- ``mannwhitneyu(x, y, alternative="greater")``: the exact null distribution of U where
  there are no ties and one sample has at most 8 values, else the normal approximation
  with tie correction and continuity correction.
- ``wilcoxon(d, alternative="greater", zero_method="zsplit")``: exact where there are no
  ties and no zeros and at most 50 differences; with ties or zeros and at most 13
  differences, the exact sign-flip permutation test (all 2**n flips, as scipy's
  ``PermutationMethod`` does for n <= 13); else the normal approximation with tie
  correction, without continuity correction.

The exact distributions are counted with Python integers (no float sums), so they are
exact; p-values are the correctly rounded quotients.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

__all__ = ["mann_whitney_greater_p", "wilcoxon_greater_p"]

# scipy's thresholds for method="auto"
_MWU_EXACT_MAX = 8  # exact when the smaller sample has at most this many values
_WILCOXON_EXACT_MAX = 50  # exact (no ties, no zeros) up to this many differences
_WILCOXON_FLIPS_MAX = 13  # 2**13 sign flips <= scipy's 9999 resamples: exact enumeration


def _normal_sf(z: float) -> float:
    """P(Z >= z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _doubled_ranks(values: Sequence[float]) -> tuple[list[int], list[int]]:
    """Twice the average ranks (integers), in input order, and the tie group sizes.

    >>> _doubled_ranks([3.0, 1.0, 3.0, 2.0])
    ([7, 2, 7, 4], [1, 1, 2])
    """
    order = sorted(range(len(values)), key=lambda i: values[i])
    doubled = [0] * len(values)
    groups: list[int] = []
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):  # ranks start+1 .. end+1, averaged, doubled
            doubled[order[k]] = start + end + 2
        groups.append(end - start + 1)
        start = end + 1
    return doubled, groups


def _tie_term(groups: Sequence[int]) -> int:
    return sum(t**3 - t for t in groups)


@lru_cache(maxsize=256)
def _u_counts(small: int, large: int) -> tuple[int, ...]:
    """How many of the C(small + large, small) orderings give U = 0, 1, ..., small*large:
    the coefficients of the Gaussian binomial prod (1 - q^(large+i)) / (1 - q^i)."""
    degree = small * large
    counts = [1] + [0] * degree
    for i in range(1, small + 1):
        step = large + i
        for s in range(degree, step - 1, -1):  # times (1 - q^step)
            counts[s] -= counts[s - step]
        for s in range(i, degree + 1):  # divided by (1 - q^i)
            counts[s] += counts[s - i]
    return tuple(counts)


def mann_whitney_greater_p(x: Sequence[float], y: Sequence[float]) -> float:
    """One-sided p-value that ``x`` tends to be larger than ``y`` (scipy's
    ``mannwhitneyu(x, y, alternative="greater").pvalue``).

    >>> mann_whitney_greater_p([4.0, 5.0, 6.0], [1.0, 2.0, 3.0])  # 1 / C(6, 3)
    0.05
    """
    n1, n2 = len(x), len(y)
    doubled, groups = _doubled_ranks([*x, *y])
    u_doubled = sum(doubled[:n1]) - n1 * (n1 + 1)  # 2 * U of x
    ties = any(t > 1 for t in groups)
    if min(n1, n2) <= _MWU_EXACT_MAX and not ties:
        counts = _u_counts(min(n1, n2), max(n1, n2))
        u = u_doubled // 2  # no ties: U is an integer
        return min(1.0, sum(counts[u:]) / math.comb(n1 + n2, n1))
    n = n1 + n2
    spread = math.sqrt(n1 * n2 / 12 * ((n + 1) - _tie_term(groups) / (n * (n - 1))))
    z = (u_doubled / 2 - n1 * n2 / 2 - 0.5) / spread
    return _normal_sf(z)


@lru_cache(maxsize=64)
def _signed_rank_counts(weights: tuple[int, ...]) -> tuple[int, ...]:
    """How many of the 2**len(weights) sign choices give each sum of the positive weights."""
    counts = [1] + [0] * sum(weights)
    top = 0
    for w in weights:
        top += w
        for s in range(top, w - 1, -1):
            counts[s] += counts[s - w]
    return tuple(counts)


def wilcoxon_greater_p(d: Sequence[float]) -> float:
    """One-sided p-value that the differences ``d`` are centred above zero (scipy's
    ``wilcoxon(d, alternative="greater", zero_method="zsplit").pvalue``).

    >>> wilcoxon_greater_p([0.5, 1.0, 1.5, 2.0, 2.5])  # all 5 positive: 1 / 2**5
    0.03125
    """
    n = len(d)
    doubled, groups = _doubled_ranks([abs(v) for v in d])
    ties = any(t > 1 for t in groups)
    zeros = sum(1 for v in d if v == 0)
    if n <= _WILCOXON_EXACT_MAX and (not (ties or zeros) or n <= _WILCOXON_FLIPS_MAX):
        # The zeros' half ranks are on both sides of every flip: they cancel.
        nonzero = tuple(sorted(r for r, v in zip(doubled, d, strict=True) if v != 0))
        observed = sum(r for r, v in zip(doubled, d, strict=True) if v > 0)
        counts = _signed_rank_counts(nonzero)
        return min(1.0, sum(counts[observed:]) / (1 << len(nonzero)))
    positive = sum(r for r, v in zip(doubled, d, strict=True) if v > 0)
    zero = sum(r for r, v in zip(doubled, d, strict=True) if v == 0)
    r_plus = (positive + zero / 2) / 2  # zsplit: half of the zeros' ranks on each side
    mean = n * (n + 1) / 4
    spread = math.sqrt((n * (n + 1) * (2 * n + 1) - _tie_term(groups) / 2) / 24)
    return _normal_sf((r_plus - mean) / spread)
