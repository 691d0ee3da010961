"""The sequential A/B rule: when to stop measuring pairs, and what they show (pure).

One role: judge the interleaved (current, baseline) pairs of an A/B test at planned
looks, the same way in the plugin's loop (``plugin/ab.py``: measure on or stop?) and
in the gate (``core/gates.py``: the verdict, re-derived from the recorded samples).

Design (docs/gates.md, "Sequential A/B"): looks after ``first``, ``2 * first``, ...
pairs up to ``max_pairs``. At look k the paired log-ratios current/baseline give

- a **breach** when the median paired ratio exceeds the threshold and a one-sided
  Wilcoxon signed-rank test finds current slower with p below the look's share of
  alpha (alpha spent in proportion to the pairs the look adds: a Bonferroni split
  over the looks, so the chance of any false breach over all looks, however the
  measuring stopped, is at most alpha);
- **within** (futility) when a distribution-free upper confidence bound of the
  median ratio (sign-test order statistic, level ``1 - gamma / K``) is within the
  threshold: measuring on could not show a breach;
- otherwise the look is **open**: measure the next look, unless the pair or time cap
  is reached.

The clock: a ``wall_time`` gate judges on CPU time when the first look's rounds show
CPU-bound single-threaded code: no GPU time, no round with more CPU than wall time,
and (where recorded) no voluntary context switch in nine of ten rounds of each
variant, else (older records) the least disturbed round's CPU/wall in [0.9, 1.1]
(:func:`choose_clock`). A round whose
CPU/wall is under half its variant's quiet ratio waited for a core: its pair is
*disturbed*; counted always, left out when judging on wall time unless that would
leave under a quarter of the pairs (then disturbance is the norm: all are kept).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_rtgov.core.format import format_number
from pytest_rtgov.core.metrics import BUILTIN_METRICS
from pytest_rtgov.core.records import Sample
from pytest_rtgov.core.stats import PairedEffect, measured, paired_effect

__all__ = [
    "CALM_SHARE",
    "CPU_BOUND",
    "DISTURBED_SHARE",
    "Clock",
    "Judgement",
    "Plan",
    "choose_clock",
    "describe",
    "judge",
    "median_upper_bound",
]

CPU_BOUND = (0.9, 1.1)  # quiet CPU/wall of a single-threaded CPU-bound round
ARTIFACT_SHARE = 2.0  # one round alone above it, the rest single-threaded: clocks disagreed
CALM_SHARE = 0.9  # rounds without a voluntary context switch, for CPU-bound code
DISTURBED_SHARE = 0.5  # a round with under half its quiet CPU/wall waited for a core


@dataclass(frozen=True, slots=True)
class Plan:
    """The looks of one A/B test and the error rates spent on them.

    ``alpha``: the chance of a false breach over all looks; ``gamma``: the chance
    that a change exactly at the threshold is stopped as within it.

    >>> Plan(first=20, max_pairs=50, alpha=0.01, gamma=0.01).looks()
    (20, 40, 50)
    """

    first: int
    max_pairs: int
    alpha: float
    gamma: float

    def looks(self) -> tuple[int, ...]:
        top = max(self.first, self.max_pairs)
        return tuple(min(n, top) for n in range(self.first, top + self.first, self.first))

    def look_alpha(self, k: int) -> float:
        """Alpha of look ``k`` (0-based): its share of the pairs of the whole plan."""
        looks = self.looks()
        start = looks[k - 1] if k else 0
        return self.alpha * (looks[k] - start) / looks[-1]

    def look_gamma(self) -> float:
        return self.gamma / len(self.looks())


@dataclass(frozen=True, slots=True)
class Clock:
    """Which clock judges, and why (text for the gate's reason)."""

    metric: str
    why: str
    quiet: tuple[float, float] | None = None  # quiet CPU/wall of current, baseline


@dataclass(frozen=True, slots=True)
class Judgement:
    decision: str  # breach | within | open
    clock: Clock
    looks: tuple[tuple[int, str], ...]  # (pairs at the look, its decision)
    planned: int  # looks in the plan
    recorded: int  # pairs recorded
    used: int  # pairs judged at the last look (disturbed ones left out on wall time)
    disturbed: int  # disturbed pairs among those of the last look
    effect: PairedEffect | None
    p_value: float | None
    alpha: float | None  # the alpha of the look that decided (or the last one)
    upper: float | None  # upper bound of the median ratio at the last look
    exceeded: tuple[str, ...] = ()

    @property
    def done(self) -> bool:
        """Measuring more would not change the decision: stopped, or the pair cap."""
        return self.decision != "open" or (
            bool(self.looks) and len(self.looks) >= self.planned
        )


def _pairs(samples: Sequence[Sample], block: int) -> list[tuple[Sample, Sample]]:
    current = measured(samples, "current", block)
    baseline = measured(samples, "baseline", block)
    return list(zip(current, baseline, strict=False))


def _share(sample: Sample) -> float:
    return sample.cpu_ns / sample.wall_ns if sample.wall_ns > 0 else 0.0


def _quiet(rounds: Sequence[Sample]) -> float:
    """The CPU/wall of the least disturbed round: the largest one.

    On a loaded machine most rounds lose the core for a while; the best one shows
    what the code itself does. One thread cannot use more CPU time than wall time, so
    above 1.1 the process ran several threads; below 0.9 in every round it waited
    for something else than a core (I/O, sleep, a device), or the load was so
    sustained that no round ran undisturbed (then wall time judges: the safe side).
    One round of a single-threaded loop on a loaded virtual machine showed 28 times
    its wall time in CPU time (its two clocks disagreed): with three rounds or more, a
    lone round above :data:`ARTIFACT_SHARE` whose next largest is single-threaded
    CPU-bound is taken for such an artifact, and the next largest stands.
    """
    shares = sorted(_share(s) for s in rounds)
    low, high = CPU_BOUND
    if len(shares) >= 3 and shares[-1] > ARTIFACT_SHARE and low <= shares[-2] <= high:
        return shares[-2]
    return shares[-1]


def choose_clock(pairs: Sequence[tuple[Sample, Sample]], metric: str) -> Clock:
    """The clock an A/B gate on ``metric`` judges with, from the first look's pairs.

    ``cpu_time`` and ``gpu_time`` gates judge on their own clock. A ``wall_time``
    gate judges on wall time when GPU time was recorded, or a round used more CPU
    than wall time (several threads: above :data:`CPU_BOUND`). Otherwise, where the
    rounds carry their voluntary context switches, it judges on CPU time when at
    least :data:`CALM_SHARE` of each variant's rounds never blocked (no voluntary
    switch: no I/O, sleep, lock or device wait), and on wall time when they block:
    load takes the core away by *involuntary* switches, so this holds on a busy
    machine too. Rounds without switch counts (older records, no ``getrusage``) fall
    back to the quiet CPU/wall of both variants (that of the least disturbed round)
    in :data:`CPU_BOUND`, which sustained load can hide.
    """
    quiet = None
    if pairs:
        quiet = (_quiet([c for c, _ in pairs]), _quiet([b for _, b in pairs]))
    if metric != "wall_time":
        return Clock(metric, "the gate's metric", quiet)
    if any(s.gpu_time_ns is not None for pair in pairs for s in pair):
        return Clock("wall_time", "GPU time recorded", quiet)
    if quiet is None:
        return Clock("wall_time", "no pairs", quiet)
    shown = f"quiet CPU/wall {quiet[0]:.2f} and {quiet[1]:.2f}"
    low, high = CPU_BOUND
    if max(quiet) > high:
        return Clock("wall_time", f"{shown}: several threads", quiet)
    switches = [[s.voluntary_switches for s in side] for side in zip(*pairs, strict=True)]
    if all(c is not None for side in switches for c in side):
        calm = [sum(1 for c in side if c == 0) for side in switches]
        rounds = len(pairs)
        said = f"{min(calm)} of {rounds} rounds without a voluntary context switch"
        if all(c >= CALM_SHARE * rounds for c in calm):
            return Clock("cpu_time", f"CPU-bound, single-threaded: {said}", quiet)
        return Clock("wall_time", f"blocking waits (I/O, sleep, a lock): {said}", quiet)
    if all(low <= q for q in quiet):
        return Clock("cpu_time", f"CPU-bound, single-threaded: {shown}", quiet)
    return Clock("wall_time", f"{shown}: waits: I/O, sleep or a device", quiet)


def _disturbed(pair: tuple[Sample, Sample], quiet: tuple[float, float] | None) -> bool:
    if quiet is None:
        return False
    return any(_share(s) < DISTURBED_SHARE * q for s, q in zip(pair, quiet, strict=True))


def median_upper_bound(values: Sequence[float], gamma: float) -> float:
    """Upper confidence bound (level ``1 - gamma``) of the median, distribution-free.

    The smallest order statistic x_(u) with P(Binomial(n, 1/2) <= u - 1) >= 1 - gamma;
    infinite when n is too small for that level.

    >>> median_upper_bound([1.0, 2.0, 3.0, 4.0, 5.0], 0.01)
    inf
    >>> median_upper_bound(list(range(20)), 0.01)
    15
    """
    n = len(values)
    ordered = sorted(values)
    need = (1 - gamma) * 2**n  # P(B <= u - 1) * 2^n, exact in integers
    below = 0
    for u in range(1, n + 1):
        below += math.comb(n, u - 1)
        if below >= need:
            return ordered[u - 1]
    return math.inf


def _exceeded(effect: PairedEffect, pct: float | None, absolute: float | None) -> list[str]:
    """Which regression rules the effect exceeds (as ``gate_rules.regression_reasons``)."""
    reasons = []
    if pct is not None and effect.relative * 100 > pct:
        reasons.append(f"{effect.relative * 100:.1f}% worse > {pct:g}%")
    if absolute is not None and effect.worse > absolute:
        reasons.append(f"{format_number(effect.worse)} worse > {format_number(absolute)}")
    return reasons


def _within(upper: float, baseline: float, pct: float | None, absolute: float | None) -> bool:
    """Is an upper bound ``upper`` of the ratio within every rule's threshold?"""
    if math.isinf(upper):
        return False
    ok = pct is None or (upper - 1) * 100 <= pct
    return ok and (absolute is None or (upper - 1) * baseline <= absolute)


def judge(
    samples: Sequence[Sample],
    metric: str,
    plan: Plan,
    pct: float | None,
    absolute: float | None,
    min_samples: int = 5,
    block: int = 0,
) -> Judgement:
    """Replay the plan's looks over the recorded pairs of ``block``; stop at the first
    look that decides. ``pct`` and ``absolute`` (seconds) are the regression rules.

    Looks past the recorded pairs are not taken: a test whose measuring stopped (a
    decision, the time cap, the baseline failing) is judged on the looks it reached.
    """
    from pytest_rtgov.core.gate_rules import wilcoxon_worse_p

    pairs = _pairs(samples, block)
    clock = choose_clock(pairs[: plan.first], metric)
    quiet = clock.quiet if metric != "gpu_time" else None
    flags = [_disturbed(p, quiet) for p in pairs]
    drop = clock.metric == "wall_time"
    field = BUILTIN_METRICS[clock.metric].field
    looks = [n for n in plan.looks() if n <= len(pairs)] or ([len(pairs)] if pairs else [])
    taken: list[tuple[int, str]] = []
    effect = p = alpha = upper = None
    exceeded: list[str] = []
    used = 0
    for k, n in enumerate(looks):
        # Left out unless that would leave under a quarter of the pairs (or under
        # min_samples): then disturbance is the test's own variation, and all are kept.
        leave_out = drop and n - sum(flags[:n]) >= max(min_samples, n / 4)
        values = [
            (getattr(c, field) * 1e-9, getattr(b, field) * 1e-9)
            for (c, b), bad in zip(pairs[:n], flags[:n], strict=True)
            if not (leave_out and bad)
            and getattr(c, field) is not None
            and getattr(b, field) is not None
        ]
        used = len(values)
        effect, p, alpha = paired_effect(values), None, plan.look_alpha(k)
        decision = "open"
        if effect is not None and used >= min_samples:
            exceeded = _exceeded(effect, pct, absolute)
            if exceeded:
                p = wilcoxon_worse_p(values)
                decision = "breach" if p < alpha else "open"
            logs = [math.log(c / b) for c, b in values if c > 0 and b > 0]
            upper = math.exp(median_upper_bound(logs, plan.look_gamma())) if logs else None
            if decision == "open" and upper is not None:
                decision = "within" if _within(upper, effect.baseline, pct, absolute) else "open"
        taken.append((n, decision))
        if decision != "open":
            break
    return Judgement(
        decision=taken[-1][1] if taken else "open",
        clock=clock,
        looks=tuple(taken),
        planned=len(plan.looks()),
        recorded=len(pairs),
        used=used,
        disturbed=sum(flags[: taken[-1][0]] if taken else ()),
        effect=effect,
        p_value=p,
        alpha=alpha,
        upper=upper,
        exceeded=tuple(exceeded),
    )


def describe(judged: Judgement, min_samples: int = 5) -> str:
    """The gate's reason text: the decision, the looks, the clock, disturbed pairs."""
    n, k, planned = judged.used, len(judged.looks), judged.planned
    at = f"look {k} of {planned}, {judged.looks[-1][0] if judged.looks else 0} pairs"
    if judged.decision == "breach":
        parts = [*judged.exceeded, f"p={judged.p_value:.3g} < {judged.alpha:.3g}", at]
    elif judged.decision == "within":
        bound = ((judged.upper or 1.0) - 1) * 100
        parts = [f"clearly within: upper bound of the change {bound:+.1f}% ({at})"]
    elif n < min_samples:
        parts = [f"{n} pairs < min_samples {min_samples}: not judged"]
    else:
        if judged.p_value is not None:
            first = f"effect not significant (p={judged.p_value:.3g} >= {judged.alpha:.3g})"
        else:
            first = "effect within the threshold, not clearly"
        cap = "the cap" if judged.done else "measuring stopped before the cap: ab_max_seconds"
        parts = [first, f"no decision at {at} ({cap})"]
    parts.append(f"on {judged.clock.metric} ({judged.clock.why})")
    if judged.disturbed:
        seen = judged.looks[-1][0]
        if judged.clock.metric != "wall_time":
            kept = "kept: CPU time skips waits"
        elif judged.used == seen:
            kept = "kept: too many to leave out"
        else:
            kept = "left out"
        parts.append(
            f"{judged.disturbed} of {seen} pairs disturbed "
            f"(a round waited for a core), {kept}"
        )
    return "; ".join(parts)
