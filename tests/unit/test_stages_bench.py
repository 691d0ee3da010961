"""The stage-cache bench (benches/stages.py): its summary, its key timing, its quick mode;
and the normal form of code digests it led to (no deep copy of the tree)."""

from __future__ import annotations

import ast
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_rtgov.core import stage_code

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benches"))

import stages as bench  # noqa: E402


def _session(process_s: float, rss: int, stages: dict[str, tuple[str, float]] | None = None):
    session = {
        "process_s": process_s,
        "process_cpu_s": process_s / 2,
        "loop_s": process_s - 3,
        "loop_cpu_s": (process_s - 3) / 2,
        "maxrss_kib": rss,
        "loadavg_1m": [1.0, 1.5],
    }
    if stages is not None:
        session["stages"] = {
            name: {"outcome": outcome, "wall_ms": wall, "cpu_ms": wall / 2,
                   "memory_probe": "tracemalloc" if name == "pretrain" else "rss",
                   "gen2_gc": int(wall == 70.0), "gen2_gc_cpu_ms": 20.0 if wall == 70.0 else 0.0}
            for name, (outcome, wall) in stages.items()
        }  # fmt: skip
    return session


def _fake_result(hit_ms: dict[str, list[float]]) -> dict:
    rounds = []
    for i in range(len(hit_ms["dataset"])):
        cold = _session(10.0 + i, 160_000, {n: ("stored", 1000.0) for n in bench.STAGES})
        warm = _session(6.0 + i, 150_000 + i, {n: ("hit", v[i]) for n, v in hit_ms.items()})
        rounds.append({"plain": _session(8.0, 140_000), "auto": {"cold": cold, "warm": warm}})
    artifacts = {n: {"bytes": 2**20, "sha256_ms": 0.5} for n in bench.STAGES}
    artifacts["pretrain"] = {"bytes": 200 * 2**20, "sha256_ms": 100.0}  # target 120 ms
    return {"modes": ["auto"], "conditions": {"quiet": {"rounds": rounds, "artifacts": artifacts}}}


def test_summary_judges_each_hit_against_max_of_floor_and_hash_time():
    hits = {
        "dataset": [40.0, 45.0, 70.0],  # median 45 <= 50
        "pretrain": [110.0, 115.0, 130.0],  # median 115 <= 1.2 x 100
        "finetune": [50.0, 60.0, 61.0],  # median 60 > 50: a miss
        "evaluate": [5.0, 5.0, 5.0],
    }
    summary = bench.summarise(_fake_result(hits))["quiet"]
    stages = summary["auto"]["stages"]
    assert stages["dataset"]["target_ms"] == 50.0 and stages["dataset"]["met"]
    assert stages["dataset"]["rounds_within"] == 2
    assert stages["dataset"]["rounds_with_full_gc"] == 1  # the 70 ms round
    assert stages["dataset"]["hit_cpu_ms_less_full_gc"]["median"] == 20.0  # 20, 22.5, 35 - 20
    assert stages["dataset"]["hit_wall_ms_without_full_gc"]["median"] == 42.5
    assert stages["pretrain"]["target_ms"] == 120.0 and stages["pretrain"]["met"]
    assert not stages["finetune"]["met"]
    assert not summary["auto"]["all_hits_met"]
    assert summary["auto"]["warm_minus_cold"]["process_s"]["median"] == -4.0
    assert summary["auto"]["minus_plain_maxrss_kib"]["cold"]["median"] == 20_000
    assert summary["plain"]["process_s"]["median"] == 8.0
    lines = bench.table({**_fake_result(hits), "summary": {"quiet": summary}})
    assert any("| finetune | 1.00 | 0.50 | 50 |" in line and "NO (1/3)" in line for line in lines)
    assert any("| dataset |" in line and "| 1/3 | 20.0 |" in line for line in lines)
    assert any("pretrain (tracemalloc)" in line for line in lines)


def test_summary_refuses_a_warm_session_that_did_not_hit():
    result = _fake_result({n: [10.0] for n in bench.STAGES})
    result["conditions"]["quiet"]["rounds"][0]["auto"]["warm"]["stages"]["finetune"][
        "outcome"
    ] = "stored"
    with pytest.raises(ValueError, match="did not hit finetune"):
        bench.summarise(result)


def test_key_child_times_the_workloads_keys(tmp_path):
    """The key timing imports the workload's stages and computes their four keys."""
    events = {n: {"key": "0" * 64, "outputs": {"x": "1" * 64}} for n in bench.STAGES}
    path = tmp_path / "events.json"
    path.write_text(json.dumps(events))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benches/stages.py"), "--key-child", str(path),
         "--key-repeats", "1"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    out = json.loads(proc.stdout)
    assert set(out["cold"]) == set(bench.STAGES)
    assert out["cold"]["pretrain"]["definitions"] > 3
    assert out["keys_match_session"] is False  # the fake keys above


@pytest.mark.slow
def test_quick_mode_runs_end_to_end(tmp_path):
    out = tmp_path / "stages.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benches/stages.py"), "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-6000:]
    result = json.loads(out.read_text())
    assert result["keys_summary"]["quiet"]["keys_match_session"]
    assert set(result["summary"]["quiet"]["off"]["stages"]) == set(bench.STAGES)


# -- the normal form without a deep copy ------------------------------------------------


def _old_normal_form(node: ast.AST) -> str:
    """The normal form as ec8d046 computed it, on a deep copy; since then only a stage's
    own decorator is dropped (other decorators count)."""
    node = copy.deepcopy(node)
    for inner in ast.walk(node):
        if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            inner.decorator_list = [
                d for d in inner.decorator_list if not stage_code.is_stage_decorator(d)
            ]
        if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            body = inner.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                inner.body = body[1:] or [ast.Pass()]
    return ast.dump(node, include_attributes=False)


def test_node_digest_copies_nothing_and_leaves_the_tree_as_parsed(monkeypatch):
    source = (
        '"""Module doc."""\n@deco(1)\nclass C:\n    """Doc."""\n    @staticmethod\n'
        '    def f(x):\n        """Only a docstring."""\n'
        "async def g():\n    'doc'\n    return 1\n"
    )
    tree = stage_code.module_tree(source)
    before = ast.dump(tree, include_attributes=True)
    expected = _old_normal_form(tree)

    def no_copy(*args, **kwargs):
        raise AssertionError("node_digest deep-copied the tree")

    monkeypatch.setattr(copy, "deepcopy", no_copy)
    import hashlib

    assert stage_code.node_digest(tree) == hashlib.sha256(expected.encode()).hexdigest()
    assert ast.dump(tree, include_attributes=True) == before


def test_node_digest_unchanged_for_every_definition_of_this_repository():
    """The same digests as before the change: no cached stage is invalidated by it."""
    import hashlib

    files = [*ROOT.glob("kernels/*.py"), *ROOT.glob("tests/workload/*.py"),
             *ROOT.glob("pytest_rtgov/core/*.py")]  # fmt: skip
    checked = 0
    for path in files:
        tree = stage_code.module_tree(path.read_text(), str(path))
        for node in [tree, *tree.body]:
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)):
                old = hashlib.sha256(_old_normal_form(node).encode()).hexdigest()
                assert stage_code.node_digest(node) == old, (path, getattr(node, "name", ""))
                checked += 1
    assert checked > 50
