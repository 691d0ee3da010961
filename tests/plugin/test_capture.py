"""End-to-end behaviour of the plugin, through pytester."""

from __future__ import annotations

import json

import pytest

WORKLOAD = """
import numpy as np
import pytest

@pytest.fixture(scope="session")
def model(rtgov):
    weights = np.ones((512, 512))          # 2 MiB, visible to tracemalloc
    rtgov.record("train_loss", 0.25, higher_is_better=False)
    return weights

@pytest.fixture
def batch():
    return np.zeros(1000)

def test_accuracy(model, batch, rtgov):
    rtgov.record("val_accuracy", 0.93, unit="ratio", higher_is_better=True)
    assert model.shape == (512, 512)

@pytest.mark.rtgov(rounds=5, warmup=2)
def test_kernel():
    np.ones((256, 256)) @ np.ones((256, 256))

def test_fails_midway():
    big = np.ones(1 << 20)                  # 8 MiB allocated before the failure
    assert big.sum() < 0

@pytest.mark.skip(reason="not today")
def test_skipped():
    pass
"""


@pytest.fixture
def workload(pytester):
    pytester.makepyfile(test_workload=WORKLOAD)
    return pytester


def test_inactive_session_writes_nothing_and_fixture_still_validates(pytester):
    pytester.makepyfile(
        """
        import pytest
        from pytest_rtgov.errors import InvalidMetricError

        def test_record(rtgov):
            assert not rtgov.active
            rtgov.record("ok", 1.0)
            with pytest.raises(InvalidMetricError, match="finite"):
                rtgov.record("loss", float("nan"))
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert not (pytester.path / ".rtgov").exists()
    assert "rtgov: run" not in result.stdout.str()


def test_record_holds_every_test_fixture_sample_and_metric(workload, read_latest):
    result = workload.runpytest("--rtgov", "--rtgov-memory=tracemalloc")  # precise everywhere
    result.assert_outcomes(passed=2, failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*rtgov: run * (record, 4 tests, * written to *"])
    record = read_latest(workload.path)
    assert record["schema"] == "rtgov.run/1"
    assert record["exit_status"] == 1
    assert record["memory_mode"] == "tracemalloc"
    tests = {t["nodeid"]: t for t in record["tests"]}
    assert list(tests) == sorted(tests)

    accuracy = tests["test_workload.py::test_accuracy"]
    assert accuracy["outcome"] == "passed"
    assert [m["name"] for m in accuracy["metrics"]] == ["val_accuracy"]
    assert accuracy["metrics"][0] == {
        "name": "val_accuracy",
        "value": 0.93,
        "unit": "ratio",
        "higher_is_better": True,
    }
    (sample,) = accuracy["samples"]
    assert sample["wall_ns"] > 0 and sample["cpu_ns"] >= 0 and sample["completed"]

    kernel = tests["test_workload.py::test_kernel"]
    assert (kernel["rounds"], kernel["warmup"]) == (5, 2)
    assert [s["warmup"] for s in kernel["samples"]] == [
        True,
        True,
        False,
        False,
        False,
        False,
        False,
    ]
    # a 256x256 float64 result is 512 KiB: the tracemalloc peak sees it
    assert all(s["peak_memory_bytes"] >= 512 * 1024 for s in kernel["samples"])

    failed = tests["test_workload.py::test_fails_midway"]
    assert failed["outcome"] == "failed"
    (partial,) = failed["samples"]
    assert partial["completed"] is False
    assert partial["peak_memory_bytes"] >= 8 * 1024 * 1024

    skipped = tests["test_workload.py::test_skipped"]
    assert skipped["outcome"] == "skipped" and skipped["samples"] == []

    fixtures = {(f["nodeid"], f["name"]): f for f in record["fixtures"]}
    model = fixtures[("", "model")]
    assert model["scope"] == "session"
    (setup,) = model["setups"]
    assert setup["worker"] == "main"
    assert setup["requested_by"] == "test_workload.py::test_accuracy"
    assert setup["sample"]["peak_memory_bytes"] >= 2 * 1024 * 1024
    assert setup["metrics"][0]["name"] == "train_loss"
    batch = fixtures[("test_workload.py::test_accuracy", "batch")]
    assert batch["scope"] == "function"
    assert ("", "rtgov") not in fixtures  # the plugin's own fixture is not measured


def test_fixture_that_raises_keeps_its_partial_setup(pytester, read_latest):
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def broken():
            data = bytearray(4 << 20)
            raise RuntimeError("cannot load weights")

        def test_uses_broken(broken):
            pass
        """
    )
    result = pytester.runpytest("--rtgov", "--rtgov-memory=tracemalloc")
    result.assert_outcomes(errors=1)
    record = read_latest(pytester.path)
    (test,) = record["tests"]
    assert test["outcome"] == "error" and test["samples"] == []
    (fixture,) = [f for f in record["fixtures"] if f["name"] == "broken"]
    (setup,) = fixture["setups"]
    assert setup["outcome"] == "error"
    assert setup["sample"]["completed"] is False
    assert setup["sample"]["peak_memory_bytes"] >= 4 << 20


@pytest.mark.parametrize(
    ("value", "expected"),
    [("float('nan')", "finite"), ("float('inf')", "finite"), ("'high'", "real number")],
)
def test_bad_metric_values_fail_the_test_with_a_clear_message(pytester, value, expected):
    pytester.makepyfile(
        f"""
        def test_metric(rtgov):
            rtgov.record("val_loss", {value})
        """
    )
    result = pytester.runpytest("--rtgov")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*InvalidMetricError: metric 'val_loss': expected a {expected}*"])


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        (
            "rounds=0",
            "*rtgov marker argument 'rounds': expected an integer from 1 to 10000 (not 0)*",
        ),
        ("rounds=3, repeat=2", "*unknown rtgov marker argument(s) repeat*"),
        ("5", "*rtgov marker takes keyword arguments only*"),
        ("warmup=-1", "*'warmup': expected an integer from 0 to 10000*"),
    ],
)
def test_bad_marker_arguments_are_usage_errors(pytester, marker, message):
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.rtgov({marker})
        def test_x():
            pass
        """
    )
    result = pytester.runpytest("--rtgov")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_bad_memory_mode_is_a_usage_error_naming_the_choices(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--rtgov", "--rtgov-memory=heap")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--rtgov-memory*invalid choice*'heap'*tracemalloc*memray*"])


@pytest.mark.parametrize("mode", ["off", "rss", "memray"])
def test_memory_modes(pytester, read_latest, mode):
    pytester.makepyfile(
        """
        import numpy as np

        def test_alloc():
            # above glibc's largest mmap threshold (32 MiB), so the pages are new
            # to the process and rss sees them too
            a = np.ones(48 << 20, dtype=np.uint8)
        """
    )
    result = pytester.runpytest("--rtgov", f"--rtgov-memory={mode}")
    result.assert_outcomes(passed=1)
    record = read_latest(pytester.path)
    (sample,) = record["tests"][0]["samples"]
    if mode == "off":
        assert sample["peak_memory_bytes"] is None
    else:
        # rss sees pages, not bytes, and the base includes freed heap: allow 10%
        assert sample["peak_memory_bytes"] >= 0.9 * (48 << 20)
    if mode == "memray":
        capture = pytester.path / ".rtgov" / sample["evidence"]
        assert capture.is_file() and capture.suffix == ".bin"
    else:
        assert sample["evidence"] is None


def test_quiet_keeps_only_the_record_line_and_no_colour_off_terminal(workload):
    result = workload.runpytest("--rtgov", "-q")
    out = result.stdout.str()
    assert "rtgov: run" in out
    assert "slowest tests" not in out
    assert "\x1b[" not in out
    loud = workload.runpytest("--rtgov")
    assert "slowest tests" in loud.stdout.str()
    assert "\x1b[" not in loud.stdout.str()
    silent = workload.runpytest("--rtgov", "-qq")
    assert "rtgov: run" not in silent.stdout.str()


def test_colour_follows_pytest_color_option(workload):
    result = workload.runpytest("--rtgov", "--color=yes")
    assert "\x1b[" in result.stdout.str().split("pytest-rtgov")[-1]


def test_json_lines_log(workload, tmp_path):
    log = tmp_path / "rtgov.jsonl"
    workload.runpytest("--rtgov", f"--rtgov-log-json={log}")
    events = [json.loads(line) for line in log.read_text().splitlines()]
    names = [e["event"] for e in events]
    assert names[0] == "session.start" and "record.written" in names
    written = events[names.index("record.written")]
    assert written["tests"] == 4 and written["level"] == "info"


def test_state_dir_option_and_gate_mode(workload, read_latest):
    workload.makefile(
        ".toml",
        gates="[[gates]]\nname='t'\nmetric='wall_time'\ntests=['test_workload.py::*']\nmax=60\n",
    )
    result = workload.runpytest("--rtgov-gate", "--rtgov-dir=out/state")
    assert result.ret == 1  # the failing test, not the gate
    record = read_latest(workload.path, "out/state")
    assert record["mode"] == "gate"
    assert record["pytest_args"][:2] == ["--rtgov-gate", "--rtgov-dir=out/state"]


def test_metric_recorded_in_teardown_belongs_to_the_test(pytester, read_latest):
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def tracked(rtgov):
            yield
            rtgov.record("teardown_seconds", 0.5, unit="s")

        def test_t(tracked):
            pass
        """
    )
    pytester.runpytest("--rtgov").assert_outcomes(passed=1)
    (test,) = read_latest(pytester.path)["tests"]
    assert [m["name"] for m in test["metrics"]] == ["teardown_seconds"]


def test_tests_that_mock_the_clock_do_not_disturb_measurement(pytester, read_latest):
    pytester.makepyfile(
        """
        import time

        def test_frozen(monkeypatch):
            monkeypatch.setattr(time, "perf_counter_ns", lambda: 0)
            monkeypatch.setattr(time, "process_time_ns", lambda: 0)
            sum(range(10000))
        """
    )
    pytester.runpytest("--rtgov").assert_outcomes(passed=1)
    (sample,) = read_latest(pytester.path)["tests"][0]["samples"]
    assert sample["wall_ns"] > 0
