"""Gate evaluation: budgets, regressions, significance, digests, statuses; properties."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_rtgov.core.gate_rules import mann_whitney_worse_p
from pytest_rtgov.core.gates import evaluate_gates
from pytest_rtgov.core.gates_config import parse_gates
from pytest_rtgov.core.records import (
    FixtureEntry,
    FixtureSetup,
    Metric,
    RunRecord,
    Sample,
    TestEntry,
)
from pytest_rtgov.core.subjects import BaselineView

T = "t.py::test_k"


def run(samples_s=(), metrics=(), outcome="passed", fixture_metrics=()) -> RunRecord:
    test = TestEntry(
        nodeid=T,
        outcome=outcome,
        worker="main",
        rounds=max(1, len(samples_s)),
        samples=tuple(
            Sample(wall_ns=round(s * 1e9), cpu_ns=1, peak_memory_bytes=100) for s in samples_s
        ),
        metrics=tuple(metrics),
    )
    fixture = FixtureEntry(
        nodeid="",
        name="model",
        scope="session",
        setups=tuple(
            FixtureSetup(
                worker=w, requested_by=T, outcome="passed", sample=Sample(5, 5), metrics=ms
            )
            for w, ms in fixture_metrics
        ),
    )
    return RunRecord(
        run_id="r",
        started_at="",
        ended_at="",
        mode="gate",
        pytest_args=(),
        memory_mode="tracemalloc",
        backend="numpy",
        workers=("main",),
        environment={},
        tests=(test,),
        fixtures=(fixture,) if fixture_metrics else (),
    )


def config(**gate):
    base = {"name": "g", "metric": "wall_time", "tests": ["t.py::*"]}
    base.update(gate)
    return parse_gates({"gates": [base], "defaults": {"min_samples": 5}}, source="gates.toml")


def view(measurements=None, metrics=None):
    # baselines are stored from records: quantized to nanoseconds like the samples
    return BaselineView(
        measurements={T: {"wall_time": [round(s * 1e9) * 1e-9 for s in measurements]}}
        if measurements
        else {},
        metrics=metrics or {},
    )


def only(results):
    (result,), empty = results
    assert empty == []
    return result


def test_budget_on_the_median_of_measured_rounds():
    r = only(evaluate_gates(config(max="10 ms"), run([0.005, 0.020, 0.006]), view()))
    assert r.status == "pass" and r.current == 0.006
    r = only(evaluate_gates(config(max="5 ms"), run([0.005, 0.020, 0.006]), view()))
    assert r.status == "breach" and "> max 0.005" in r.reason


def test_clear_slowdown_with_enough_rounds_breaches_with_a_p_value():
    base = [0.010, 0.0101, 0.0099, 0.0102, 0.0098, 0.0100, 0.0101]
    slow = [x * 1.5 for x in base]
    r = only(evaluate_gates(config(max_regression_pct=10), run(slow), view(base)))
    assert r.status == "breach"
    assert r.relative == 0.5 or math.isclose(r.relative, 0.5)
    assert r.p_value is not None and r.p_value < 0.01


def test_effect_without_significance_passes_with_the_reason():
    base = [0.010, 0.030, 0.011, 0.029, 0.012, 0.028, 0.020]
    noisy = [0.012, 0.031, 0.013, 0.030, 0.014, 0.027, 0.025]
    r = only(evaluate_gates(config(max_regression_pct=10), run(noisy), view(base)))
    assert r.status == "pass" and "not significant" in r.reason


def test_few_samples_use_the_threshold_alone():
    r = only(evaluate_gates(config(max_regression_pct=10), run([0.012]), view([0.010])))
    assert r.status == "breach" and r.p_value is None


def test_zero_baseline_makes_any_worsening_infinite():
    cfg = parse_gates(
        {"gates": [{"name": "g", "metric": "errors", "tests": ["*"], "max_regression_pct": 50}]},
        source="g",
    )
    rec = run(metrics=[Metric("errors", 1.0, higher_is_better=False)])
    r = only(evaluate_gates(cfg, rec, view(metrics={T: {"errors": [0.0]}})))
    assert r.status == "breach" and math.isinf(r.relative)
    rec = run(metrics=[Metric("errors", 0.0, higher_is_better=False)])
    assert only(evaluate_gates(cfg, rec, view(metrics={T: {"errors": [0.0]}}))).status == "pass"


def test_direction_of_recorded_metrics():
    cfg = parse_gates(
        {"gates": [{"name": "a", "metric": "acc", "tests": ["*"], "max_regression": 0.02}]},
        source="g",
    )
    base = view(metrics={T: {"acc": [0.95]}})
    worse = run(metrics=[Metric("acc", 0.90, higher_is_better=True)])
    better = run(metrics=[Metric("acc", 0.99, higher_is_better=True)])
    assert only(evaluate_gates(cfg, worse, base)).status == "breach"
    assert only(evaluate_gates(cfg, better, base)).status == "pass"
    undirected = run(metrics=[Metric("acc", 0.99)])
    r = only(evaluate_gates(cfg, undirected, base))
    assert r.status == "breach" and "declares no direction" in r.reason


def test_every_worker_value_must_pass_and_the_worst_is_reported():
    cfg = parse_gates(
        {"gates": [{"name": "l", "metric": "loss", "fixtures": ["model"], "max": 0.5}]}, source="g"
    )
    rec = run(
        fixture_metrics=[
            ("gw0", (Metric("loss", 0.4, higher_is_better=False),)),
            ("gw1", (Metric("loss", 0.7, higher_is_better=False),)),
        ]
    )
    r = only(evaluate_gates(cfg, rec, view()))
    assert r.subject == "fixture:model" and r.status == "breach" and r.current == 0.7


def test_exact_digests():
    cfg = parse_gates(
        {"gates": [{"name": "d", "metric": "w", "tests": ["*"], "exact": True}]}, source="g"
    )
    rec = run(metrics=[Metric("w", "sha256:aa")])
    assert only(evaluate_gates(cfg, rec, view())).status == "new"
    assert only(evaluate_gates(cfg, rec, view(metrics={T: {"w": ["sha256:aa"]}}))).status == "pass"
    r = only(evaluate_gates(cfg, rec, view(metrics={T: {"w": ["sha256:bb"]}})))
    assert r.status == "breach" and r.baseline == "sha256:bb"


def test_missing_metric_that_the_baseline_had_breaches_and_others_are_not_gated():
    cfg = parse_gates(
        {"gates": [{"name": "a", "metric": "acc", "tests": ["*"], "min": 0.9}]}, source="g"
    )
    r = only(evaluate_gates(cfg, run(), view(metrics={T: {"acc": [0.95]}})))
    assert r.status == "missing"
    results, empty = evaluate_gates(cfg, run(), view())
    assert results == [] and empty == ["a"]


def test_failed_tests_are_not_gated():
    r = only(evaluate_gates(config(max="1 ms"), run([0.5], outcome="failed"), view()))
    assert r.status == "not-run" and not r.breached


samples = st.lists(st.floats(1e-4, 1.0), min_size=5, max_size=12)


@settings(max_examples=200, deadline=None)
@given(samples)
def test_identical_samples_never_breach(values):
    r = only(evaluate_gates(config(max_regression_pct=0), run(values), view(values)))
    assert r.status == "pass"


@settings(max_examples=200, deadline=None)
@given(samples, samples, st.floats(1.0, 5.0))
def test_a_larger_effect_never_turns_a_breach_into_a_pass(base, current, factor):
    cfg = config(max_regression_pct=10)
    first = only(evaluate_gates(cfg, run(current), view(base)))
    larger = only(evaluate_gates(cfg, run([x * factor for x in current]), view(base)))
    if first.status == "breach":
        assert larger.status == "breach"


def test_mann_whitney_direction():
    assert mann_whitney_worse_p([2, 3, 4, 5, 6], [1, 1.1, 1.2, 1.3, 1.4]) < 0.01
    assert mann_whitney_worse_p([1, 1.1, 1.2, 1.3, 1.4], [2, 3, 4, 5, 6]) > 0.99
    assert mann_whitney_worse_p([1, 1, 1], [1, 1, 1]) == 1.0


def ab_run(pairs, *confirmations):
    samples = []
    for block, block_pairs in enumerate((pairs, *confirmations)):
        for cur, base in block_pairs:
            samples.append(Sample(round(cur * 1e9), 1, variant="current", block=block))
            samples.append(Sample(round(base * 1e9), 1, variant="baseline", block=block))
    rec = run()
    test = rec.tests[0]
    import dataclasses

    return dataclasses.replace(rec, tests=(dataclasses.replace(test, samples=tuple(samples)),))


def test_ab_gate_uses_paired_rounds_of_the_same_session():
    cfg = config(max_regression_pct=5, ab=True)
    base = [0.010 + 0.001 * (i % 3) for i in range(20)]
    slow = [(b * 1.2, b) for b in base]
    r = only(evaluate_gates(cfg, ab_run(slow), view()))
    assert r.status == "breach" and abs(r.relative - 0.2) < 1e-6 and r.p_value < 1e-4
    same = [(b, b) for b in base]
    assert only(evaluate_gates(cfg, ab_run(same), view())).status == "pass"
    assert only(evaluate_gates(cfg, run([0.01] * 5), view())).status == "new"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(1e-3, 1.0), min_size=5, max_size=25))
def test_ab_identical_pairs_never_breach(values):
    cfg = config(max_regression_pct=0, ab=True)
    assert only(evaluate_gates(cfg, ab_run([(v, v) for v in values]), view())).status == "pass"


def test_a_breach_that_does_not_hold_on_re_measurement_is_unconfirmed():
    cfg = config(max_regression_pct=5, ab=True)
    base = [0.010 + 0.001 * (i % 3) for i in range(20)]
    slow = [(b * 1.2, b) for b in base]
    same = [(b, b) for b in base]
    r = only(evaluate_gates(cfg, ab_run(slow, same), view()))
    assert r.status == "unconfirmed" and not r.breached
    assert "not confirmed on re-measurement" in r.reason
    r = only(evaluate_gates(cfg, ab_run(slow, slow), view()))
    assert r.status == "breach" and "confirmed by 1 re-run(s)" in r.reason


def test_calibrated_gate_divides_by_the_workers_calibration_and_shares_the_baseline():
    import dataclasses

    cfg = config(max_regression_pct=10, calibrated=True)
    rec = dataclasses.replace(
        run([0.002] * 5), calibration={"kernel": "k", "workers": {"main": 1_000_000}}
    )
    # 2 ms on a machine whose calibration takes 1 ms: 2.0 calibration units
    r = only(evaluate_gates(cfg, rec, view()))
    assert r.status == "new" and r.metric == "wall_time@calibrated" and r.current == 2.0
    shared = view(metrics={T: {"wall_time@calibrated": [2.0] * 5}})
    assert only(evaluate_gates(cfg, rec, shared)).status == "pass"
    slower = view(metrics={T: {"wall_time@calibrated": [1.5] * 5}})
    assert only(evaluate_gates(cfg, rec, slower)).status == "breach"
    uncalibrated = run([0.002] * 5)
    assert only(evaluate_gates(cfg, uncalibrated, view())).status == "missing"
