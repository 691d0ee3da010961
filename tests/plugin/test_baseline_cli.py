"""`rtgov baseline show|diff|refresh` against a real gated suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.plugin.test_gating import GATES, SUITE


def rtgov(cwd, *args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "pytest_rtgov.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def gated(pytester):
    pytester.makepyfile(test_suite=SUITE)
    pytester.makefile(".toml", gates=GATES)
    assert pytester.runpytest("--rtgov-gate").ret == 0
    return pytester


def test_show_lists_fingerprint_metrics_and_history(gated):
    result = rtgov(gated.path, "baseline", "show")
    assert result.returncode == 0, result.stderr
    assert "env-" in result.stdout and "metrics.json: 2 metrics" in result.stdout
    assert "reason: first gated run on this fingerprint" in result.stdout


def test_refresh_from_a_run_records_who_why_and_changes(gated, monkeypatch):
    monkeypatch.setenv("SUITE_ACCURACY", "0.93")
    assert gated.runpytest("--rtgov-gate").ret == 0  # within the 0.02 allowance
    diff = rtgov(gated.path, "baseline", "diff")
    assert "accuracy: test_suite.py::test_accuracy val_accuracy: 0.95 -> 0.93" in diff.stdout
    result = rtgov(gated.path, "baseline", "refresh", "--reason", "retrained on new data")
    assert result.returncode == 0, result.stderr
    assert "retrained on new data" in result.stdout
    show = rtgov(gated.path, "baseline", "show").stdout
    assert "val_accuracy: 0.95 -> 0.93" in show
    entry = json.loads((gated.path / "baseline" / "refreshes.jsonl").read_text().splitlines()[-1])
    assert entry["reason"] == "retrained on new data"


def test_refresh_in_ci_needs_a_reason_and_a_passing_run(gated):
    result = rtgov(gated.path, "baseline", "refresh", env={"CI": "true"})
    assert result.returncode == 2 and "needs --reason" in result.stderr
    gated.makepyfile(test_broken="def test_b():\n    assert False\n")
    gated.runpytest("--rtgov-gate")
    refused = rtgov(gated.path, "baseline", "refresh", "--reason", "x")
    assert refused.returncode == 5 and "refusing" in refused.stderr


def test_stale_subjects_are_kept_unless_dropped(gated):
    (gated.path / "test_suite.py").write_text(SUITE.replace("def test_alloc", "def _not_a_test"))
    gated.runpytest("--rtgov-gate")
    kept = rtgov(gated.path, "baseline", "refresh", "--reason", "r")
    assert "stale subjects kept" in kept.stdout and "test_alloc" in kept.stdout
    dropped = rtgov(gated.path, "baseline", "refresh", "--reason", "r", "--drop-stale")
    assert dropped.returncode == 0
    env_file = next((gated.path / "baseline").glob("env-*.json"))
    assert "test_suite.py::test_alloc" not in json.loads(env_file.read_text())["subjects"]


def test_bad_gates_file_exits_4(tmp_path):
    (tmp_path / "gates.toml").write_text("[defaults]\nconfidence = 2\n")
    result = rtgov(tmp_path, "baseline", "show")
    assert result.returncode == 4
    assert "gates.toml: at defaults.confidence: expected a number from 0.5" in result.stderr
