"""pytest-rerunfailures beside rtgov: only the final attempt of a rerun test counts (its
samples, metrics, outcome, gates); the earlier attempts are kept as its reruns."""

from __future__ import annotations

import json

import pytest

from pytest_rtgov.core.canonical import canonical_json
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.errors import RecordFormatError

pytest.importorskip("pytest_rerunfailures")

# Each test fails its first attempt: a counter file per test says which attempt runs.
FLAKY = """
import pathlib
import pytest

def attempt(name):
    counter = pathlib.Path(__file__).with_name(name + ".attempts")
    n = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(n))
    return n

@pytest.fixture(scope="session")
def once(rtgov):
    return 1

@pytest.fixture
def each(rtgov):
    return 2

def test_flaky_call(once, each, rtgov):
    n = attempt("call")
    rtgov.record("loss", 10.0 if n == 1 else 1.0, higher_is_better=False)
    assert n > 1

@pytest.fixture
def flaky_setup():
    if attempt("setup") == 1:
        raise RuntimeError("first setup fails")

@pytest.mark.flaky(reruns=2)
def test_flaky_setup(flaky_setup):
    pass

def test_steady(rtgov):
    rtgov.record("loss", 1.0, higher_is_better=False)
"""


def _check_record(record):
    tests = {t["nodeid"].split("::")[1]: t for t in record["tests"]}
    call = tests["test_flaky_call"]
    assert call["outcome"] == "passed"
    assert [m["value"] for m in call["metrics"]] == [1.0]  # the final attempt's only
    (final,) = call["samples"]
    assert final["completed"] is True
    (rerun,) = call["reruns"]
    assert rerun["outcome"] == "failed"
    assert [m["value"] for m in rerun["metrics"]] == [10.0]
    (first,) = rerun["samples"]
    assert first["completed"] is False
    # the function fixture set up again by the rerun goes with the attempt it served;
    # the session fixture, set up once for both, stays in the run's fixtures
    assert [f["name"] for f in rerun["fixtures"]] == ["each"]
    fixtures = {f["name"]: f for f in record["fixtures"]}
    assert len(fixtures["each"]["setups"]) == 1
    assert len(fixtures["once"]["setups"]) == 1

    setup = tests["test_flaky_setup"]
    assert setup["outcome"] == "passed"
    (rerun,) = setup["reruns"]
    assert rerun["outcome"] == "error" and rerun["samples"] == []
    assert [f["name"] for f in rerun["fixtures"]] == ["flaky_setup"]
    assert fixtures["flaky_setup"]["setups"][0]["outcome"] == "passed"

    assert "reruns" not in tests["test_steady"]  # written only when there were any


def test_only_the_final_attempt_counts(pytester, read_latest):
    pytester.makepyfile(test_flaky=FLAKY)
    result = pytester.runpytest("--rtgov", "--reruns", "2", "-p", "no:randomly")
    assert result.parseoutcomes() == {"passed": 3, "rerun": 2}
    _check_record(read_latest(pytester.path))
    result.stdout.fnmatch_lines(
        [
            "rtgov: 2 tests rerun: only each one's final attempt counts *",
            "  test_flaky.py::test_flaky_call (1 earlier attempts)",
        ]
    )


def test_only_the_final_attempt_counts_under_xdist(pytester, read_latest):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_flaky=FLAKY)
    result = pytester.runpytest_subprocess(
        "--rtgov", "--reruns", "2", "-n", "2", "-p", "no:randomly"
    )
    assert result.parseoutcomes() == {"passed": 3, "rerun": 2}
    _check_record(read_latest(pytester.path))


GATES = """
[[gates]]
name = "loss budget"
metric = "loss"
tests = ["test_flaky.py::*"]
max = 5
"""


def test_a_gate_judges_the_final_attempt_only(pytester, read_latest):
    pytester.makepyfile(test_flaky=FLAKY)
    pytester.makefile(".toml", gates=GATES)
    result = pytester.runpytest("--rtgov-gate", "--reruns", "2", "-p", "no:randomly")
    assert result.parseoutcomes() == {"passed": 3, "rerun": 2}
    assert result.ret == 0
    record = read_latest(pytester.path)
    (loss,) = [g for g in record["gate_results"] if g["subject"].endswith("test_flaky_call")]
    assert loss["status"] == "pass" and loss["current"] == 1.0
    assert record["verdict"]["status"] == "passed"
    tests = {t["nodeid"].split("::")[1]: t for t in record["tests"]}
    assert len(tests["test_flaky_call"]["reruns"]) == 1


def test_records_without_reruns_read_as_before_and_reruns_round_trip():
    old = {
        "schema": "rtgov.run/1",
        "run_id": "20260101T000000Z-abcdef",
        "started_at": "2026-01-01T00:00:00.000Z",
        "ended_at": "2026-01-01T00:00:01.000Z",
        "mode": "record",
        "exit_status": 0,
        "pytest_args": [],
        "memory_mode": "tracemalloc",
        "backend": "numpy",
        "workers": ["main"],
        "environment": {},
        "tests": [
            {
                "nodeid": "t.py::test_a",
                "outcome": "passed",
                "worker": "main",
                "rounds": 1,
                "warmup": 0,
                "samples": [{"wall_ns": 5, "cpu_ns": 4, "warmup": False, "completed": True}],
                "metrics": [],
            }
        ],
        "fixtures": [],
    }
    record = RunRecord.from_dict(json.loads(json.dumps(old)))
    assert record.tests[0].reruns == ()
    assert "reruns" not in record.tests[0].to_dict()

    new = json.loads(json.dumps(old))
    new["tests"][0]["reruns"] = [
        {
            "outcome": "failed",
            "samples": [{"wall_ns": 9, "cpu_ns": 8, "warmup": False, "completed": False}],
            "metrics": [{"name": "loss", "value": 10, "unit": ""}],
            "fixtures": [],
        }
    ]
    read = RunRecord.from_dict(new)
    (rerun,) = read.tests[0].reruns
    assert (rerun.outcome, rerun.samples[0].wall_ns, rerun.metrics[0].value) == ("failed", 9, 10.0)
    again = RunRecord.from_dict(json.loads(read.canonical_json()))
    assert again == read
    assert read.canonical_json() == canonical_json(read.to_dict())

    del new["tests"][0]["reruns"][0]["metrics"]
    with pytest.raises(RecordFormatError, match=r"\$\.tests\[0\]\.reruns\[0\].*metrics"):
        RunRecord.from_dict(new, source="run.json")


def test_a_malformed_rerun_is_named_by_its_place():
    data = {
        "outcome": "rerun",  # not an outcome a record holds
        "samples": [],
        "metrics": [],
    }
    from pytest_rtgov.core.records import Rerun
    from pytest_rtgov.core.schema import convert

    with pytest.raises(RecordFormatError, match=r"at \$\.outcome"):
        convert(data, Rerun, source="r.json", error=RecordFormatError)


def test_a_worker_crash_rerun_elsewhere_is_a_rerun(pytester, read_latest):
    pytest.importorskip("xdist")
    pytester.makepyfile(
        test_crash="""
        import os, pathlib

        def test_crashes_once(rtgov):
            counter = pathlib.Path(__file__).with_name("crash.attempts")
            first = not counter.exists()
            counter.write_text("1")
            rtgov.record("loss", 1.0, higher_is_better=False)
            if first:
                os._exit(1)  # the worker dies; pytest-rerunfailures reschedules the test
        """
    )
    result = pytester.runpytest_subprocess("--rtgov", "--reruns", "1", "-n", "2")
    assert result.parseoutcomes().get("passed") == 1
    (test,) = read_latest(pytester.path)["tests"]
    assert test["outcome"] == "passed"
    assert [m["value"] for m in test["metrics"]] == [1.0]
    (rerun,) = test["reruns"]
    assert rerun["outcome"] == "error" and rerun["samples"] == []
