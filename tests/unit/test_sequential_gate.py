"""The A/B gate on the sequential rule: settings, the verdict re-derived from the
record, the clock recorded in the result."""

from __future__ import annotations

import dataclasses
import random

import pytest

from pytest_rtgov.core.gates import evaluate_gates
from pytest_rtgov.core.gates_config import GatesConfigError, parse_gates
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.core.verdict import GateResult
from tests.unit.test_gates import T, run, view
from tests.unit.test_sequential import session


def config(**defaults):
    gate = {"name": "k", "metric": "wall_time", "tests": [T], "max_regression_pct": 5, "ab": True}
    return parse_gates({"defaults": defaults, "gates": [gate]}, source="gates.toml")


def record(samples) -> RunRecord:
    rec = run()
    entry = dataclasses.replace(rec.tests[0], samples=tuple(samples))
    return dataclasses.replace(rec, tests=(entry,))


def gate(cfg, samples) -> GateResult:
    results, _ = evaluate_gates(cfg, record(samples), view())
    (result,) = results
    return result


def test_defaults_and_the_cap_below_the_first_look():
    cfg = config()
    assert (cfg.ab_pairs, cfg.ab_max_pairs, cfg.ab_max_seconds, cfg.confirm) == (20, 100, 30, 0)
    # unset, the A/B reference is the accepted code, else a pull request's merge base
    # (store/ab_ref.py), never plainly HEAD, which in CI compares a commit with itself
    assert cfg.ab_ref == "accepted"
    with pytest.raises(GatesConfigError, match=r"ab_max_pairs: expected at least ab_pairs"):
        config(ab_pairs=30, ab_max_pairs=20)
    with pytest.raises(GatesConfigError, match=r"defaults.ab_max_seconds"):
        config(ab_max_seconds=0)


def test_a_clear_slowdown_breaches_at_the_first_look_on_cpu_time_and_says_so():
    samples = session(random.Random(2), 20, effect=0.3, noise=0.01, load=0.3)
    result = gate(config(), samples)
    assert result.status == "breach" and result.clock == "cpu_time"
    assert "look 1 of 5, 20 pairs" in result.reason
    assert "on cpu_time (CPU-bound, single-threaded" in result.reason
    assert "pairs disturbed (a round waited for a core), kept" in result.reason
    assert abs(result.relative - 0.3) < 0.02


def test_unchanged_code_is_clearly_within_at_the_first_look():
    result = gate(config(), session(random.Random(4), 20, noise=0.005))
    assert result.status == "pass" and "clearly within" in result.reason
    assert result.clock == "cpu_time"


def test_the_verdict_is_re_derived_from_the_pairs_of_the_looks_alone():
    """Pairs past the deciding look (the plugin measured on) do not change it."""
    rng = random.Random(9)
    decided = session(rng, 20, effect=0.3, noise=0.01)
    more = decided + session(rng, 30, effect=-0.2, noise=0.01)
    assert gate(config(), decided).reason == gate(config(), more).reason


def test_an_open_case_at_the_time_cap_passes_and_says_why():
    samples = session(random.Random(6), 25, effect=0.06, noise=0.4)
    result = gate(config(), samples)
    assert result.status == "pass"
    assert "no decision at look 1 of 5, 20 pairs (measuring stopped before the cap" in (
        result.reason
    )


def test_waiting_code_is_judged_on_wall_time():
    samples = session(random.Random(6), 20, effect=0.3, noise=0.01, share=0.2)
    result = gate(config(), samples)
    assert result.clock == "wall_time" and "waits" in result.reason


def test_the_clock_round_trips_and_old_results_read():
    result = GateResult("g", T, "wall_time", "pass", "A/B", clock="cpu_time")
    assert GateResult.from_dict(result.to_dict()) == result
    old = dataclasses.replace(result, clock=None).to_dict()
    assert "clock" not in old and GateResult.from_dict(old).clock is None


def test_the_loops_alpha_is_no_larger_than_the_gates():
    from pytest_rtgov.plugin.ab import plan_of

    settings = {"pairs": 20, "max_pairs": 100, "confidence": 0.99, "regression_gates": 2}
    plan = plan_of(settings, tests=3)
    assert plan.looks() == (20, 40, 60, 80, 100)
    assert plan.alpha == pytest.approx(0.01 / 6) and plan.gamma == pytest.approx(0.01)
    # the gate: one A/B gate on one test: m = 1, alpha 0.01 >= the loop's
    samples = session(random.Random(2), 20, effect=0.3, noise=0.01)
    assert "< 0.002;" in gate(config(), samples).reason  # 0.01 * 20 / 100
