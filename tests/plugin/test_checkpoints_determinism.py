"""--rtgov-determinism-check: each test run twice in one process, checkpoints compared."""

from __future__ import annotations

import pytest

SUITE = """
import numpy as np
import pytest

CALLS = [0]

@pytest.fixture
def noisy_fixture(rtgov):
    CALLS[0] += 1
    rtgov.checkpoint("state", np.array([CALLS[0]], dtype=np.int64))

def test_counter(rtgov):
    # depends on how often the module's counter was bumped: differs between two runs
    CALLS[0] += 1
    rtgov.checkpoint("h", np.full(3, CALLS[0], dtype=np.float32))

def test_deterministic(rtgov):
    rtgov.checkpoint("h", np.linspace(0.0, 1.0, 5))
    rtgov.record_digest("d", np.arange(3))

def test_scatter_add(rtgov):
    # a float scatter-add with colliding indices: np.add.at on the CPU adds in index
    # order, so the sum is the same bits every run (unlike atomics on a GPU)
    rng = np.random.default_rng(0)
    index = rng.integers(0, 8, size=10_000)
    values = rng.standard_normal(10_000).astype(np.float32)
    out = np.zeros(8, dtype=np.float32)
    np.add.at(out, index, values)
    rtgov.checkpoint("scatter", out)

def test_uses_noisy(noisy_fixture):
    pass
"""


def _run(pytester, *args):
    pytester.makepyfile(test_suite=SUITE)
    return pytester.runpytest_subprocess("--rtgov", "--rtgov-determinism-check", *args)


@pytest.mark.parametrize("workers", [None, "2"])
def test_a_nondeterministic_checkpoint_is_flagged_and_exits_6(pytester, read_latest, workers):
    if workers is not None:
        pytest.importorskip("xdist")
    result = _run(pytester, *(["-n", workers] if workers else ["-p", "no:xdist"]))
    assert result.ret == 6
    text = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*rtgov determinism check*",
            "determinism check: test_suite.py::test_counter: test checkpoint 'h' occurrence 0: "
            "first run sha256:*, second run sha256:*",
            "determinism check: test_suite.py::test_uses_noisy: fixture noisy_fixture "
            "checkpoint 'state' occurrence 0: *",
        ]
    )
    assert "test_deterministic" not in text.split("rtgov determinism check")[1]
    assert "test_scatter_add" not in text.split("rtgov determinism check")[1]
    record = read_latest(pytester.path)
    assert record["exit_status"] == 6
    # the logged run is the one recorded: one entry per test, one checkpoint each
    counter = next(t for t in record["tests"] if t["nodeid"].endswith("test_counter"))
    assert [c["name"] for c in counter["checkpoints"]] == ["h"]
    assert len(record["tests"]) == 4
    noisy = next(f for f in record["fixtures"] if f["name"] == "noisy_fixture")
    assert len(noisy["setups"]) == 1


def test_a_deterministic_session_passes(pytester, read_latest):
    pytester.makepyfile(
        test_suite="""
        import numpy as np
        import pytest

        @pytest.fixture(scope="module")
        def once(rtgov):
            rtgov.checkpoint("once", np.ones(2))  # set up by the first run only

        def test_ok(once, rtgov):
            rtgov.checkpoint("h", np.ones(4) / 3)
        """
    )
    result = pytester.runpytest_subprocess("--rtgov", "--rtgov-determinism-check")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["rtgov determinism check: every checkpoint identical"])
    record = read_latest(pytester.path)
    once = next(f for f in record["fixtures"] if f["name"] == "once")
    assert [c["name"] for c in once["setups"][0]["checkpoints"]] == ["once"]


def test_a_gated_session_names_the_findings_in_its_verdict(pytester, read_latest):
    pytester.makepyfile(test_suite=SUITE)
    pytester.makefile(
        ".toml",
        gates="[[gates]]\nname = 'cpu'\nmetric = 'cpu_time'\ntests = ['test_suite.py::*']\n"
        "max = '10 s'\n",
    )
    result = pytester.runpytest_subprocess(
        "--rtgov-gate", "--rtgov-determinism-check", "-k", "counter"
    )
    assert result.ret == 6
    verdict = read_latest(pytester.path)["verdict"]
    assert verdict["status"] == "breached"
    assert any("test_counter: test checkpoint 'h'" in note for note in verdict["notes"])
