"""Honest output at the session's end: a breached session's last line is rtgov's red
verdict line, after pytest's own summary line, and deltas read better or worse."""

from __future__ import annotations

import re

import pytest

from pytest_rtgov.core.constants import EXIT_GATE_BREACHED

SUITE = """
import os

def test_accuracy(rtgov):
    rtgov.record("val_accuracy", float(os.environ.get("SUITE_ACCURACY", "0.95")),
                 higher_is_better=True)
"""

GATES = """
[defaults]
baseline = "baseline"

[[gates]]
name = "accuracy"
metric = "val_accuracy"
tests = ["test_suite.py::*"]
max_regression = 0.01
"""

BOLD_RED = "\x1b[1;31m"
BOLD_GREEN = "\x1b[1;32m"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def suite(pytester):
    pytester.makepyfile(test_suite=SUITE)
    pytester.makefile(".toml", gates=GATES)
    return pytester


def _last_lines(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if line.strip()][-2:]


def test_a_breached_session_ends_with_a_red_breached_line_after_pytests_summary(
    suite, monkeypatch
):
    assert suite.runpytest("--rtgov-gate", "-p", "no:randomly").ret == 0
    monkeypatch.setenv("SUITE_ACCURACY", "0.90")
    result = suite.runpytest("--rtgov-gate", "--color=yes", "-p", "no:randomly")
    assert result.ret == EXIT_GATE_BREACHED
    pytest_line, last = _last_lines(result)
    assert "1 passed" in ANSI.sub("", pytest_line)  # pytest's own line stays, green ...
    plain = ANSI.sub("", last)
    # ... and rtgov's verdict comes after it, in bold red, with the exit status
    assert plain.startswith("rtgov gate: BREACHED (1 checks, 1 breached"), plain
    assert plain.endswith("exit status 6"), plain
    assert last.startswith(BOLD_RED), repr(last)
    assert result.stdout.str().count("rtgov gate: BREACHED") == 1  # said once
    # the drop reads as a drop, and as worse
    result.stdout.fnmatch_lines(["*baseline 0.95 -> current 0.9: -0.05, -5.3% (worse); rule:*"])


def test_a_passing_session_ends_with_a_green_verdict_line(suite):
    suite.runpytest("--rtgov-gate", "-p", "no:randomly")
    result = suite.runpytest("--rtgov-gate", "--color=yes", "-p", "no:randomly")
    assert result.ret == 0
    pytest_line, last = _last_lines(result)
    assert "1 passed" in ANSI.sub("", pytest_line)
    assert ANSI.sub("", last) == (
        "rtgov gate: PASSED (1 checks, 0 breached, 0 unconfirmed, 0 new) exit status 0"
    )
    assert last.startswith(BOLD_GREEN), repr(last)


def test_quiet_sessions_still_end_with_the_verdict(suite, monkeypatch):
    suite.runpytest("--rtgov-gate", "-p", "no:randomly")
    monkeypatch.setenv("SUITE_ACCURACY", "0.90")
    for quiet in ("-q", "-qq"):
        result = suite.runpytest("--rtgov-gate", quiet, "-p", "no:randomly")
        assert result.ret == EXIT_GATE_BREACHED
        last = [line for line in result.outlines if line.strip()][-1]
        assert last.startswith("rtgov gate: BREACHED (") and last.endswith("exit status 6")
        assert result.stdout.str().count("rtgov gate: BREACHED") == 1


def test_a_record_only_session_prints_no_verdict_line(suite):
    result = suite.runpytest("--rtgov", "-p", "no:randomly")
    assert result.ret == 0
    assert "rtgov gate:" not in result.stdout.str()


def test_under_xdist_the_verdict_line_is_still_last(suite, monkeypatch):
    pytest.importorskip("xdist")
    suite.runpytest("--rtgov-gate", "-p", "no:randomly")
    monkeypatch.setenv("SUITE_ACCURACY", "0.90")
    result = suite.runpytest("--rtgov-gate", "-n", "2", "--color=yes", "-p", "no:randomly")
    assert result.ret == EXIT_GATE_BREACHED
    pytest_line, last = _last_lines(result)
    assert "1 passed" in ANSI.sub("", pytest_line)
    assert ANSI.sub("", last).startswith("rtgov gate: BREACHED") and last.startswith(BOLD_RED)
