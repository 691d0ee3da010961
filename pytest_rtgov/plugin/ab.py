"""The interleaved A/B loop of same-process timing gates (runs inside the test call).

The baseline version of a test function comes from ``store.ab_code``; this module
only decides the order of rounds, when to re-measure, and tags every sample with its
``variant`` (current or baseline) and ``block`` (0, then confirmation blocks).
"""

from __future__ import annotations

from typing import Any

from pytest_rtgov.core.records import Sample
from pytest_rtgov.core.rounds import RoundsSpec
from pytest_rtgov.core.stats import measured, paired_effect
from pytest_rtgov.measure.region import Meter

__all__ = ["run_ab"]


def run_ab(
    current: Any,
    baseline: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    meter: Meter,
    samples: list[dict[str, Any]],
    spec: RoundsSpec,
    ab: dict[str, Any] | None,
) -> Any:
    """Warm both versions up, then ``pairs`` pairs in A B B A order, every round kept.

    When the block's median paired wall-time ratio exceeds the smallest A/B threshold,
    up to ``confirm`` more blocks are measured (``block`` 1, 2, ...): the gate then
    needs every block to breach, and reports a breach that does not hold up as
    unconfirmed. If the baseline version raises (it may not fit today's fixtures),
    the A/B stops and the current version's rounds go on alone.
    """
    settings = ab or {}
    pairs = max(spec.rounds, int(settings.get("pairs", spec.rounds)))
    warmup = max(spec.warmup, 2)
    result = None
    baseline_ok = True

    def one(func: Any, variant: str, warm: bool, block: int) -> Any:
        region = meter.open()
        completed = False
        try:
            out = func(*args, **kwargs)
            completed = True
            return out
        finally:
            samples.append(
                meter.close(region, warmup=warm, completed=completed, variant=variant, block=block)
            )

    for block in range(1 + int(settings.get("confirm", 0))):
        if block and not (baseline_ok and _ab_exceeds(samples, block - 1, settings)):
            break
        for index in range((warmup if block == 0 else 0) + pairs):
            warm = block == 0 and index < warmup
            order = ("current", "baseline") if index % 2 == 0 else ("baseline", "current")
            for variant in order:
                if variant == "current":
                    result = one(current, "current", warm, block)
                elif baseline_ok:
                    try:
                        one(baseline, "baseline", warm, block)
                    except Exception:
                        baseline_ok = False
                        samples[:] = [s for s in samples if s["variant"] == "current"]
    return result


def _ab_exceeds(samples: list[dict[str, Any]], block: int, settings: dict[str, Any]) -> bool:
    """Does this block's A/B effect (``core.stats.paired_effect``, as the gate computes
    it) exceed the smallest threshold?"""
    chosen = [Sample(**s) for s in samples if s["block"] == block]
    current = [s.wall_ns for s in measured(chosen, "current")]
    baseline = [s.wall_ns for s in measured(chosen, "baseline")]
    effect = paired_effect(list(zip(current, baseline, strict=False)))
    if effect is None:
        return False
    pct, absolute = settings.get("min_pct"), settings.get("min_abs")
    return (pct is not None and effect.relative * 100 > pct) or (
        absolute is not None and effect.worse * 1e-9 > absolute
    )
