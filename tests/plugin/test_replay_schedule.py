"""``rtgov replay --schedule RUN``: the recorded plan runs again under -n 2 with the same
workers, order and seeds; a session that does not follow it exits 6 with the line that
reproduces the schedule."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.plugin._cli import cli

SUITE = """
import random

import pytest

@pytest.mark.parametrize("i", range(6))
def test_many(rtgov, rtgov_rng, i):
    rtgov.checkpoint("draws", rtgov_rng.random(4))
    with open("seeds.txt", "a") as out:
        out.write(f"{i} {random.random()}\\n")
"""

REVERSE = """
import pytest

@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    items.reverse()
"""


def _replay_record(root: Path) -> dict:
    (found,) = (root / ".rtgov" / "replays").glob("*/state/runs/*.json")
    return json.loads(found.read_text())


def test_replay_schedule_reproduces_an_xdist_schedule(pytester, read_latest, capsys):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess("--rtgov", "--rtgov-schedule", "9", "-n", "2")
    result.assert_outcomes(passed=6)
    record = read_latest(pytester.path)
    seeds = sorted((pytester.path / "seeds.txt").read_text().splitlines())

    assert cli(pytester, "replay", "--schedule", "latest") == 0
    out = capsys.readouterr().out
    assert "rtgov replay --schedule: followed: 2 worker(s) ran the recorded plan exactly" in out
    again = _replay_record(pytester.path)
    assert again["schedule"]["plan"] == record["schedule"]["plan"]
    assert again["schedule"]["observed"] == record["schedule"]["observed"]
    assert again["schedule"]["workers"] == ["gw0", "gw1"]
    assert again["schedule"]["deviation"] is None
    digests = {t["nodeid"]: t["checkpoints"][0]["sha256"] for t in record["tests"]}
    assert {t["nodeid"]: t["checkpoints"][0]["sha256"] for t in again["tests"]} == digests
    all_seeds = sorted((pytester.path / "seeds.txt").read_text().splitlines())
    assert all_seeds == sorted(seeds * 2)  # the same per-test seeds, both times


def test_replay_schedule_that_is_not_followed_prints_the_token(pytester, capsys):
    pytester.makepyfile(test_suite=SUITE)
    pytester.runpytest("--rtgov", "--rtgov-schedule", "3").assert_outcomes(passed=6)
    pytester.makeconftest(REVERSE)  # the working tree now reorders the session
    assert cli(pytester, "replay", "--schedule", "latest") == 6
    out = capsys.readouterr().out
    assert "rtgov replay --schedule: the schedule was not followed: worker main: expected" in out
    (token,) = [line for line in out.splitlines() if line.startswith("reproduce: ")]
    assert "pytest --rtgov-schedule-plan " in token and "plan.json -p no:randomly" in token
    assert token.endswith("(or: rtgov replay --schedule " + _run_id(pytester.path) + ")")


def test_replay_schedule_of_an_unscheduled_run_is_not_found(pytester, capsys):
    pytester.makepyfile(test_suite=SUITE)
    pytester.runpytest("--rtgov").assert_outcomes(passed=6)
    assert cli(pytester, "replay", "--schedule", "latest") == 3
    assert "recorded no schedule" in capsys.readouterr().err
    assert cli(pytester, "replay", "--schedule", "--test", "x", "latest") == 2


def _run_id(root: Path) -> str:
    return (root / ".rtgov" / "latest").read_text().strip()


@pytest.mark.slow  # two sessions of the reference workload under two workers
def test_replay_schedule_reproduces_the_workload_under_two_workers(tmp_path):
    pytest.importorskip("xdist")
    root = Path(__file__).resolve().parents[2]
    project = tmp_path / "project"  # a copy without git: replayed as it is
    shutil.copytree(root / "kernels", project / "kernels")
    shutil.copytree(root / "tests" / "workload", project / "tests" / "workload")
    for name in ("pyproject.toml", "tests/__init__.py", "tests/conftest.py"):
        shutil.copy(root / name, project / name)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "KERNELS_FAULT")}
    env.pop("PYTEST_ADDOPTS", None)
    state = tmp_path / "state"
    session = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/workload", "--rtgov", f"--rtgov-dir={state}",
         "--rtgov-schedule", "42", "-n", "2", "-p", "no:randomly", "-q"],
        cwd=project, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert session.returncode == 0, session.stdout[-3000:] + session.stderr[-2000:]
    record = json.loads(next((state / "runs").glob("*.json")).read_text())
    assert record["schedule"]["deviation"] is None

    replay = subprocess.run(
        [sys.executable, "-m", "pytest_rtgov.cli", "--dir", str(state), "replay", "--schedule",
         "latest"],
        cwd=project, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stdout[-3000:] + replay.stderr[-2000:]
    assert "followed: 2 worker(s) ran the recorded plan exactly" in replay.stdout
    (again,) = (state / "replays").glob("*/state/runs/*.json")
    replayed = json.loads(again.read_text())["schedule"]
    assert replayed["plan"] == record["schedule"]["plan"]
    assert replayed["observed"] == record["schedule"]["observed"]
