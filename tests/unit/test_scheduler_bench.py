"""The scheduler bench (benches/scheduler.py): its synthetic inputs, the golden plan
digests, its summary maths and table, and one measurement child end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benches"))

import scheduler as bench  # noqa: E402

GOLDEN = json.loads((ROOT / "benches" / "scheduler_golden.json").read_text())["digests"]


def test_node_ids_are_the_issues_synthetic_collection() -> None:
    ids = bench.node_ids(250)
    assert ids[0] == "tests/test_m0.py::test_0"
    assert ids[199] == "tests/test_m1.py::test_199"
    assert ids[249] == "tests/test_m2.py::test_249"
    assert len(set(ids)) == 250


def test_cost_model_is_seeded_skewed_and_exact() -> None:
    ids = bench.node_ids(2000)
    costs = bench.cost_model(ids, 42)
    assert costs == bench.cost_model(ids, 42)
    assert costs != bench.cost_model(ids, 43)
    assert set(costs.values()) <= {100 * k**3 / 1e6 for k in range(1, 17)}
    assert min(costs.values()) == 100e-6 and max(costs.values()) == 100 * 16**3 / 1e6


def test_groups_only_under_the_group_policy() -> None:
    ids = bench.node_ids(3)
    assert bench.groups_of(ids, "lpt") == {}
    assert bench.groups_of(ids, "group") == dict.fromkeys(ids, "tests/test_m0.py")


def test_the_10000_task_plan_has_the_golden_digest() -> None:
    # The bench's headline plan: --tasks 10000 --seed 42 --workers 8, lpt (20-30 ms).
    plan = bench.golden_plan("lpt", 10_000, 42, 8)
    assert plan.digest == GOLDEN["lpt/10000/42/8"]
    assert len(plan.workers) == 8 and len(plan.nodeids) == 10_000


@pytest.mark.parametrize("key", sorted(GOLDEN))
def test_every_golden_digest_is_recomputed(key: str) -> None:
    policy, tasks, seed, workers = key.split("/")
    plan = bench.golden_plan(policy, int(tasks), int(seed), int(workers))
    assert plan.digest == GOLDEN[key]


def test_a_different_seed_gives_another_plan() -> None:
    assert bench.golden_plan("lpt", 1000, 43, 8).digest != GOLDEN["lpt/1000/42/8"]


def _run(wall: float, cpu: float, peak: float = 3.0, rss: float = 2.0) -> dict:
    return {"wall_s": wall, "cpu_s": cpu, "tracemalloc_peak_mib": peak, "rss_delta_mib": rss,
            "digest": "sha256:ab"}  # fmt: skip


def test_cell_takes_medians_and_per_task_costs() -> None:
    c = bench.cell([_run(0.03, 0.02), _run(0.01, 0.01), _run(0.02, 0.02)], 10_000)
    assert c["wall_s"] == {"median": 0.02, "min": 0.01, "max": 0.03, "n": 3}
    assert c["per_task_us"] == 2.0 and c["per_task_cpu_us"] == 2.0
    assert c["digest"] == "sha256:ab"


def _result(small: float, big: float, digest: str = "sha256:ab") -> dict:
    head = bench.cell([_run(small * 1e4, small * 1e4)], 10_000)
    scaled = bench.cell([_run(big * 1e5, big * 1e5, peak=40.0)], 100_000)
    head["digest"] = digest
    return {
        "tasks": 10_000, "scale": 100_000, "golden": "sha256:ab",
        "cells": {"plan_record/10000": head, "plan_record/100000": scaled},
        "workload": {"quiet": {"load": bench.stat([10.0, 11.0, 12.0]),
                               "lpt": bench.stat([12.5, 13.0, 14.0]),
                               "loadavg_1m": bench.stat([0.5])}},
    }  # fmt: skip


def test_judge_meets_and_misses_each_target() -> None:
    ok = bench.judge(_result(small=3e-6, big=3.3e-6))
    assert ok["plan_record_s"]["met"] and ok["plan_record_s"]["value"] == 0.03
    assert ok["per_task_ratio"]["met"] and ok["per_task_ratio"]["value"] == 1.1
    assert ok["digest"]["met"] and ok["tracemalloc_peak_mib"]["met"]
    assert not ok["workload_quiet"]["met"]  # 13.0 / 11.0 > 1.10
    bad = bench.judge(_result(small=6e-5, big=8e-5, digest="sha256:cd"))
    assert not bad["plan_record_s"]["met"]  # 0.6 s
    assert not bad["per_task_ratio"]["met"] and not bad["digest"]["met"]


def test_paired_ratios_pair_consecutive_sessions_of_both_modes() -> None:
    sessions = [{"mode": "lpt", "wall_s": 9.0}, {"mode": "load", "wall_s": 10.0},
                {"mode": "load", "wall_s": 20.0}, {"mode": "lpt", "wall_s": 22.0},
                {"mode": "load", "wall_s": 5.0}]  # fmt: skip
    assert bench.paired_ratios(sessions) == [0.9, 1.1]


def test_table_lists_cells_in_order_and_every_target() -> None:
    result = _result(small=3e-6, big=3.3e-6)
    result["targets"] = bench.judge(result)
    lines = bench.table(result)
    rows = [line for line in lines if line.startswith("| plan_record |")]
    assert [row.split(" | ")[1] for row in rows] == ["10,000", "100,000"]
    assert any(line.startswith("| quiet | lpt | 13.00") for line in lines)
    assert sum(line.endswith("| NO |") for line in lines) == 1


def test_a_child_measures_each_phase(tmp_path: Path) -> None:
    spec = {"seed": 42, "workers": 4, "policy": "lpt", "tasks": 200}
    plan = bench.run_child({**spec, "phase": "plan"}, ROOT)
    record = bench.run_child({**spec, "phase": "plan_record"}, ROOT)
    check = bench.run_child({**spec, "phase": "check"}, ROOT)
    expected = bench.golden_plan("lpt", 200, 42, 4).digest
    assert plan["digest"] == record["digest"] == expected
    assert "digest" not in check
    for done in (plan, record, check):
        assert done["wall_s"] > 0 and done["tracemalloc_peak_mib"] >= 0
    profile = bench.run_child({**spec, "phase": "plan_record", "profile": True}, ROOT)
    assert profile["total_ms"] > 0 and profile["functions"]


def test_profiles_merge_into_each_functions_median() -> None:
    def run(total: float, **own: float) -> dict:
        return {"total_ms": total, "functions": [
            {"function": name, "own_us_per_task": value} for name, value in own.items()]}

    merged = bench.merged_profile([run(10, a=1.0, b=0.5), run(30, a=3.0), run(20, a=2.0, b=0.7)])
    assert merged["total_ms"]["median"] == 20 and merged["runs"] == 3
    assert merged["functions"] == [{"function": "a", "own_us_per_task": 2.0},
                                   {"function": "b", "own_us_per_task": 0.5}]
