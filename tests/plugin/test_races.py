"""``rtgov races``: a suite with two planted order dependencies (a polluting test before
its victim on one worker; two tests sharing a temporary file across workers) is reported
with reproducing seeds and the minimal pair; a clean suite is not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.plugin._cli import cli

pytest.importorskip("xdist")

CLEAN = """
import numpy as np

def test_one():
    assert 1 + 1 == 2

def test_two(rtgov, rtgov_rng):
    rtgov.checkpoint("draws", rtgov_rng.random(8))

def test_three(rtgov):
    rtgov.checkpoint("zeros", np.zeros(4))

def test_four():
    pass
"""

POLLUTE = """
import os

def test_polluter():
    os.environ["RTGOV_RACES_POLLUTED"] = "1"

def test_victim():
    assert "RTGOV_RACES_POLLUTED" not in os.environ
"""

# The writer writes, then waits (at most 3 s) for the overwriter; the overwriter waits (at
# most 3 s) for the writer to have written, then overwrites. On one worker they never
# overlap; on two they do, whatever their start-up delays up to the waits.
SHARED = """
import os
import tempfile
import time
from pathlib import Path

def _dir():
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or str(os.getpid())
    folder = Path(tempfile.gettempdir()) / f"rtgov-races-{run}"
    folder.mkdir(exist_ok=True)
    return folder

def _wait(path, seconds=3.0):
    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)

def test_writer():
    folder = _dir()
    (folder / "shared.txt").write_text("writer")
    (folder / "writer-started").touch()
    _wait(folder / "overwriter-done")
    assert (folder / "shared.txt").read_text() == "writer"

def test_overwriter():
    folder = _dir()
    _wait(folder / "writer-started")
    (folder / "shared.txt").write_text("overwriter")
    (folder / "overwriter-done").touch()
"""


def _report(root: Path) -> dict:
    (found,) = (root / ".rtgov" / "races").glob("*/races.json")
    return json.loads(found.read_text())


@pytest.mark.slow  # 20 sessions of two workers, then the bisection: about 3 minutes here
def test_races_reports_both_planted_dependencies(pytester, capsys):
    pytester.makepyfile(test_clean=CLEAN, test_pollute=POLLUTE, test_shared=SHARED)
    status = cli(pytester, "races", "--permutations", "20", "--seed", "42", "-n", "2")
    out = capsys.readouterr().out
    assert status == 6, out
    findings = {f["victim"]: f for f in _report(pytester.path)["findings"]}
    assert sorted(findings) == ["test_pollute.py::test_victim", "test_shared.py::test_writer"]

    victim = findings["test_pollute.py::test_victim"]
    assert victim["kind"] == "same-worker"
    assert victim["predecessors"] == ["test_pollute.py::test_polluter"]
    assert victim["reference"]["outcome"] == "passed"
    assert victim["changed"]["outcome"] == "failed"
    assert ("test_pollute.py::test_victim failed (alone: passed) when "
            "test_pollute.py::test_polluter ran before it on the same worker") in out  # fmt: skip
    assert "minimal: pytest -p no:randomly test_pollute.py::test_polluter " \
        "test_pollute.py::test_victim" in out  # fmt: skip

    writer = findings["test_shared.py::test_writer"]
    assert writer["kind"] == "concurrent"
    assert "test_shared.py::test_overwriter" in writer["suspects"]
    assert "test_shared.py::test_overwriter" in writer["concurrent"]
    assert "depending on what ran concurrently on another worker" in out

    for finding in (victim, writer):  # the kept plan reproduces it under its seed
        assert 42 <= finding["seed"] < 62
        assert Path(finding["plan_file"]).name == f"seed-{finding['seed']}.json"
        again = pytester.runpytest_subprocess(
            "--rtgov-schedule-plan", finding["plan_file"], "-n", "2", "-p", "no:randomly"
        )
        outcomes = again.parseoutcomes()
        assert outcomes.get("failed", 0) >= 1, again.stdout.str()


GLOBAL = """
import state_module

def test_sets():
    state_module.VALUE = 2

def test_reads():
    assert state_module.VALUE == 1

def test_other():
    pass

def test_more():
    pass
"""


def test_races_without_workers_finds_a_module_global_polluter(pytester, capsys):
    pytester.makepyfile(state_module="VALUE = 1\n", test_global=GLOBAL)
    # seed 7: test_sets runs before test_reads in plans 0 and 1 (after test_more, after
    # test_other), not in plans 2 and 3
    status = cli(pytester, "races", "--permutations", "4", "--seed", "7")
    out = capsys.readouterr().out
    assert status == 6, out
    (finding,) = _report(pytester.path)["findings"]
    assert finding["victim"] == "test_global.py::test_reads"
    assert (finding["kind"], finding["seed"], finding["worker"]) == ("same-worker", 7, "main")
    assert finding["predecessors"] == ["test_global.py::test_sets"]
    assert "pytest --rtgov-schedule-plan " in out and "seed-7.json -p no:randomly" in out


def test_races_reports_nothing_on_a_clean_suite(pytester, capsys):
    pytester.makepyfile(test_clean=CLEAN)
    status = cli(pytester, "races", "--permutations", "5", "--seed", "42", "-n", "2")
    out = capsys.readouterr().out
    assert status == 0, out
    assert "rtgov races: no test depends on the plan (5 plans" in out
    assert _report(pytester.path)["findings"] == []


def test_races_refuses_bad_arguments(pytester, capsys):
    assert cli(pytester, "races", "--permutations", "1") == 2
    assert "--permutations 1: expected at least 2" in capsys.readouterr().err
    assert cli(pytester, "races", "--seed", "-3") == 2
    assert cli(pytester, "races", "-n", "0") == 2
