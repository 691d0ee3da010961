"""Timing budgets and the machine's load: waiting is not work.

A test that sleeps stands in for one descheduled on a loaded machine: its wall time
grows, its CPU time does not. A budget on ``cpu_time`` ignores the waiting and still
catches real CPU work; a budget on ``wall_time`` counts both, and its breach says when
the CPU time stayed within the maximum. The amounts of sleep and work are fixed in
seconds of their own clock, so the verdicts do not depend on the machine's speed or load.
"""

from __future__ import annotations

import json
from pathlib import Path

from pytest_rtgov.core.constants import EXIT_GATE_BREACHED
from pytest_rtgov.store.gates_file import load_gates

ROOT = Path(__file__).resolve().parents[2]

SUITE = """
import time
import pytest

@pytest.mark.rtgov(rounds=2)
def test_waits():
    time.sleep(0.25)  # wall time, almost no CPU time

@pytest.mark.rtgov(rounds=2)
def test_works():
    start = time.process_time()
    while time.process_time() - start < 0.25:  # 250 ms of CPU time
        pass
"""

GATES = """
[[gates]]
name = "cpu budget"
metric = "cpu_time"
tests = ["test_budget.py::*"]
max = "100 ms"

[[gates]]
name = "wall budget"
metric = "wall_time"
tests = ["test_budget.py::*"]
max = "100 ms"
"""


def _results(pytester) -> dict[tuple[str, str], dict]:
    base = pytester.path / ".rtgov"
    run_id = (base / "latest").read_text().strip()
    record = json.loads((base / "runs" / f"{run_id}.json").read_text())
    return {(g["gate"], g["subject"].split("::")[-1]): g for g in record["gate_results"]}


def test_a_cpu_budget_ignores_waiting_and_catches_work(pytester):
    pytester.makepyfile(test_budget=SUITE)
    pytester.makefile(".toml", gates=GATES)
    result = pytester.runpytest("--rtgov-gate", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert result.ret == EXIT_GATE_BREACHED
    results = _results(pytester)

    waits = results[("cpu budget", "test_waits")]
    assert waits["status"] == "pass"
    assert waits["current"] < 0.1

    works = results[("cpu budget", "test_works")]
    assert works["status"] == "breach"
    assert works["current"] >= 0.25
    assert "> max 0.1" in works["reason"]


def test_a_wall_budget_breach_says_when_the_cpu_time_was_within_it(pytester):
    pytester.makepyfile(test_budget=SUITE)
    pytester.makefile(".toml", gates=GATES)
    assert pytester.runpytest("--rtgov-gate", "-p", "no:cacheprovider").ret == EXIT_GATE_BREACHED
    results = _results(pytester)

    waits = results[("wall budget", "test_waits")]
    assert waits["status"] == "breach"  # a wall-time budget keeps its meaning
    assert "the rest was waiting" in waits["reason"]
    assert "budget CPU-bound code on cpu_time" in waits["reason"]

    works = results[("wall budget", "test_works")]
    assert works["status"] == "breach"
    assert "waiting" not in works["reason"]  # the CPU time exceeded the budget too


def test_the_reference_gates_file_budgets_time_on_cpu_time():
    """`make gate` must not fail on a loaded machine with the code unchanged: its time
    budgets are on CPU time, which waiting for the cores does not stretch."""
    budgets = [
        gate
        for gate in load_gates(ROOT / "gates.toml").gates
        if gate.metric in ("wall_time", "cpu_time")
        and (gate.minimum is not None or gate.maximum is not None)
    ]
    assert budgets
    assert [(g.name, g.metric) for g in budgets if g.metric != "cpu_time"] == []
