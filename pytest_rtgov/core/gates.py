"""Gate evaluation: a pure function of (gates, current run, baseline) -> results.

Nothing here prints or touches the disk. The results go to
:func:`pytest_rtgov.core.verdict.decide`, which decides the exit status; what is
gated comes from :mod:`pytest_rtgov.core.subjects`, the rule arithmetic from
:mod:`pytest_rtgov.core.gate_rules`.

Rules, per selected subject (a test, or a fixture) and metric:

- budget: the subject's value must be >= ``min`` and <= ``max``. For measurements
  with several samples the value is the median of the measured (non-warm-up,
  completed) samples; for recorded metrics every recorded value must pass (a
  session fixture records once per xdist worker) and the worst one is reported.
- regression: the change against the baseline *in the metric's bad direction*
  (measurements: up is worse; recorded metrics: ``higher_is_better`` decides) may
  not exceed ``max_regression_pct`` percent of ``|baseline|`` nor
  ``max_regression`` absolute. A zero baseline makes any worsening an infinite
  relative change. With at least ``min_samples`` samples on both sides, a breach
  also needs significance: a one-sided Mann-Whitney U test of "current is worse"
  with p below ``(1 - confidence) / m``, m the number of such tests this session
  (Bonferroni), so that gating many kernels does not multiply false alarms.
- exact: every recorded digest equals the baseline's.

A gate on a recorded metric concerns the selected subjects that record it, now or
in the baseline: a glob over a test module need not name each test.

Statuses (:data:`pytest_rtgov.core.verdict.GATE_STATUSES`): ``pass``, ``breach``,
``new`` (no baseline value yet: passes, the baseline records it on update),
``missing`` (the subject ran and passed but no longer records a metric its baseline
has, or has no samples of a measurement: a breach, a gate should not go silently
blind), ``unconfirmed`` (A/B: breached, then passed re-measurement) and ``not-run``
(the subject was skipped or failed: pytest already reports it).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Iterable
from typing import Any

from pytest_rtgov.core.budget import waiting_note
from pytest_rtgov.core.format import format_change
from pytest_rtgov.core.gate_rules import (
    budget_reasons,
    gate_threshold,
    mann_whitney_worse_p,
    regression_reasons,
    relative_change,
    wilcoxon_worse_p,
    worse_by,
)
from pytest_rtgov.core.gates_config import Gate, GatesConfig
from pytest_rtgov.core.metrics import BUILTIN_METRICS, CALIBRATED_SUFFIX
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.core.sequential import Plan, describe, judge
from pytest_rtgov.core.stats import PairedEffect, paired_effect
from pytest_rtgov.core.subjects import BaselineView, Subject, selects, subjects_of
from pytest_rtgov.core.verdict import GateResult

__all__ = ["evaluate_gates"]


def _identity(gate: Gate, subject: Subject, rule: str, metric: str = "") -> dict[str, Any]:
    """The fields that name a result: gate, subject, metric, rule."""
    return {"rule": rule, "gate": gate.name, "subject": subject.id, "metric": metric or gate.metric}


def _ab_block(
    gate: Gate, pairs: list[tuple[float, float]], config: GatesConfig, alpha: float
) -> dict[str, Any]:
    """Effect and significance of one A/B block; ``breach`` says whether both exceed."""
    effect = paired_effect(pairs) or PairedEffect(1.0, math.nan, math.nan)  # callers pass pairs
    out: dict[str, Any] = dict(
        current=effect.current,
        baseline=effect.baseline,
        delta=effect.delta,
        relative=effect.relative,
    )
    exceeded = regression_reasons(gate, effect.worse, effect.relative)
    if not exceeded:
        return {**out, "breach": False, "reason": ""}
    if len(pairs) < config.min_samples:
        reason = f"{len(pairs)} pairs < min_samples {config.min_samples}: not judged"
        return {**out, "breach": False, "reason": reason}
    p = wilcoxon_worse_p(pairs)
    out["p_value"] = p
    if p >= alpha:
        reason = f"effect not significant (p={p:.3g} >= {alpha:.3g})"
        return {**out, "breach": False, "reason": reason}
    reason = "; ".join([*exceeded, f"p={p:.3g} < {alpha:.3g}", f"{len(pairs)} pairs"])
    return {**out, "breach": True, "reason": reason}


def _change(metric: str, block: dict[str, Any]) -> str:
    """An A/B block's effect, better or worse (``core.format.format_change``)."""
    return format_change(
        metric, block["baseline"], block["current"], worse_relative=block["relative"]
    )


def _evaluate_ab(gate: Gate, subject: Subject, config: GatesConfig, alpha: float) -> GateResult:
    """Same-process A/B: the test body at the baseline ref ran interleaved with the
    current one. The sequential rule (``core.sequential.judge``) replays its looks over
    the recorded pairs and decides at the first look that is clear: the effect is the
    median paired ratio on the clock it chose, significance is Wilcoxon's at the
    look's share of alpha.

    A breach is confirmed by the re-measured blocks that followed it, if any
    (``confirm`` in ``[defaults]``, 0 by default): all must breach, else the result is
    ``unconfirmed``: reported, recorded, not failing the session.
    """
    base = _identity(gate, subject, gate.rules() + ", A/B")
    if not subject.pairs(gate.metric):
        return GateResult(
            status="new", reason=f"no baseline code for this test at {config.ab_ref}", **base
        )
    plan = Plan(
        first=config.ab_pairs,
        max_pairs=config.ab_max_pairs,
        alpha=alpha,
        gamma=1 - config.confidence,
    )
    judged = judge(
        subject.samples,
        gate.metric,
        plan,
        gate.max_regression_pct,
        gate.max_regression,
        config.min_samples,
    )
    effect = judged.effect or PairedEffect(1.0, math.nan, math.nan)
    fields: dict[str, Any] = dict(
        current=effect.current,
        baseline=effect.baseline,
        delta=effect.delta,
        relative=effect.relative,
        p_value=judged.p_value,
        clock=judged.clock.metric,
    )
    reason = describe(judged, config.min_samples)
    if judged.decision != "breach":
        return GateResult(status="pass", reason=reason, **fields, **base)
    confirmations = [
        _ab_block(gate, subject.pairs(judged.clock.metric, block), config, alpha)
        for block in range(1, subject.blocks())
        if subject.pairs(judged.clock.metric, block)
    ]
    if all(c["breach"] for c in confirmations):
        suffix = f"; confirmed by {len(confirmations)} re-run(s)" if confirmations else ""
        return GateResult(status="breach", reason=reason + suffix, **fields, **base)
    failed = next(c for c in confirmations if not c["breach"])
    reason = (
        f"{reason}; not confirmed on re-measurement "
        f"({_change(gate.metric, failed)}: {failed['reason'] or 'within the threshold'})"
    )
    return GateResult(status="unconfirmed", reason=reason, **fields, **base)


def _not_run(gate: Gate, subject: Subject) -> str:
    """Why ``gate`` does not judge ``subject`` this session, or ``""``."""
    if not subject.ran:
        return "skipped or failed: not gated"
    if subject.cached and not gate.ab and gate.metric in BUILTIN_METRICS:
        return "served from the stage cache: its body did not run in this session"
    return ""


def _evaluate_measurement(
    gate: Gate,
    subject: Subject,
    baseline: BaselineView,
    config: GatesConfig,
    alpha: float,
) -> GateResult:
    if gate.calibrated:
        values = subject.calibrated(gate.metric)
        rule = gate.rules() + " (calibration units)"
        base = _identity(gate, subject, rule, gate.metric + CALIBRATED_SUFFIX)
    else:
        values = subject.measurement(gate.metric)
        base = _identity(gate, subject, gate.rules())
    if not values:
        why = "no calibration for its worker" if gate.calibrated else "memory off, or no GPU?"
        cheap = subject.cheap_probe
        if cheap and gate.metric == "peak_memory" and any(
            s.memory_probe == cheap for s in subject.samples
        ):  # the auto memory mode measured it cheaply: no gate asked when it ran
            why = (
                "memory auto measured it with the cheap rss probe only; measure it in a "
                "gated session, or mark it @pytest.mark.rtgov(memory=True)"
            )
        return GateResult(status="missing", reason=f"no {gate.metric} samples ({why})", **base)
    current = statistics.median(values)
    reasons = budget_reasons(gate.minimum, gate.maximum, current)
    reasons += waiting_note(gate, current, subject.measurement("cpu_time"))
    result: dict[str, Any] = {"current": current}
    if gate.has_regression_rule:
        if gate.calibrated:  # calibrated values are shared by every machine
            key = gate.metric + CALIBRATED_SUFFIX
            history = [float(v) for v in baseline.metrics.get(subject.id, {}).get(key, ())]
        else:
            history = list(baseline.measurements.get(subject.id, {}).get(gate.metric, ()))
        if not history:
            if not reasons:
                note = (
                    "no calibrated baseline for this subject yet"
                    if gate.calibrated
                    else baseline.fingerprint_note or "no baseline for this subject yet"
                )
                return GateResult(status="new", reason=note, **result, **base)
        else:
            reference = statistics.median(history)
            direction = BUILTIN_METRICS[gate.metric].higher_is_better  # lower is better
            worse = worse_by(current, reference, higher_is_better=direction)
            relative = relative_change(worse, reference)
            result.update(baseline=reference, delta=worse, relative=relative)
            exceeded = regression_reasons(gate, worse, relative)
            if exceeded and min(len(values), len(history)) >= config.min_samples:
                p = mann_whitney_worse_p(values, history)
                result["p_value"] = p
                if p >= alpha:
                    exceeded = []
                    result["reason"] = f"effect not significant (p={p:.3g} >= {alpha:.3g})"
                else:
                    exceeded.append(f"p={p:.3g} < {alpha:.3g}")
            reasons += exceeded
    if reasons:
        result["reason"] = "; ".join(reasons)
        return GateResult(status="breach", **result, **base)
    return GateResult(status="pass", **result, **base)


def _evaluate_recorded(gate: Gate, subject: Subject, baseline: BaselineView) -> GateResult:
    recorded = subject.recorded(gate.metric)
    base = _identity(gate, subject, gate.rules())
    history = list(baseline.metrics.get(subject.id, {}).get(gate.metric, ()))
    if not recorded:
        return GateResult(
            status="missing",
            reason=f"recorded {gate.metric!r} in the baseline but not in this run",
            **base,
        )
    if gate.exact:
        digests = sorted({str(v) for v, _ in recorded})
        if not history:
            return GateResult(
                status="new", current=digests[0], reason="no baseline digest yet", **base
            )
        expected = sorted({str(v) for v in history})
        if digests != expected:
            return GateResult(
                status="breach",
                current=next((d for d in digests if d not in expected), digests[0]),
                baseline=expected[0],
                reason="digest differs from the baseline",
                **base,
            )
        return GateResult(status="pass", current=digests[0], baseline=expected[0], **base)
    numbers = [(v, hib) for v, hib in recorded if not isinstance(v, str)]
    if len(numbers) != len(recorded):
        return GateResult(
            status="breach", reason=f"{gate.metric!r} holds digests; use exact = true", **base
        )
    direction = next((hib for _, hib in numbers if hib is not None), None)
    if direction is None and gate.has_regression_rule:
        return GateResult(
            status="breach",
            reason=f"{gate.metric!r} declares no direction: record it with "
            "higher_is_better=True or False",
            **base,
        )
    values = [float(v) for v, _ in numbers]
    # Every recorded value must pass the budgets; report the worst one.
    reasons = budget_reasons(gate.minimum, None, min(values))
    reasons += budget_reasons(None, gate.maximum, max(values))
    if direction is None:
        current = min(values) if gate.minimum is not None else max(values)
    else:
        current = min(values) if direction else max(values)
    result: dict[str, Any] = {"current": current}
    if gate.has_regression_rule:
        numeric_history = [float(h) for h in history if not isinstance(h, str)]
        if not numeric_history:
            if not reasons:
                return GateResult(status="new", reason="no baseline value yet", **result, **base)
        else:
            reference = statistics.median(numeric_history)
            worse = worse_by(current, reference, higher_is_better=bool(direction))
            relative = relative_change(worse, reference)
            result.update(baseline=reference, delta=worse, relative=relative)
            reasons += regression_reasons(gate, worse, relative)
    if reasons:
        result["reason"] = "; ".join(reasons)
        return GateResult(status="breach", **result, **base)
    return GateResult(status="pass", **result, **base)


def _concerns(metric: str, subject: Subject, baseline: BaselineView) -> bool:
    """A recorded-metric gate concerns a subject that records the metric now or did in
    the baseline; a glob over a test module need not list every test by name."""
    return bool(subject.recorded(metric)) or metric in baseline.metrics.get(subject.id, {})


def _significance_tests(
    config: GatesConfig, pairs: Iterable[tuple[Gate, Subject]], baseline: BaselineView
) -> int:
    """How many statistical comparisons this session may make (the Bonferroni m)."""
    count = 0
    for gate, subject in pairs:
        if gate.ab:
            count += len(subject.pairs(gate.metric)) >= config.min_samples
        elif gate.builtin and gate.has_regression_rule:
            history = (
                baseline.metrics.get(subject.id, {}).get(gate.metric + CALIBRATED_SUFFIX, ())
                if gate.calibrated
                else baseline.measurements.get(subject.id, {}).get(gate.metric, ())
            )
            if min(len(subject.measurement(gate.metric)), len(history)) >= config.min_samples:
                count += 1
    return count


def _with_threshold(result: GateResult, gate: Gate, subject: Subject) -> GateResult:
    builtin = BUILTIN_METRICS.get(gate.metric)
    if builtin is not None:
        direction: bool | None = builtin.higher_is_better  # measurements: lower is better
    else:
        direction = next((hib for _, hib in subject.recorded(gate.metric) if hib is not None), None)
    threshold = gate_threshold(gate, result.current, result.baseline, direction)
    return dataclasses.replace(result, threshold=threshold)


def evaluate_gates(
    config: GatesConfig, record: RunRecord, baseline: BaselineView
) -> tuple[list[GateResult], list[str]]:
    """Every gate on every subject it selects, in canonical order.

    Returns the results and the names of gates that selected no subject (a
    configuration error the caller reports with the gates file's name).
    """
    subjects = subjects_of(record)
    pairs = [
        (g, s)
        for g in config.gates
        for s in subjects
        if selects(g, s) and (g.builtin or _concerns(g.metric, s, baseline))
    ]
    empty = [g.name for g in config.gates if not any(p[0] is g for p in pairs)]
    m = max(1, _significance_tests(config, pairs, baseline))
    alpha = (1 - config.confidence) / m
    results = []
    for gate, subject in pairs:
        not_run = _not_run(gate, subject)
        if not_run:
            result = GateResult(
                gate=gate.name,
                subject=subject.id,
                metric=gate.metric,
                status="not-run",
                rule=gate.rules(),
                reason=not_run,
            )
        elif gate.ab:
            result = _evaluate_ab(gate, subject, config, alpha)
        elif gate.metric in BUILTIN_METRICS:
            result = _evaluate_measurement(gate, subject, baseline, config, alpha)
        else:
            result = _evaluate_recorded(gate, subject, baseline)
        results.append(_with_threshold(result, gate, subject))
    results.sort(key=lambda r: (r.subject, r.metric, r.gate))
    return results, empty
