"""The interleaved A/B loop of same-process timing gates (runs inside the test call).

The baseline version of a test function comes from ``store.ab_code``; this module
only decides the order of rounds and when to stop, and tags every sample with its
``variant`` (current or baseline) and ``block`` (0, then confirmation blocks). When
to stop is the pure sequential rule of ``core.sequential``, the one the gate replays
over the recorded samples (docs/gates.md, "Sequential A/B").
"""

from __future__ import annotations

from typing import Any

from pytest_rtgov.core.metrics import BUILTIN_METRICS
from pytest_rtgov.core.records import Sample
from pytest_rtgov.core.rounds import RoundsSpec
from pytest_rtgov.core.sequential import Plan, judge
from pytest_rtgov.core.stats import measured, paired_effect
from pytest_rtgov.measure.clock import voluntary_switches, wall_ns
from pytest_rtgov.measure.region import Meter

__all__ = ["plan_of", "run_ab"]



def plan_of(settings: dict[str, Any], tests: int = 1) -> Plan:
    """The looks of the A/B settings (``Gatekeeper.prepare_ab``).

    The gate's alpha is confidence over the session's number of statistical tests,
    known only at the end; here it is bounded by ``tests`` times the gates with a
    regression rule, so a breach the loop stops for is one the gate finds too.
    """
    first = int(settings.get("pairs", 20))
    confidence = float(settings.get("confidence", 0.99))
    m = max(1, tests * int(settings.get("regression_gates", 1)))
    return Plan(
        first=first,
        max_pairs=max(first, int(settings.get("max_pairs", first))),
        alpha=(1 - confidence) / m,
        gamma=1 - confidence,
    )


def run_ab(
    current: Any,
    baseline: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    meter: Meter,
    samples: list[dict[str, Any]],
    spec: RoundsSpec,
    ab: dict[str, Any] | None,
    tests: int = 1,
    timing: Meter | None = None,
) -> Any:
    """Warm both versions up, then pairs in A B B A order, every round kept, looking
    after ``ab_pairs``, ``2 * ab_pairs``, ... pairs until the sequential rule decides,
    ``ab_max_pairs`` is reached, or the next look would pass ``ab_max_seconds``.

    After a breach, ``confirm`` more blocks of ``ab_pairs`` pairs (``block`` 1, 2, ...)
    are measured, each only while the one before still breached. If the baseline
    version raises (it may not fit today's fixtures), the A/B stops and the current
    version's rounds go on alone. ``tests``: the tests of the session (see
    :func:`plan_of`).

    ``timing``: a meter without a memory probe. Given, only the first measured pair is
    measured with ``meter`` (the session's memory probe: the test's peak memory, for
    both versions); every other round with ``timing``, so tracemalloc, whose tracing
    slows every allocation, does not inflate the effect of an edit that allocates
    (docs/gates.md, "A/B timing").
    """
    settings = ab or {}
    plan = plan_of(settings, tests)
    looks = plan.looks()
    metrics = list(settings.get("metrics", ["wall_time"]))
    pct, absolute = settings.get("min_pct"), settings.get("min_abs")
    min_samples = int(settings.get("min_samples", 5))
    max_ns = float(settings.get("max_seconds", 30.0)) * 1e9
    warmup = max(spec.warmup, 2)
    state: dict[str, Any] = {"result": None, "baseline_ok": True}

    def one(func: Any, variant: str, warm: bool, block: int, memory: bool) -> Any:
        used = meter if memory or timing is None else timing
        switches = voluntary_switches()  # outside the clocks: the choice of clock reads it
        region = used.open()
        completed = False
        try:
            out = func(*args, **kwargs)
            completed = True
            return out
        finally:
            sample = used.close(
                region, warmup=warm, completed=completed, variant=variant, block=block
            )
            after = voluntary_switches()
            if switches is not None and after is not None:
                sample["voluntary_switches"] = after - switches
            samples.append(sample)

    def pair(index: int, warm: bool, block: int) -> None:
        order = ("current", "baseline") if index % 2 == 0 else ("baseline", "current")
        memory = not warm and block == 0 and index == warmup  # the first measured pair
        for variant in order:
            if variant == "current":
                state["result"] = one(current, "current", warm, block, memory)
            elif state["baseline_ok"]:
                try:
                    one(baseline, "baseline", warm, block, memory)
                except Exception:
                    state["baseline_ok"] = False
                    samples[:] = [s for s in samples if s["variant"] == "current"]

    start = wall_ns()
    for index in range(warmup):
        pair(index, True, 0)
    done, judged = 0, []
    for k, n in enumerate(looks):
        for index in range(done, n):
            pair(warmup + index, False, 0)
        done = n
        if not state["baseline_ok"]:
            break
        recorded = [Sample(**s) for s in samples]
        judged = [judge(recorded, m, plan, pct, absolute, min_samples) for m in metrics]
        if all(j.decision != "open" or not j.used for j in judged):
            break
        elapsed = wall_ns() - start
        if k + 1 < len(looks) and elapsed * (warmup + looks[k + 1]) / (warmup + n) > max_ns:
            break
    breach = next((j for j in judged if j.decision == "breach"), None)
    for block in range(1, 1 + int(settings.get("confirm", 0))):
        if breach is None or not state["baseline_ok"]:
            break
        if block > 1 and not _ab_exceeds(samples, block - 1, settings, breach.clock.metric):
            break
        for index in range(plan.first):
            pair(index, False, block)
    return state["result"]


def _ab_exceeds(
    samples: list[dict[str, Any]],
    block: int,
    settings: dict[str, Any],
    clock: str = "wall_time",
) -> bool:
    """Does this confirmation block's A/B effect (``core.stats.paired_effect``, on the
    clock that judged block 0, as the gate computes it) exceed the smallest threshold?"""
    field = BUILTIN_METRICS[clock].field
    chosen = [Sample(**s) for s in samples if s["block"] == block]
    current = [getattr(s, field) for s in measured(chosen, "current")]
    baseline = [getattr(s, field) for s in measured(chosen, "baseline")]
    pairs = [(c, b) for c, b in zip(current, baseline, strict=False) if c is not None and b]
    effect = paired_effect(pairs)
    if effect is None:
        return False
    pct, absolute = settings.get("min_pct"), settings.get("min_abs")
    return (pct is not None and effect.relative * 100 > pct) or (
        absolute is not None and effect.worse * 1e-9 > absolute
    )
