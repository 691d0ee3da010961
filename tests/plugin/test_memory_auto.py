"""The default ``auto`` memory mode end to end: precise where a gate or marker asks,
the cheap resident set probe elsewhere, the probe recorded on every sample."""

from __future__ import annotations

import pytest

from pytest_rtgov.measure.memory import rss_available

# Known allocations: numpy arrays, bytes and a list of Python objects, 16 MiB each.
SUITE = """
import numpy as np
import pytest

MIB = 1 << 20

@pytest.fixture
def big_table():
    return np.ones(16 * MIB, dtype=np.uint8)

@pytest.fixture
def other_table():
    return np.ones(16 * MIB, dtype=np.uint8)

def test_gated(big_table):
    a = np.ones(16 * MIB, dtype=np.uint8)
    del a

def test_gated_bytes():
    b = bytes(16 * MIB)
    del b

def test_other(other_table):
    # fresh resident pages, whatever heap this process (an in-process run in an xdist
    # worker) already holds: malloc could serve a numpy array from free resident heap
    import mmap
    pages = mmap.mmap(-1, 48 * MIB)
    for offset in range(0, 48 * MIB, mmap.PAGESIZE):
        pages[offset] = 1
    pages.close()

@pytest.mark.rtgov(memory=True)
def test_marked():
    a = np.ones(16 * MIB, dtype=np.uint8)
    del a

@pytest.mark.heavy
def test_by_marker():
    items = [object() for _ in range(20_000)]
    del items
"""

GATES = """
[defaults]
baseline = "baseline"

[[gates]]
name = "memory"
metric = "peak_memory"
tests = ["test_suite.py::test_gated*"]
fixtures = ["big_*"]
markers = ["heavy"]
max = "1 GiB"
"""

MIB = 1 << 20
CHEAP = "rss" if rss_available() else None


def _sample(record, nodeid):
    (test,) = [t for t in record["tests"] if t["nodeid"] == nodeid]
    (sample,) = test["samples"]
    return sample


def _fixture_sample(record, name):
    (fixture,) = [f for f in record["fixtures"] if f["name"] == name]
    (setup,) = fixture["setups"]
    return setup["sample"]


def _check(record):
    assert record["memory_mode"] == "auto"
    for nodeid in ("test_suite.py::test_gated", "test_suite.py::test_gated_bytes"):
        sample = _sample(record, nodeid)
        assert sample["memory_probe"] == "tracemalloc", nodeid
        assert abs(sample["peak_memory_bytes"] - 16 * MIB) <= 0.01 * 16 * MIB, nodeid
    marked = _sample(record, "test_suite.py::test_marked")
    assert marked["memory_probe"] == "tracemalloc"
    assert abs(marked["peak_memory_bytes"] - 16 * MIB) <= 0.01 * 16 * MIB
    # 20 000 objects of 16 bytes, and the list's 8-byte slots: ~480 KB, precisely
    by_marker = _sample(record, "test_suite.py::test_by_marker")
    assert by_marker["memory_probe"] == "tracemalloc"
    assert 20_000 * 24 <= by_marker["peak_memory_bytes"] <= 20_000 * 24 * 1.1
    fixture = _fixture_sample(record, "big_table")
    assert fixture["memory_probe"] == "tracemalloc"
    assert abs(fixture["peak_memory_bytes"] - 16 * MIB) <= 0.01 * 16 * MIB
    other = _sample(record, "test_suite.py::test_other")
    other_fixture = _fixture_sample(record, "other_table")
    if CHEAP is None:  # no clear_refs here: not measured, never 0
        assert other["peak_memory_bytes"] is None and "memory_probe" not in other
        return
    assert other["memory_probe"] == other_fixture["memory_probe"] == "rss"
    # resident pages: 48 MiB of fresh pages (an anonymous mapping, touched)
    assert other["peak_memory_bytes"] >= 0.9 * 48 * MIB


@pytest.fixture
def suite(pytester):
    pytester.makepyfile(test_suite=SUITE)
    pytester.makefile(".toml", gates=GATES)
    pytester.makeini("[pytest]\nmarkers =\n    heavy: a heavy test\n")
    return pytester


def test_a_gated_session_measures_precisely_what_the_memory_gate_selects(suite, read_latest):
    result = suite.runpytest("--rtgov-gate", "-p", "no:randomly")
    result.assert_outcomes(passed=5)
    assert result.ret == 0
    record = read_latest(suite.path)
    _check(record)
    statuses = {g["subject"]: g["status"] for g in record["gate_results"]}
    assert set(statuses.values()) == {"pass"}
    assert "test_suite.py::test_other" not in statuses


def test_under_xdist_workers_learn_the_selection(suite, read_latest):
    pytest.importorskip("xdist")
    result = suite.runpytest_subprocess("--rtgov-gate", "-n", "2", "-p", "no:randomly")
    result.assert_outcomes(passed=5)
    assert result.ret == 0
    _check(read_latest(suite.path))


def test_a_recording_session_measures_like_the_gates_file(suite, read_latest):
    """``--rtgov`` records what a later gate (``rtgov merge --gate``, a baseline made
    from the record) would judge precisely: the gates file's selection, when there is one."""
    result = suite.runpytest("--rtgov", "-p", "no:randomly")
    result.assert_outcomes(passed=5)
    _check(read_latest(suite.path))


def test_without_a_gates_file_only_marked_tests_are_precise(suite, read_latest):
    (suite.path / "gates.toml").unlink()
    result = suite.runpytest("--rtgov", "-p", "no:randomly")
    result.assert_outcomes(passed=5)
    record = read_latest(suite.path)
    assert record["memory_mode"] == "auto"
    assert _sample(record, "test_suite.py::test_marked")["memory_probe"] == "tracemalloc"
    gated = _sample(record, "test_suite.py::test_gated")  # no gate knows it: cheap
    assert gated.get("memory_probe") == CHEAP


@pytest.mark.parametrize("mode", ["tracemalloc", "rss", "off"])
def test_the_other_modes_measure_every_region_alike(suite, read_latest, mode):
    if mode == "rss" and CHEAP is None:
        pytest.skip("no writable /proc/self/clear_refs")
    result = suite.runpytest("--rtgov-gate", f"--rtgov-memory={mode}", "-p", "no:randomly")
    result.assert_outcomes(passed=5)
    record = read_latest(suite.path)
    assert record["memory_mode"] == mode
    probes = {s.get("memory_probe") for t in record["tests"] for s in t["samples"]}
    assert probes == ({None} if mode == "off" else {mode})


def test_a_bad_memory_marker_value_is_a_usage_error(pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.rtgov(memory="yes")
        def test_x():
            pass
        """
    )
    result = pytester.runpytest("--rtgov")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*rtgov marker argument 'memory': expected True or False*"])


def test_memory_true_keeps_the_gates_default_rounds(pytester, read_latest):
    pytester.makepyfile(
        test_suite="""
        import numpy as np
        import pytest

        @pytest.mark.rtgov(memory=True)
        def test_timed():
            np.ones(1 << 20)
        """
    )
    pytester.makefile(
        ".toml",
        gates="""
        [defaults]
        baseline = "baseline"
        rounds = 3

        [[gates]]
        name = "time"
        metric = "cpu_time"
        tests = ["test_suite.py::test_timed"]
        max = "10 s"
        """,
    )
    result = pytester.runpytest("--rtgov-gate", "-p", "no:randomly")
    result.assert_outcomes(passed=1)
    (test,) = read_latest(pytester.path)["tests"]
    assert (test["rounds"], test["warmup"]) == (3, 1)
    assert {s["memory_probe"] for s in test["samples"]} == {"tracemalloc"}
    assert all(abs(s["peak_memory_bytes"] - 8 * MIB) <= 0.01 * 8 * MIB for s in test["samples"])
