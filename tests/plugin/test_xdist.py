"""Under pytest-xdist: canonical records, per-worker fixture setups, controller-only writes."""

from __future__ import annotations

import pytest

pytest.importorskip("xdist")

SUITE = """
import pytest

@pytest.fixture(scope="session")
def trained(rtgov):
    rtgov.record("train_loss", 0.125, higher_is_better=False)
    return 42

@pytest.mark.parametrize("i", range(12))
def test_uses_trained(trained, rtgov, i):
    rtgov.record("score", float(i), higher_is_better=True)
    assert trained == 42

@pytest.mark.rtgov(rounds=3)
def test_rounds():
    pass
"""


def _entries(record):
    return (
        [(t["nodeid"], t["outcome"], [m["name"] for m in t["metrics"]]) for t in record["tests"]],
        [(f["nodeid"], f["name"], f["scope"]) for f in record["fixtures"]],
    )


def test_n2_and_n0_records_have_the_same_entries_in_the_same_order(pytester, read_latest):
    pytester.makepyfile(test_suite=SUITE)
    serial = pytester.runpytest_subprocess("--rtgov", "-n", "0")
    serial.assert_outcomes(passed=13)
    serial_record = read_latest(pytester.path)
    parallel = pytester.runpytest_subprocess("--rtgov", "-n", "2", "--dist", "load")
    parallel.assert_outcomes(passed=13)
    parallel_record = read_latest(pytester.path)
    assert serial_record["run_id"] != parallel_record["run_id"]
    assert _entries(serial_record) == _entries(parallel_record)
    assert serial_record["workers"] == ["main"]
    assert parallel_record["workers"] == ["gw0", "gw1"]

    rounds = next(t for t in parallel_record["tests"] if t["nodeid"].endswith("test_rounds"))
    assert len(rounds["samples"]) == 3

    (trained,) = [f for f in parallel_record["fixtures"] if f["name"] == "trained"]
    workers = [s["worker"] for s in trained["setups"]]
    assert workers == ["gw0", "gw1"]  # each worker set the session fixture up once
    assert all(s["metrics"][0]["name"] == "train_loss" for s in trained["setups"])
    # only the controller writes: one record per session, no worker files
    runs = sorted((pytester.path / ".rtgov" / "runs").glob("*.json"))
    assert len(runs) == 2


def test_bad_marker_under_xdist_is_still_a_usage_error(pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.rtgov(rounds="many")
        def test_x():
            pass
        """
    )
    result = pytester.runpytest_subprocess("--rtgov", "-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*rtgov marker argument 'rounds'*(not 'many')*"])


def test_every_worker_sends_its_calibration_through_workeroutput(pytester, read_latest):
    """Calibration is a worker's, not a test's: it comes back in ``workeroutput``, so a
    worker whose tests never reached their call phase still gives its calibration."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def broken():
            raise RuntimeError("setup fails")

        def test_setup_error(broken):
            pass
        """
    )
    result = pytester.runpytest_subprocess("--rtgov", "--rtgov-calibrate", "-n", "1")
    result.assert_outcomes(errors=1)
    calibration = read_latest(pytester.path)["calibration"]
    assert set(calibration["workers"]) == {"gw0"} and calibration["workers"]["gw0"] > 0
    assert calibration["kernel"]

    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess(
        "--rtgov", "--rtgov-calibrate", "-n", "2", "test_suite.py"
    )
    result.assert_outcomes(passed=13)
    record = read_latest(pytester.path)
    assert set(record["calibration"]["workers"]) == set(record["workers"]) == {"gw0", "gw1"}


def test_a_phase_crosses_the_wire_unchanged():
    from pytest_rtgov.core.records import Metric
    from pytest_rtgov.plugin.samples import Phase

    phase = Phase("gw3", fixtures=[{"nodeid": "t.py", "name": "f"}])
    phase.markers = ("slow",)
    phase.rounds, phase.warmup = 3, 1
    phase.samples = [{"wall_ns": 5}]
    phase.metrics = [Metric(name="loss", value=0.5, unit="", higher_is_better=False)]
    phase.usage_error = "bad marker"
    back = Phase.from_wire(phase.to_wire())
    for name in Phase.__slots__:
        assert getattr(back, name) == getattr(phase, name), name
    assert Phase.from_wire(Phase("gw0").to_wire()).samples is None
