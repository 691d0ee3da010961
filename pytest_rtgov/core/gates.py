"""Gate evaluation: a pure function of (gates, current run, baseline) -> results.

Nothing here prints or touches the disk. The plugin evaluates every gate first,
sets the exit status, and only then displays.

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

Statuses: ``pass``, ``breach``, ``new`` (no baseline value yet: passes, the
baseline records it on update), ``missing`` (the subject ran and passed but no
longer records a metric its baseline has, or has no samples of a measurement: a
breach, a gate should not go silently blind), and
``not-run`` (the subject was skipped or failed: pytest already reports it).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_rtgov.core.gates_config import Gate, GatesConfig
from pytest_rtgov.core.metrics import BUILTIN_METRICS
from pytest_rtgov.core.records import FixtureEntry, RunRecord, Sample, TestEntry
from pytest_rtgov.core.stats import PairedEffect, counts, measured, paired_effect
from pytest_rtgov.core.verdict import GateResult

__all__ = [
    "BaselineView",
    "Subject",
    "evaluate_gates",
    "gate_threshold",
    "mann_whitney_worse_p",
    "subject_id",
    "subjects_of",
    "wilcoxon_worse_p",
]

_SAMPLE_FIELD = {m.name: (m.field, m.scale) for m in BUILTIN_METRICS.values()}


@dataclass(frozen=True, slots=True)
class Subject:
    """A test or a fixture of a run, with what gates can read from it."""

    id: str
    kind: str  # "test" or "fixture"
    name: str  # node id for tests, fixture name for fixtures
    markers: tuple[str, ...]
    ran: bool
    samples: tuple[Sample, ...]
    metrics: tuple[tuple[str, float | str, bool | None], ...]
    workers: tuple[str, ...] = ()  # the worker of each sample
    calibration: Mapping[str, int] = field(default_factory=dict)  # worker -> ns

    def calibrated(self, metric: str) -> list[float]:
        """Measured time divided by the calibration time of the process that ran it."""
        field_name, _ = _SAMPLE_FIELD[metric]
        out = []
        for sample, worker in zip(self.samples, self.workers, strict=False):
            ns = getattr(sample, field_name)
            unit = self.calibration.get(worker)
            if not counts(sample):
                continue
            if ns is not None and unit:
                out.append(ns / unit)
        return out

    def measurement(
        self, metric: str, variant: str = "current", block: int | None = None
    ) -> list[float]:
        field_name, scale = _SAMPLE_FIELD[metric]
        values = [getattr(s, field_name) for s in measured(self.samples, variant, block)]
        return [v * scale for v in values if v is not None]

    def pairs(self, metric: str, block: int = 0) -> list[tuple[float, float]]:
        """(current, baseline) pairs of one A/B block, in the order they were measured."""
        current = self.measurement(metric, "current", block)
        baseline = self.measurement(metric, "baseline", block)
        return list(zip(current, baseline, strict=False))

    def blocks(self) -> int:
        return 1 + max((s.block for s in self.samples), default=0)

    def recorded(self, metric: str) -> list[tuple[float | str, bool | None]]:
        return [(value, hib) for name, value, hib in self.metrics if name == metric]


def subject_id(entry: TestEntry | FixtureEntry) -> str:
    """Tests by node id; fixtures as ``fixture:<scope node id>::<name>``."""
    if isinstance(entry, TestEntry):
        return entry.nodeid
    return f"fixture:{entry.nodeid}::{entry.name}" if entry.nodeid else f"fixture:{entry.name}"


CALIBRATED_SUFFIX = "@calibrated"


def subjects_of(record: RunRecord) -> list[Subject]:
    calibration = dict(record.calibration.get("workers", {}))
    subjects = [
        Subject(
            id=subject_id(t),
            kind="test",
            name=t.nodeid,
            markers=t.markers,
            ran=t.outcome == "passed",
            samples=t.samples,
            metrics=tuple((m.name, m.value, m.higher_is_better) for m in t.metrics),
            workers=(t.worker,) * len(t.samples),
            calibration=calibration,
        )
        for t in record.tests
    ]
    for f in record.fixtures:
        subjects.append(
            Subject(
                id=subject_id(f),
                kind="fixture",
                name=f.name,
                markers=(),
                ran=all(s.outcome == "passed" for s in f.setups),
                samples=tuple(s.sample for s in f.setups),
                metrics=tuple(
                    (m.name, m.value, m.higher_is_better) for s in f.setups for m in s.metrics
                ),
                workers=tuple(s.worker for s in f.setups),
                calibration=calibration,
            )
        )
    return subjects


def selects(gate: Gate, subject: Subject) -> bool:
    if subject.kind == "test":
        if any(fnmatch.fnmatchcase(subject.name, pattern) for pattern in gate.tests):
            return True
        return any(marker in gate.markers for marker in subject.markers)
    return any(fnmatch.fnmatchcase(subject.name, pattern) for pattern in gate.fixtures)


@dataclass(frozen=True, slots=True)
class BaselineView:
    """What the baseline holds for this run's fingerprint.

    ``measurements[subject][metric]`` are samples (seconds or bytes) from the
    fingerprint's baseline file; ``metrics[subject][metric]`` are recorded values
    (numbers or digests) shared across fingerprints.
    """

    measurements: Mapping[str, Mapping[str, Sequence[float]]]
    metrics: Mapping[str, Mapping[str, Sequence[float | str]]]
    fingerprint_note: str = ""


def mann_whitney_worse_p(current: Sequence[float], baseline: Sequence[float]) -> float:
    """One-sided p-value that ``current`` tends to be larger than ``baseline``.

    scipy's Mann-Whitney U (exact for small samples without ties, normal
    approximation with tie correction otherwise). Identical samples give p >= 0.5.
    """
    from scipy.stats import mannwhitneyu

    if len(set(current) | set(baseline)) == 1:
        return 1.0
    return float(mannwhitneyu(current, baseline, alternative="greater").pvalue)


def _worse(current: float, baseline: float, higher_is_better: bool) -> float:
    """How much worse current is than baseline, in metric units (negative: better)."""
    return baseline - current if higher_is_better else current - baseline


def _relative(worse: float, baseline: float) -> float:
    if baseline == 0:
        return math.inf if worse > 0 else 0.0
    return worse / abs(baseline)


def _exceeds(gate: Gate, worse: float, relative: float) -> list[str]:
    reasons = []
    if gate.max_regression_pct is not None and relative * 100 > gate.max_regression_pct:
        shown = "inf" if math.isinf(relative) else f"{relative * 100:.1f}%"
        reasons.append(f"{shown} worse > {gate.max_regression_pct:g}%")
    if gate.max_regression is not None and worse > gate.max_regression:
        reasons.append(f"{worse:g} worse > {gate.max_regression:g}")
    return reasons


def _budget(minimum: float | None, maximum: float | None, value: float) -> list[str]:
    reasons = []
    if minimum is not None and value < minimum:
        reasons.append(f"{value:g} < min {minimum:g}")
    if maximum is not None and value > maximum:
        reasons.append(f"{value:g} > max {maximum:g}")
    return reasons


def wilcoxon_worse_p(pairs: Sequence[tuple[float, float]]) -> float:
    """One-sided p-value that current exceeds baseline, paired: Wilcoxon signed-rank
    test on log(current / baseline) (scipy; exact for small samples)."""
    from scipy.stats import wilcoxon

    logs = [math.log(c / b) for c, b in pairs if c > 0 and b > 0]
    if not logs or all(x == 0 for x in logs):
        return 1.0
    return float(wilcoxon(logs, alternative="greater", zero_method="zsplit").pvalue)


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
    exceeded = _exceeds(gate, effect.worse, effect.relative)
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


def _evaluate_ab(gate: Gate, subject: Subject, config: GatesConfig, alpha: float) -> GateResult:
    """Same-process A/B: the test body at the baseline ref ran interleaved with the
    current one; the effect is the median paired ratio, significance is Wilcoxon's.

    A breached first block is confirmed by the re-measured blocks that followed it
    (``confirm`` in ``[defaults]``): all must breach, else the result is
    ``unconfirmed``: reported, recorded, not failing the session.
    """
    base = dict(rule=gate.rules() + ", A/B", gate=gate.name, subject=subject.id, metric=gate.metric)
    pairs = subject.pairs(gate.metric)
    if not pairs:
        return GateResult(
            status="new", reason=f"no baseline code for this test at {config.ab_ref}", **base
        )
    first = _ab_block(gate, pairs, config, alpha)
    fields = {k: v for k, v in first.items() if k not in ("breach", "reason")}
    if not first["breach"]:
        return GateResult(status="pass", reason=first["reason"], **fields, **base)
    confirmations = [
        _ab_block(gate, subject.pairs(gate.metric, block), config, alpha)
        for block in range(1, subject.blocks())
        if subject.pairs(gate.metric, block)
    ]
    if all(c["breach"] for c in confirmations):
        suffix = f"; confirmed by {len(confirmations)} re-run(s)" if confirmations else ""
        return GateResult(status="breach", reason=first["reason"] + suffix, **fields, **base)
    failed = next(c for c in confirmations if not c["breach"])
    reason = (
        f"{first['reason']}; not confirmed on re-measurement "
        f"({failed['relative'] * 100:+.1f}%: {failed['reason'] or 'within the threshold'})"
    )
    return GateResult(status="unconfirmed", reason=reason, **fields, **base)


def _evaluate_measurement(
    gate: Gate,
    subject: Subject,
    baseline: BaselineView,
    config: GatesConfig,
    alpha: float,
) -> GateResult:
    if gate.calibrated:
        values = subject.calibrated(gate.metric)
        base = dict(
            rule=gate.rules() + " (calibration units)",
            gate=gate.name,
            subject=subject.id,
            metric=gate.metric + CALIBRATED_SUFFIX,
        )
    else:
        values = subject.measurement(gate.metric)
        base = dict(rule=gate.rules(), gate=gate.name, subject=subject.id, metric=gate.metric)
    if not values:
        why = "no calibration for its worker" if gate.calibrated else "memory off, or no GPU?"
        return GateResult(status="missing", reason=f"no {gate.metric} samples ({why})", **base)
    current = statistics.median(values)
    reasons = _budget(gate.minimum, gate.maximum, current)
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
            worse = _worse(current, reference, higher_is_better=False)
            relative = _relative(worse, reference)
            result.update(baseline=reference, delta=worse, relative=relative)
            exceeded = _exceeds(gate, worse, relative)
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
    base = dict(rule=gate.rules(), gate=gate.name, subject=subject.id, metric=gate.metric)
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
    values = [float(v) for v, _ in numbers]  # type: ignore[arg-type]
    # Every recorded value must pass the budgets; report the worst one.
    reasons = _budget(gate.minimum, None, min(values)) + _budget(None, gate.maximum, max(values))
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
            worse = _worse(current, reference, higher_is_better=bool(direction))
            relative = _relative(worse, reference)
            result.update(baseline=reference, delta=worse, relative=relative)
            reasons += _exceeds(gate, worse, relative)
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


def _with_threshold(result: GateResult, gate: Gate, subject: Subject) -> GateResult:
    if gate.metric in BUILTIN_METRICS:
        direction: bool | None = False  # measurements: lower is better
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
        if not subject.ran:
            result = GateResult(
                gate=gate.name,
                subject=subject.id,
                metric=gate.metric,
                status="not-run",
                rule=gate.rules(),
                reason="skipped or failed: not gated",
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
