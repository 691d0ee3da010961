"""Correct records next to other plugins: code under test that uses tracemalloc itself,
and pytest-memray beside rtgov's memray mode (pytest-rerunfailures:
test_other_plugins_reruns.py)."""

from __future__ import annotations

import inspect

import pytest

from tests.unit import test_probes

pytest.importorskip("pytest_memray")

USES_TRACEMALLOC = """
import tracemalloc
import numpy as np
import pytest

def test_stops_tracing():
    tracemalloc.start()
    data = np.ones(1 << 17)
    tracemalloc.stop()

def test_restarts_tracing():
    tracemalloc.stop()
    tracemalloc.start()
    data = np.ones(1 << 17)

def test_clears_traces():
    data = np.ones(1 << 17)
    tracemalloc.clear_traces()

def test_snapshot_only():
    data = np.ones(1 << 17)  # 1 MiB
    tracemalloc.take_snapshot()

@pytest.fixture
def traced():
    tracemalloc.start()
    data = np.ones(1 << 17)
    tracemalloc.stop()
    return data

def test_fixture_uses_tracemalloc(traced):
    pass

def test_plain():
    data = np.ones(1 << 17)
"""


def test_code_that_uses_tracemalloc_is_unmeasured_with_a_note(pytester, read_latest):
    pytester.makepyfile(test_tm=USES_TRACEMALLOC)
    result = pytester.runpytest("--rtgov", "--rtgov-memory", "tracemalloc")
    result.assert_outcomes(passed=6)
    tests = {t["nodeid"].split("::")[1]: t for t in read_latest(pytester.path)["tests"]}
    for name in ("test_stops_tracing", "test_restarts_tracing", "test_clears_traces"):
        (sample,) = tests[name]["samples"]
        assert sample["peak_memory_bytes"] is None, name  # never 0 B
        assert "tracemalloc" in sample["evidence"], name
    for name in ("test_snapshot_only", "test_plain"):  # a snapshot changes nothing
        (sample,) = tests[name]["samples"]
        assert sample["peak_memory_bytes"] >= 1 << 20 and sample["evidence"] is None
    fixtures = {f["name"]: f for f in read_latest(pytester.path)["fixtures"]}
    (setup,) = fixtures["traced"]["setups"]
    assert setup["sample"]["peak_memory_bytes"] is None
    assert "tracemalloc" in setup["sample"]["evidence"]
    result.stdout.fnmatch_lines(
        [
            "*rtgov: memory not measured for 4 regions: the code under test started, "
            "stopped or cleared tracemalloc itself*",
            "*test_tm.py::test_clears_traces*",
        ]
    )


def test_projects_own_probe_tests_record_none_not_zero(pytester, read_latest):
    # the test itself, as tests/unit/test_probes.py holds it, run under rtgov
    source = inspect.getsource(test_probes.test_probe_leaves_foreign_tracing_on)
    header = "import tracemalloc\nfrom pytest_rtgov.measure.memory import TracemallocProbe\n\n"
    pytester.makepyfile(test_probe=header + source)
    result = pytester.runpytest("--rtgov", "--rtgov-memory", "tracemalloc")
    result.assert_outcomes(passed=1)
    ((test,),) = [read_latest(pytester.path)["tests"]]
    assert test["samples"][0]["peak_memory_bytes"] is None


def test_pytest_memray_with_memray_mode_is_a_usage_error_before_any_test(pytester):
    pytester.makepyfile(test_x="def test_x():\n    raise SystemExit('must not run')\n")
    result = pytester.runpytest("--rtgov", "--rtgov-memory", "memray", "--memray")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*pytest-memray's --memray and --rtgov-memory memray cannot both hold a memray Tracker*"]
    )
    assert not (pytester.path / ".rtgov" / "latest").exists()


def test_pytest_memray_installed_but_inactive_is_no_error(pytester, read_latest):
    pytester.makepyfile(test_x="import numpy as np\n\ndef test_x():\n    np.ones(1 << 17)\n")
    result = pytester.runpytest("--rtgov", "--rtgov-memory", "memray")
    result.assert_outcomes(passed=1)
    (sample,) = read_latest(pytester.path)["tests"][0]["samples"]
    assert sample["peak_memory_bytes"] >= 1 << 20


def test_pytest_memray_alone_beside_rtgov_default_mode_is_no_error(pytester):
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest("--rtgov", "--rtgov-memory", "off", "--memray")
    result.assert_outcomes(passed=1)
