"""The issue's proof on the reference workload: a recorded session replays identical,
and a 1-ULP fault injected by the kernels' test-only hook (``KERNELS_FAULT``,
kernels/faults.py) at 20 seeded positions is named exactly each time: that test, that
checkpoint, that index, ULP 1, and no other checkpoint first.

Slow (one recorded session and 21 replays of the workload): ``pytest -m slow``.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_rtgov.store.ledger import Ledger
from pytest_rtgov.store.runs import RunStore

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SEED = 20261130
THREADS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "KERNELS_FAULT")}
    env.pop("PYTEST_ADDOPTS", None)
    return {**env, **THREADS, **extra}


def _project(tmp: Path) -> Path:
    """The workload and its kernels copied out of the repository: a project of its own
    (no git: the replay runs its files as they are), which edits to the working tree
    while this test runs cannot change under it."""
    project = tmp / "project"
    shutil.copytree(ROOT / "kernels", project / "kernels")
    shutil.copytree(ROOT / "tests" / "workload", project / "tests" / "workload")
    for name in ("pyproject.toml", "tests/__init__.py", "tests/conftest.py"):
        shutil.copy(ROOT / name, project / name)
    return project


def _replay(project: Path, state: Path, **extra: str) -> tuple[int, dict]:
    done = subprocess.run(
        [sys.executable, "-m", "pytest_rtgov.cli", "--dir", str(state), "replay", "latest"],
        cwd=project, env=_env(**extra), capture_output=True, text=True, check=False,
    )  # fmt: skip
    leaves = [json.loads(f.payload) for f in Ledger(state / "ledger").frames()]
    replays = [leaf for leaf in leaves if leaf["kind"] == "replay"]
    assert replays, done.stdout + done.stderr
    return done.returncode, {**replays[-1], "output": done.stdout[-3000:] + done.stderr[-1000:]}


def test_the_workload_replays_identical_and_each_seeded_fault_is_named(tmp_path):
    state = tmp_path / "state"
    project = _project(tmp_path)
    session = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/workload", "--rtgov", "--rtgov-dir", str(state),
         "-p", "no:cacheprovider", "-p", "no:randomly", "-q", "-n", "0"],
        cwd=project, env=_env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert session.returncode == 0, session.stdout[-3000:] + session.stderr[-2000:]

    code, leaf = _replay(project, state)
    assert (code, leaf["outcome"]) == (0, "identical"), leaf
    assert leaf["counts"]["diverged"] == 0 and leaf["counts"]["identical"] > 40

    record = RunStore(state).read("latest")
    targets = []  # (test, checkpoint, elements): each kernel's first output
    for test in record.tests:
        if "test_kernel_outputs.py" in test.nodeid and test.checkpoints:
            first = min(test.checkpoints, key=lambda c: c.seq)
            assert first.kept and first.shape is not None
            targets.append((test.nodeid, first.name, math.prod(first.shape)))
    assert len(targets) >= 10
    rng = random.Random(SEED)
    named = []
    for _ in range(20):
        nodeid, checkpoint, size = rng.choice(targets)
        index = rng.randrange(size)
        kernel = checkpoint.split(".")[0]
        code, leaf = _replay(project, state, KERNELS_FAULT=f"{kernel}:{index}:1")
        first = leaf["first_divergence"]
        assert first is not None, (kernel, index, leaf)
        got = (code, first["owner"], first["checkpoint"], first["index"], first["ulp"])
        assert got == (6, nodeid, checkpoint, index, 1), (kernel, index, leaf)
        named.append(got)
    assert len(named) == 20
