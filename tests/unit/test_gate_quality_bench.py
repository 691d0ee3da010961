"""The gate-quality bench's edits and counting (benches/_gate_edits.py, _gate_summary.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHES = Path(__file__).resolve().parents[2] / "benches"
sys.path.insert(0, str(BENCHES))

import _gate_edits as edits  # noqa: E402
import _gate_summary as summary  # noqa: E402

ROOT = BENCHES.parent


@pytest.fixture(scope="module")
def workload(tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("workload")
    for part in ("kernels", "tests/workload"):
        shutil.copytree(ROOT / part, tree / part)
    (tree / "tests/__init__.py").write_text("")
    edits.add_synthetic(tree)
    return tree


def test_groups_edit_disjoint_tests():
    for group in edits.GROUPS:
        targets = {edits.BY_KERNEL[k].test for k in group}
        assert len(targets) == len(group)
        for k in group:
            others = targets - {edits.BY_KERNEL[k].test}
            assert not others & set(edits.BY_KERNEL[k].touches), (k, group)


@pytest.mark.parametrize("size", ["+10%", "+25%"])
def test_every_edit_applies_to_the_shipped_kernels_and_keeps_results(workload, tmp_path, size):
    """Each edit matches the kernels as committed, and the edited tests still run and give
    the same numbers to float32 precision: slower code, not different code."""
    edited = tmp_path / "edited"
    shutil.copytree(workload, edited)
    for group in edits.GROUPS:
        edits.apply(edited, group, size)
    code = (
        "import sys, numpy as np\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from kernels import layers, MLP, Adam\n"
        "from kernels import synthetic\n"
        "rng = np.random.Generator(np.random.PCG64(1))\n"
        "x = rng.standard_normal((64, 32), dtype=np.float32)\n"
        "w = rng.standard_normal((32, 32), dtype=np.float32)\n"
        "b = rng.standard_normal(32, dtype=np.float32)\n"
        "lab = rng.integers(0, 32, size=64)\n"
        "g = np.ones(32, dtype=np.float32)\n"
        "y, cache = layers.layer_norm(x, g, 0 * g)\n"
        "m = MLP((32, 32, 8), seed=3)\n"
        "opt = Adam(m.params)\n"
        "lo, c = m.forward(x)\n"
        "opt.step(m.backward(layers.cross_entropy_backward(lo, lab[:64] % 8), c))\n"
        "out = [layers.gelu(x), layers.gelu_backward(x, x), y, "
        "layers.layer_norm_backward(x, g, cache)[0], layers.softmax(x), "
        "layers.linear(x, w, b), np.array(layers.cross_entropy(x, lab)), "
        "*m.params.values(), np.array(synthetic.s_pyloop())]\n"
        "np.save(sys.argv[2], np.concatenate([np.ravel(o).astype(np.float64) for o in out]))\n"
    )
    results = []
    for tree in (workload, edited):
        out = tmp_path / f"{tree.name}.npy"
        subprocess.run([sys.executable, "-c", code, str(tree), str(out)], check=True)
        results.append(np.load(out))
    assert (workload / edits.LAYERS).read_text() != (edited / edits.LAYERS).read_text()
    np.testing.assert_allclose(results[1][:-1], results[0][:-1], rtol=1e-4, atol=1e-5)


def test_an_edit_that_no_longer_matches_is_an_error(tmp_path):
    (tmp_path / "kernels").mkdir()
    (tmp_path / edits.LAYERS).write_text("def gelu(x):\n    return x\n")
    with pytest.raises(SystemExit, match="edit 'gelu' expects"):
        edits.apply(tmp_path, ("gelu",), "+10%")


def _session(condition, edited, statuses, relative=0.0, rc=0):
    kernels = {
        k: {"status": s, "relative": relative if k in edited else 0.0, "clock": "cpu_time"}
        for k, s in statuses.items()
    }
    stats = {edits.BY_KERNEL[k].test[5:]: {"mean": 1.0, "median": 1.0} for k in statuses}
    return {
        "condition": condition,
        "edited": list(edited),
        "size": "+10%" if edited else "",
        "loadavg_1m": [1.0, 1.0],
        "rtgov": {"exit_status": rc, "wall_s": 5.0, "kernels": kernels},
        "pytest_benchmark": {"exit_status": 0, "wall_s": 3.0, "stats": stats, "previous": None},
    }


def test_summary_counts_breaches_and_unconfirmed_apart_and_judges_targets():
    ks = ["gelu", "linear"]
    sessions = [
        _session("hog", (), {"gelu": "pass", "linear": "pass"}),
        _session("hog", (), {"gelu": "breach", "linear": "pass"}, rc=6),
        _session("hog", ("gelu",), {"gelu": "breach", "linear": "pass"}, 0.11, rc=6),
        _session("hog", ("gelu",), {"gelu": "unconfirmed", "linear": "breach"}, 0.14),
    ]
    effects = {"hog": {"gelu": {"+10%": {"cpu_effect": 0.10, "wall_effect": 0.2}}}}
    out = summary.summarise(sessions, effects, ks, None)["hog"]
    assert out["unchanged_failed"] == 1
    counts = {"breach": 1, "unconfirmed": 0, "pass": 1, "other": 0}
    assert out["unchanged_kernels"]["gelu"] == counts
    row = out["edits"]["gelu +10%"]
    assert (row["breach"], row["unconfirmed"], row["pass"]) == (1, 1, 0)
    assert row["within_3_points"] == 1  # judged on the CPU-time true effect (the clock)
    # linear is untouched by a gelu edit: its breach is a false alarm in a slowed session
    assert out["slowed_sessions_untouched_kernel_breaches"] == {"breach": 1, "checks": 2}
    targets = out["targets"]
    assert targets["unchanged failing <= 1 in 20"] is False
    assert targets["+10% caught >= 19 in 20, every kernel"] is False
    assert targets["reported effect within 3 points (median)"] is True


def test_a_pass_on_too_few_usable_pairs_is_counted_as_not_judged():
    slowed = _session("quiet", ("gelu",), {"gelu": "pass"}, 0.7)
    slowed["rtgov"]["kernels"]["gelu"]["reason"] = "1 pairs < min_samples 5: not judged"
    row = summary.summarise([slowed], {}, ["gelu"], None)["quiet"]["edits"]["gelu +10%"]
    assert (row["pass"], row["pass_not_judged"]) == (1, 1)
