"""rtgov.checkpoint, digest and stage-output checkpoints, through pytester."""

from __future__ import annotations

import hashlib

import pytest

SUITE = """
import numpy as np
import pytest

@pytest.fixture(scope="module")
def table(rtgov):
    t = np.arange(6, dtype=np.float32).reshape(2, 3)
    rtgov.checkpoint("table", t)
    return t

@pytest.fixture
def doubled(table, rtgov):
    d = table * 2
    rtgov.checkpoint("doubled", d, keep=True)
    return d

def test_a(doubled, rtgov):
    rtgov.checkpoint("h", doubled + 1)
    rtgov.record_digest("d", doubled)

@pytest.mark.rtgov(rounds=2)
def test_rounds(rtgov):
    rtgov.checkpoint("r", np.ones(3))

@pytest.mark.parametrize("i", range(4))
def test_many(table, rtgov, i):
    rtgov.checkpoint("row", table[i % 2])
"""


def _npy_digest(array):
    from pytest_rtgov.store.stage_cache import array_bytes

    return "sha256:" + hashlib.sha256(array_bytes(array)).hexdigest()


def _test(record, suffix):
    return next(t for t in record["tests"] if t["nodeid"].endswith(suffix))


def _fixture(record, name):
    return next(f for f in record["fixtures"] if f["name"] == name)


def _cps(entries):
    return [
        (c["kind"], c["name"], c["sha256"], c["dtype"], c["shape"], c["kept"]) for c in entries
    ]


def test_checkpoints_go_to_their_owner_with_digest_dtype_shape(pytester, read_latest):
    import numpy as np

    pytester.makepyfile(test_suite=SUITE)
    pytester.runpytest("--rtgov").assert_outcomes(passed=6)
    record = read_latest(pytester.path)
    doubled = np.arange(6, dtype=np.float32).reshape(2, 3) * 2
    a = _test(record, "test_a")
    assert _cps(a["checkpoints"]) == [
        ("array", "h", _npy_digest(doubled + 1), "<f4", [2, 3], False),
        ("digest", "d", a["metrics"][0]["value"], "<f4", [2, 3], False),
    ]
    (setup,) = _fixture(record, "doubled")["setups"]
    assert _cps(setup["checkpoints"]) == [
        ("array", "doubled", _npy_digest(doubled), "<f4", [2, 3], True)
    ]
    # kept: the .npy bytes are in the object store, named by the checkpoint's digest
    from pytest_rtgov.store.objects import ObjectStore

    store = ObjectStore.of_state_dir(pytester.path / ".rtgov")
    assert store.get(_npy_digest(doubled)) == _array_bytes(doubled)
    assert not store.has(_npy_digest(doubled + 1))
    # the body of a test with rounds runs each round: one checkpoint per run of it
    assert [c["name"] for c in _test(record, "test_rounds")["checkpoints"]] == ["r", "r"]
    # a wider fixture's checkpoint belongs to its one setup; seq orders them causally
    (table,) = _fixture(record, "table")["setups"]
    assert [c["name"] for c in table["checkpoints"]] == ["table"]
    seqs = [table["checkpoints"][0]["seq"], setup["checkpoints"][0]["seq"]]
    seqs += [c["seq"] for c in a["checkpoints"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # a test without checkpoints writes no key (records stay as they were)
    pytester.makepyfile(test_suite="def test_plain(): pass")
    pytester.runpytest("--rtgov").assert_outcomes(passed=1)
    assert "checkpoints" not in read_latest(pytester.path)["tests"][0]


def _array_bytes(array):
    from pytest_rtgov.store.stage_cache import array_bytes

    return array_bytes(array)


def test_keep_checkpoints_option_keeps_every_array(pytester, read_latest):
    pytester.makepyfile(test_suite=SUITE)
    pytester.runpytest("--rtgov", "--rtgov-keep-checkpoints").assert_outcomes(passed=6)
    record = read_latest(pytester.path)
    from pytest_rtgov.store.objects import ObjectStore

    store = ObjectStore.of_state_dir(pytester.path / ".rtgov")
    arrays = [c for t in record["tests"] for c in t.get("checkpoints", ())]
    arrays = [c for c in arrays if c["kind"] == "array"]
    assert arrays and all(c["kept"] and store.has(c["sha256"]) for c in arrays)


def test_without_rtgov_checkpoint_validates_and_returns_the_digest(pytester):
    pytester.makepyfile(
        """
        import numpy as np
        import pytest
        from pytest_rtgov.errors import InvalidMetricError, RtgovError

        def test_x(rtgov):
            assert rtgov.checkpoint("x", np.zeros(2)).startswith("sha256:")
            with pytest.raises(RtgovError, match="expected a numpy or cupy array"):
                rtgov.checkpoint("x", [1.0, 2.0])
            with pytest.raises(InvalidMetricError, match="invalid checkpoint name"):
                rtgov.checkpoint("1 bad", np.zeros(2))
            with pytest.raises(InvalidMetricError, match="holds Python objects"):
                rtgov.checkpoint("o", np.array([object()]))
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)
    assert not (pytester.path / ".rtgov").exists()


def test_bad_checkpoint_in_a_session_fails_the_test_with_the_message(pytester):
    pytester.makepyfile(
        """
        def test_x(rtgov):
            rtgov.checkpoint("x", {"a": 1})
        """
    )
    result = pytester.runpytest("--rtgov")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*checkpoint 'x': expected a numpy or cupy array, got builtins*"])


STAGES = """
import numpy as np
from pytest_rtgov import stage

@stage(seeds={"s": 1})
def base(seeds, rtgov):
    x = np.arange(4, dtype=np.float64) + seeds["s"]
    rtgov.record_digest("base_digest", x)
    return {"x": x, "y": (x * 2).astype(np.int32)}

def test_uses(base, rtgov):
    rtgov.checkpoint("sum", base["x"] + base["y"])
"""


def _stage_cps(record):
    (setup,) = _fixture(record, "base")["setups"]
    return setup["stage"], [(c["kind"], c["name"], c["sha256"], c["dtype"], c["shape"])
                            for c in setup["checkpoints"]]  # fmt: skip


def test_stage_outputs_are_checkpoints_for_a_run_and_for_a_hit(pytester, read_latest):
    import numpy as np

    pytester.makepyfile(test_stages=STAGES)
    pytester.runpytest("--rtgov").assert_outcomes(passed=1)
    event, executed = _stage_cps(read_latest(pytester.path))
    x = np.arange(4, dtype=np.float64) + 1
    assert event["outcome"] == "stored"
    assert executed == [
        ("digest", "base_digest", executed[0][2], "<f8", [4]),
        ("output", "x", "sha256:" + event["outputs"]["x"], "<f8", [4]),
        ("output", "y", "sha256:" + event["outputs"]["y"], "<i4", [4]),
    ]
    assert executed[1][2] == _npy_digest(x)
    pytester.runpytest("--rtgov").assert_outcomes(passed=1)
    event, hit = _stage_cps(read_latest(pytester.path))
    assert event["outcome"] == "hit"
    # the hit's digest comes from the metrics its entry sealed: no dtype or shape
    assert hit == [("digest", "base_digest", executed[0][2], None, None), *executed[1:]]


def test_stage_cache_off_runs_every_body_and_stores_nothing(pytester, read_latest):
    pytester.makepyfile(test_stages=STAGES)
    pytester.runpytest("--rtgov").assert_outcomes(passed=1)
    _, stored = _stage_cps(read_latest(pytester.path))
    entries = sorted(p for p in (pytester.path / ".rtgov" / "stages").rglob("*") if p.is_file())
    pytester.runpytest("--rtgov", "--rtgov-stage-cache", "off").assert_outcomes(passed=1)
    event, off = _stage_cps(read_latest(pytester.path))
    assert (event["outcome"], event["reason"]) == ("miss", "stage cache off")
    assert off == stored  # the body ran: its digest checkpoint, then its outputs
    after = sorted(p for p in (pytester.path / ".rtgov" / "stages").rglob("*") if p.is_file())
    assert after == entries


def test_n2_and_n0_records_carry_the_same_checkpoints(pytester, read_latest):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_suite=SUITE)

    def entries():
        rec = read_latest(pytester.path)
        tests = [(t["nodeid"], _cps(t.get("checkpoints", ()))) for t in rec["tests"]]
        fixtures = {
            (f["nodeid"], f["name"], repr(_cps(s.get("checkpoints", ()))))
            for f in rec["fixtures"]
            for s in f["setups"]
        }
        return tests, fixtures

    pytester.runpytest_subprocess("--rtgov", "-n", "0").assert_outcomes(passed=6)
    serial = entries()
    pytester.runpytest_subprocess("--rtgov", "-n", "2").assert_outcomes(passed=6)
    assert entries() == serial  # only seq and worker may differ
    assert any(cps for _, cps in serial[0])


def test_a_rerun_test_keeps_its_final_attempts_checkpoints_as_its_metrics(
    pytester, read_latest
):
    pytest.importorskip("pytest_rerunfailures")
    pytester.makepyfile(
        """
        import numpy as np
        import pytest

        ATTEMPTS = [0]

        @pytest.mark.flaky(reruns=1)
        def test_flaky(rtgov):
            ATTEMPTS[0] += 1
            rtgov.checkpoint("attempt", np.array([ATTEMPTS[0]]))
            rtgov.record("attempt", ATTEMPTS[0])
            assert ATTEMPTS[0] == 2
        """
    )
    assert pytester.runpytest("--rtgov").parseoutcomes() == {"passed": 1, "rerun": 1}
    import numpy as np

    (test,) = read_latest(pytester.path)["tests"]
    assert [m["value"] for m in test["metrics"]] == [2.0]
    assert [c["sha256"] for c in test["checkpoints"]] == [_npy_digest(np.array([2]))]


CUPY_SCATTER = """
import cupy
import cupyx

def test_atomic_scatter_add(rtgov):
    # float32 atomics into one bin, magnitudes 1e-6..1e6: the sum's bits depend on the
    # order the GPU's atomics landed in
    rng = cupy.random.default_rng(0)
    values = (rng.standard_normal(1 << 20, dtype=cupy.float32)
              * 10.0 ** rng.integers(-6, 7, size=1 << 20)).astype(cupy.float32)
    out = cupy.zeros(4, dtype=cupy.float32)
    cupyx.scatter_add(out, cupy.zeros(1 << 20, dtype=cupy.int64) + (cupy.arange(1 << 20) % 4),
                      values)
    rtgov.checkpoint("sums", out)
"""


def test_gpu_the_determinism_check_flags_a_nondeterministic_cupy_kernel(pytester):
    cupy = pytest.importorskip("cupy")
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception:  # cupy without a GPU
        pytest.skip("no GPU")
    pytester.makepyfile(test_gpu=CUPY_SCATTER)
    result = pytester.runpytest_subprocess("--rtgov", "--rtgov-determinism-check")
    assert result.ret == 6
    result.stdout.fnmatch_lines(["*test_atomic_scatter_add: test checkpoint 'sums' occurrence 0*"])
