"""``rtgov quarantine propose`` after real sessions: a test that fails some sessions and
passes others after a rerun (pytest-rerunfailures) is proposed with its evidence; a
test that fails every session is broken; a test that passes is not named."""

from __future__ import annotations

import json
import shlex

import pytest

from tests.plugin._cli import cli

pytest.importorskip("pytest_rerunfailures")

# The session number comes from a counter file; test_flaky fails on sessions 1 and 4 and
# its first attempt on session 2 (a pass after a rerun there): deterministic flakiness.
SUITE = """
import pathlib

SESSION = int(pathlib.Path(__file__).with_name("session").read_text())
ATTEMPTS = pathlib.Path(__file__).with_name("attempts")

def test_flaky():
    n = int(ATTEMPTS.read_text()) + 1 if ATTEMPTS.exists() else 1
    ATTEMPTS.write_text(str(n))
    assert SESSION not in (1, 4) and not (SESSION == 2 and n == 1)

def test_broken():
    assert False, "always"

def test_fine():
    pass
"""


def test_propose_after_real_sessions(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    for session in range(7):
        (pytester.path / "session").write_text(str(session))
        (pytester.path / "attempts").unlink(missing_ok=True)
        result = pytester.runpytest("--rtgov", "--reruns", "1", "-p", "no:randomly", "-q")
        assert result.ret == 1  # test_broken
    capsys.readouterr()
    assert cli(pytester, "quarantine", "propose", "--format", "json") == 0
    document = json.loads(capsys.readouterr().out)
    assert len(document["runs"]) == 7
    (flaky,) = document["add"]
    assert flaky["subject"] == "test_suite.py::test_flaky"
    assert (flaky["runs"], flaky["failures"], flaky["retries"]) == (7, 2, 1)
    assert len(flaky["evidence"]) == 3
    assert [(e["subject"], e["reason"]) for e in document["excluded"]] == [
        ("test_suite.py::test_broken", "broken")
    ]
    command = shlex.split(document["commands"][0])
    assert command[:4] == ["rtgov", "quarantine", "add", "test_suite.py::test_flaky"]
    assert command.count("--evidence") == 3
