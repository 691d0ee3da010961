"""The reference workload itself, recorded with and without xdist (slow: trains twice)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import latest_record

ROOT = Path(__file__).resolve().parents[2]


def _run(state: Path, *extra: str) -> dict:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/workload",
            "--rtgov",
            f"--rtgov-dir={state}",
            "-p",
            "no:cacheprovider",
            "-q",
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return latest_record(state, ".")


@pytest.mark.slow
def test_workload_records_every_test_and_the_training_setup_under_n0_and_n2(tmp_path):
    serial = _run(tmp_path / "serial", "-n", "0")
    parallel = _run(tmp_path / "parallel", "-n", "2")
    assert [t["nodeid"] for t in serial["tests"]] == [t["nodeid"] for t in parallel["tests"]]
    for record in (serial, parallel):
        for test in record["tests"]:
            assert test["outcome"] == "passed"
            measured = [s for s in test["samples"] if not s["warmup"]]
            assert len(measured) == test["rounds"] >= 1
            for s in measured:
                assert s["wall_ns"] > 0 and s["cpu_ns"] > 0
                # the default memory mode (auto): tracemalloc where gates.toml's memory
                # gates select (the kernel tests), the resident-set probe elsewhere, whose
                # peak is 0 when a test touched no new page
                if "test_kernel_perf.py" in test["nodeid"]:
                    assert s["memory_probe"] == "tracemalloc" and s["peak_memory_bytes"] > 0
                else:
                    assert s["memory_probe"] == "rss" and s["peak_memory_bytes"] >= 0
        # training is four stages; in a fresh state directory each runs once (under
        # -n 2 one worker stores it, the other waits on its key's lock and hits)
        stages = {f["name"]: f for f in record["fixtures"] if "stage" in f["setups"][0]}
        assert sorted(stages) == ["dataset", "evaluate", "finetune", "pretrain"]
        for stage in stages.values():
            outcomes = sorted(s["stage"]["outcome"] for s in stage["setups"])
            assert outcomes == (["stored"] if len(outcomes) == 1 else ["hit", "stored"])
        pretrain = stages["pretrain"]
        assert [s["worker"] for s in pretrain["setups"]] == record["workers"]
        (ran,) = [s for s in pretrain["setups"] if s["stage"]["outcome"] == "stored"]
        assert ran["sample"]["wall_ns"] > 0 and ran["sample"]["peak_memory_bytes"] > 0
        assert ran["sample"]["memory_probe"] == "tracemalloc"  # a memory gate selects it
        for setup in pretrain["setups"]:  # a hit records the metrics sealed in the entry
            assert {"train_loss", "epochs"} <= {m["name"] for m in setup["metrics"]}
        metrics = {m["name"]: m for t in record["tests"] for m in t["metrics"]}
        assert metrics["val_accuracy"]["value"] >= 0.9
        assert metrics["val_loss"]["higher_is_better"] is False
    # training is seeded: both workers and both sessions produce the same weights
    digests = {
        m["value"]
        for record in (serial, parallel)
        for f in record["fixtures"]
        if f["name"] == "finetune"
        for s in f["setups"]
        for m in s["metrics"]
        if m["name"] == "weights_digest"
    }
    assert len(digests) == 1
