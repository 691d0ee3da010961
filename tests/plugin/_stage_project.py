"""A small four-stage project for the stage cache's end-to-end tests (issue 15).

``prepare -> pretrain -> finetune -> evaluate``, numpy only, tiny arrays. ``helpers.py``
is imported only by ``pretrain``. Declared inputs, chosen so each edit of the
invalidation matrix has one expected answer:

- ``prepare``: params ``n``, seed ``data``, env ``OMP_NUM_THREADS``;
- ``pretrain``: seed ``init``, code ``helpers.scale``;
- ``finetune``: params ``lr`` and ``steps``, env ``OMP_NUM_THREADS``;
- ``evaluate``: nothing of its own.

No stage's outputs depend on ``OMP_NUM_THREADS`` (a few dozen numbers, one thread or
many give the same bytes): a changed thread count re-runs exactly the two stages that
declare it, and their byte-identical outputs leave ``pretrain`` and ``evaluate`` cached.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "STAGES",
    "edit",
    "ledger_stage_leaves",
    "outcomes",
    "stage_events",
    "write_project",
]

STAGES = ("prepare", "pretrain", "finetune", "evaluate")

HELPERS = '''\
"""Helpers imported only by pretrain."""

import numpy as np


def scale(x):
    # the pretraining transform
    return np.tanh(x * 2.0)


def unrelated(x):
    return x + 1
'''

CONFTEST = '''\
import numpy as np

import helpers
from pytest_rtgov import stage


@stage(params={"n": 16}, seeds={"data": 0}, env=["OMP_NUM_THREADS"])
def prepare(params, seeds):
    rng = np.random.default_rng(seeds["data"])
    x = rng.normal(size=(params["n"], 3))
    y = x @ np.array([1.0, -2.0, 0.5])
    return {"x": x, "y": y}, {"rows": params["n"]}


@stage(seeds={"init": 7})
def pretrain(prepare, seeds):
    rng = np.random.default_rng(seeds["init"])
    w = rng.normal(size=3) * 0.1
    features = helpers.scale(prepare["x"])
    return {"w": w + features.mean(axis=0), "features": features}


@stage(params={"lr": 0.1, "steps": 5}, env=["OMP_NUM_THREADS"])
def finetune(prepare, pretrain, params, rtgov):
    w = pretrain["w"].copy()
    x, y = pretrain["features"], prepare["y"]
    for _ in range(params["steps"]):
        w = w - params["lr"] * (x.T @ (x @ w - y)) / len(y)
    loss = float(np.mean((x @ w - y) ** 2))
    rtgov.record("finetune_loss", loss, higher_is_better=False)
    return {"w": w}


@stage
def evaluate(prepare, pretrain, finetune):
    predictions = pretrain["features"] @ finetune["w"]
    return {"mse": np.array([np.mean((predictions - prepare["y"]) ** 2)])}
'''

TEST_FILE = """\
def test_model(evaluate):
    assert evaluate["mse"].shape == (1,)
"""


def write_project(pytester: pytest.Pytester) -> None:
    """The project in ``pytester``: helpers.py, conftest.py and test_model.py."""
    pytester.makepyfile(helpers=HELPERS, conftest=CONFTEST, test_model=TEST_FILE)


def edit(pytester: pytest.Pytester, name: str, old: str, new: str) -> None:
    """Replace the one occurrence of ``old`` in the project file ``name``."""
    path = pytester.path / name
    text = path.read_text()
    assert text.count(old) == 1, f"{name}: {old!r} occurs {text.count(old)} times"
    path.write_text(text.replace(old, new))


def stage_events(root: Path) -> list[dict[str, Any]]:
    """The stage events of the latest run record, in the record's order."""
    base = root / ".rtgov"
    run_id = (base / "latest").read_text().strip()
    record = json.loads((base / "runs" / f"{run_id}.json").read_text())
    return [s["stage"] for f in record["fixtures"] for s in f["setups"] if "stage" in s]


def outcomes(root: Path) -> dict[str, str]:
    """``{stage: outcome}`` of the latest session (each stage set up once)."""
    events = stage_events(root)
    found = {e["stage"]: e["outcome"] for e in events}
    assert len(found) == len(events), f"a stage was set up twice: {events}"
    return found


def ledger_stage_leaves(root: Path) -> list[dict[str, Any]]:
    """Every ``stage`` leaf of the ledger, oldest first."""
    from pytest_rtgov.store.ledger import Ledger

    leaves = [json.loads(f.payload) for f in Ledger(root / ".rtgov" / "ledger").frames()]
    return [leaf for leaf in leaves if leaf["kind"] == "stage"]
