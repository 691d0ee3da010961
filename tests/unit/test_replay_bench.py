"""The replay bench (benches/replay.py): its step order, its summary maths and table,
and its quick mode end to end."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benches"))

import replay as bench  # noqa: E402


def _session(process_s: float, loop_s: float, **extra: float) -> dict:
    return {
        "process_s": process_s,
        "process_cpu_s": process_s * 0.9,
        "loop_s": loop_s,
        "loop_cpu_s": loop_s * 0.9,
        "maxrss_kib": 160 * 1024,
        "loadavg_1m": [0.5, 1.5],
        **extra,
    }


def _replay(process_s: float, loop_s: float, session_s: float) -> dict:
    return _session(
        process_s, loop_s, session_s=session_s, beyond_session_s=process_s - session_s
    )


def _result() -> dict:
    rounds = []
    for i, replay_loop in enumerate([2.0, 2.5, 4.0]):
        rounds.append({
            "gate": _session(6.0, 3.0),
            "gate_warm": _session(3.0, 1.0 + i),  # 1, 2, 3
            "replay": _replay(5.0, replay_loop, 4.5),
        })  # fmt: skip
    return {"conditions": {"quiet": {"rounds": rounds}}}


def test_step_order_is_seeded_and_keeps_each_step_after_what_it_needs():
    orders = {tuple(bench.step_order(random.Random(seed))) for seed in range(40)}
    assert len(orders) > 5  # shuffled
    for order in orders:
        assert sorted(order) == sorted(bench.STEPS)
        for step, needs in bench.STEPS.items():
            assert all(order.index(n) < order.index(step) for n in needs), order
    assert bench.step_order(random.Random(3)) == bench.step_order(random.Random(3))
    with pytest.raises(ValueError, match="need each other"):
        bench.step_order(random.Random(1), {"a": ("b",), "b": ("a",)})


def test_summary_pairs_each_replay_with_the_originals_of_its_round():
    summary = bench.summarise(_result())["quiet"]
    gate = summary["ratios"]["gate"]
    # replay loop / gate loop: 2/3, 2.5/3, 4/3 -> median 0.8333, two rounds within 1.2
    assert gate["test_time"]["median"] == pytest.approx(0.8333, abs=1e-4)
    assert (gate["rounds_within"], gate["met"]) == (2, True)
    assert gate["command_over_process"]["median"] == pytest.approx(5.0 / 6.0, abs=1e-4)
    assert gate["session_over_process"]["median"] == 0.75
    assert gate["test_cpu"]["median"] == pytest.approx(0.8333, abs=1e-4)  # both 0.9 x wall
    warm = summary["ratios"]["gate_warm"]
    # 2/1, 2.5/2, 4/3 -> median 1.3333: not met, no round within
    assert warm["test_time"]["median"] == pytest.approx(1.3333, abs=1e-4)
    assert (warm["rounds_within"], warm["met"]) == (0, False)
    assert "nocache" not in summary["ratios"]  # not measured: no ratio
    assert summary["steps"]["replay"]["beyond_session_s"]["median"] == 0.5
    assert summary["loadavg_1m"]["median"] == 1.0 and summary["loadavg_1m"]["n"] == 18


def test_table_names_each_original_and_says_whether_the_target_is_met():
    result = _result()
    result["summary"] = bench.summarise(result)
    result["conditions"]["quiet"]["compare"] = {
        "real": {"workload: 1-ULP fault": {"ms": 6.0, "mib": 1.5, "ms_per_mib": 4.0,
                                           "tracemalloc_peak_mib": 2.0, "rss_delta_mib": 1.0}},
        "synthetic": {},
    }  # fmt: skip
    lines = bench.table(result)
    assert any(bench.LABELS["gate"] in line and "0.83" in line and " met " in line
               and "| 2/3 |" in line for line in lines)  # fmt: skip
    assert any(bench.LABELS["gate_warm"] in line and "NOT met" in line for line in lines)
    assert "| quiet | workload: 1-ULP fault | 1.5 | 6.00 | 4.00 | 2.0 | 1.0 |" in lines


def test_per_mib():
    assert bench.per_mib(8.0, 2 * 2**20) == 4.0
    assert bench.per_mib(0.3, 0) is None  # nothing read: no rate


@pytest.mark.slow
def test_quick_mode_runs_end_to_end(tmp_path):
    out = tmp_path / "replay.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benches/replay.py"), "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-6000:]
    result = json.loads(out.read_text())
    rounds = result["conditions"]["quiet"]["rounds"]
    assert rounds[0]["replay"]["outcome"] == "identical"
    assert rounds[0]["replay_fault"]["outcome"] == "diverged"
    assert set(result["summary"]["quiet"]["ratios"]) == set(bench.ORIGINALS)
    compare = result["conditions"]["quiet"]["compare"]
    assert any("1-ULP fault" in name and row["mib"] > 0 for name, row in compare["real"].items())
    assert len(compare["synthetic"]) == 4  # three cases and the read, 1 MiB
