"""A stage's key and lookup run before its setup's measured region: a hit's region is
the load alone, measured with the cheap probe under ``--rtgov-memory auto`` even where a
memory gate selects the stage (a hit's measurements are not judged)."""

from __future__ import annotations

import pytest

from tests.conftest import latest_record
from tests.plugin._stage_project import write_project

GATES = """
[[gates]]
name = "pretrain memory"
metric = "peak_memory"
fixtures = ["pretrain"]
max = "256 MiB"
"""


def _setups(root) -> dict[str, dict]:
    record = latest_record(root)
    return {
        f["name"]: s for f in record["fixtures"] for s in f["setups"] if "stage" in s
    }


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    write_project(pytester)
    pytester.makefile(".toml", gates=GATES)
    return pytester


def test_a_hit_is_measured_cheaply_and_says_what_its_key_cost(project):
    cold = project.runpytest("--rtgov-gate", "-p", "no:cacheprovider")
    assert cold.ret == 0, cold.stdout.str()
    ran = _setups(project.path)["pretrain"]
    assert ran["stage"]["outcome"] == "stored"
    assert ran["sample"]["memory_probe"] == "tracemalloc"  # the gate selects the run
    warm = project.runpytest("--rtgov-gate", "-p", "no:cacheprovider")
    assert warm.ret == 0, warm.stdout.str()
    setups = _setups(project.path)
    assert {name: s["stage"]["outcome"] for name, s in setups.items()} == dict.fromkeys(
        ("prepare", "pretrain", "finetune", "evaluate"), "hit"
    )
    hit = setups["pretrain"]
    assert hit["sample"]["memory_probe"] == "rss"
    assert hit["stage"]["key_ns"] > 0
    # a hit is not measured for the gate: the memory gate did not judge it
    results = {(r["subject"], r["gate"]): r for r in latest_record(project.path)["gate_results"]}
    assert results[("fixture:pretrain", "pretrain memory")]["status"] == "not-run"


def test_a_recheck_is_measured_as_a_run(project):
    assert project.runpytest("--rtgov-gate", "-p", "no:cacheprovider").ret == 0
    again = project.runpytest(
        "--rtgov-gate", "-p", "no:cacheprovider", "--rtgov-stage-recheck", "pretrain"
    )
    assert again.ret == 0, again.stdout.str()
    rechecked = _setups(project.path)["pretrain"]
    assert rechecked["stage"]["outcome"] == "recheck"
    assert rechecked["sample"]["memory_probe"] == "tracemalloc"
