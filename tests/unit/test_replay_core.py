"""The pure replay comparison (core/replay.py) and the arithmetic of its tolerance rules
(core/replay_rules.py): ULP distance as numpy defines it, causal order, the first
divergence and what is downstream of it, environment drift and the outcome."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pytest_rtgov.core.array_checkpoints import ArrayCheckpoint, npy_digest
from pytest_rtgov.core.canonical import canonical_json
from pytest_rtgov.core.constants import ExitCode
from pytest_rtgov.core.records import FixtureEntry, FixtureSetup, RunRecord, Sample, TestEntry
from pytest_rtgov.core.replay import (
    ReplayOutcome,
    checkpoint_refs,
    compare,
    decide,
    environment_drift,
)
from pytest_rtgov.core.replay_rules import ReplayRule, ulp_distance, unused_rules
from pytest_rtgov.store.stage_cache import array_bytes

FLOATS = [np.float16, np.float32, np.float64]


# ULP distance ---------------------------------------------------------------------------


def _numpy_nulp(a, b):
    """numpy's own distances, through its public assert (it returns them)."""
    with np.errstate(all="ignore"):
        return np.asarray(np.testing.assert_array_max_ulp(a, b, maxulp=np.inf)).reshape(a.shape)


@st.composite
def _float_pairs(draw):
    dtype = np.dtype(draw(st.sampled_from(FLOATS)))
    shape = draw(hnp.array_shapes(max_dims=2, max_side=6))
    a = draw(hnp.arrays(dtype, shape))
    b = draw(hnp.arrays(dtype, shape))
    return a, b


@settings(max_examples=300, deadline=None)
@given(_float_pairs())
def test_ulp_distance_is_numpys_wherever_numpy_computes_it_exactly(pair):
    """numpy subtracts the integers in the array's signed type and converts the result to
    the float type: exact while the distance fits both, which is where it must agree."""
    a, b = pair
    ours = ulp_distance(a, b)
    theirs = _numpy_nulp(a, b)
    exact = ours < (1 << (np.finfo(a.dtype).nmant + 1))
    assert np.array_equal(ours[exact].astype(np.float64), theirs[exact].astype(np.float64))
    for i in zip(*np.nonzero(exact), strict=True):
        assert_max = int(ours[i])
        np.testing.assert_array_max_ulp(a[i], b[i], maxulp=assert_max)
        if assert_max:
            with pytest.raises(AssertionError):
                np.testing.assert_array_max_ulp(a[i], b[i], maxulp=assert_max - 1)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(FLOATS),
    st.floats(allow_nan=False, allow_infinity=False, width=16),
    st.integers(min_value=0, max_value=40),
    st.sampled_from([-1, 1]),
)
def test_k_steps_of_nextafter_are_k_ulp(dtype, start, steps, direction):
    x = np.array([start], dtype=dtype)
    y = x.copy()
    toward = np.array([np.inf * direction], dtype=dtype)
    for _ in range(steps):
        y = np.nextafter(y, toward)
    if not np.isfinite(y).all():
        return
    assert int(ulp_distance(x, y)[0]) == int(_numpy_nulp(x, y)[0]) == steps


def test_ulp_edge_values():
    f8 = np.float64
    a = np.array([0.0, np.nan, np.inf, 1.0, -1.0], dtype=f8)
    b = np.array([-0.0, -np.nan, np.inf, np.nextafter(1.0, 0.0), np.nextafter(1.0, 0.0)], f8)
    assert ulp_distance(a, b).tolist() == [0, 0, 0, 1, 2 * 0x3FF0000000000000 - 1]
    big = np.array([np.finfo(f8).max]), np.array([-np.finfo(f8).max])
    assert int(ulp_distance(*big)[0]) == 2 * 0x7FEFFFFFFFFFFFFF  # exact, no wrap-around
    ints = np.array([-(2**63)], np.int64), np.array([2**63 - 1], np.int64)
    assert int(ulp_distance(*ints)[0]) == 2**64 - 1
    assert ulp_distance(np.array(["a"]), np.array(["b"])) is None
    swapped = np.array([1.0, 2.0], dtype=">f4")
    assert ulp_distance(swapped, np.nextafter(swapped, np.float32(3))).tolist() == [1, 1]


# records --------------------------------------------------------------------------------

SAMPLE = Sample(wall_ns=1, cpu_ns=1)


def cp(name: str, seq: int, array, *, kept: bool = True, kind: str = "array") -> ArrayCheckpoint:
    array = np.asarray(array)
    return ArrayCheckpoint(
        name=name,
        seq=seq,
        kind=kind,
        sha256=npy_digest(array_bytes(array)),
        dtype=array.dtype.str,
        shape=tuple(array.shape),
        kept=kept,
    )


def entry(nodeid, checkpoints=(), *, worker="main", markers=()):
    return TestEntry(
        nodeid=nodeid,
        outcome="passed",
        worker=worker,
        checkpoints=tuple(checkpoints),
        markers=tuple(markers),
    )


def record(tests=(), fixtures=(), environment=None) -> RunRecord:
    return RunRecord(
        run_id="r",
        started_at="2026-01-01T00:00:00Z",
        ended_at="2026-01-01T00:00:01Z",
        mode="record",
        pytest_args=(),
        memory_mode="off",
        backend="numpy",
        workers=("main",),
        environment=environment or {},
        tests=tuple(tests),
        fixtures=tuple(fixtures),
    )


class Arrays:
    """A ``load`` for compare(): the kept arrays by digest."""

    def __init__(self, *arrays):
        self.by_digest = {}
        for array in arrays:
            self.add(array)

    def add(self, array):
        array = np.asarray(array)
        self.by_digest[npy_digest(array_bytes(array))] = array

    def __call__(self, ref):
        if not ref.checkpoint.kept:
            return None
        return self.by_digest.get(ref.checkpoint.sha256)


def ulps(array, k, at):
    """``array`` with element ``at`` moved ``k`` ULP up."""
    out = np.array(array, copy=True)
    for _ in range(k):
        out[at] = np.nextafter(out[at], np.inf)
    return out


BASE = np.linspace(0.1, 2.0, 12, dtype=np.float32).reshape(3, 4)
RULE = ReplayRule(checkpoint="logits", max_ulp=2, place="replay[0]", name="logits-ulp")


def _one(array, *, rules=()):
    rec = record([entry("t.py::test_a", [cp("logits", 0, BASE)])])
    rep = record([entry("t.py::test_a", [cp("logits", 0, array)])])
    return compare(rec, rep, load=Arrays(BASE, array), rules=rules)


def test_identical_and_bitwise():
    comparison = _one(BASE.copy())
    assert comparison.counts()["identical"] == 1
    assert comparison.first_divergence is None
    assert decide(comparison, [], False).outcome is ReplayOutcome.IDENTICAL


def test_one_ulp_is_within_max_ulp_2_and_three_ulp_diverge_naming_the_index():
    within = _one(ulps(BASE, 1, (1, 2)), rules=[RULE])
    assert [r.status for r in within.results] == ["within_tolerance"]
    assert decide(within, [], False).outcome is ReplayOutcome.WITHIN_TOLERANCE
    assert ReplayOutcome.WITHIN_TOLERANCE.exit_code == ExitCode.OK

    beyond = _one(ulps(ulps(BASE, 3, (1, 2)), 1, (2, 3)), rules=[RULE])
    first = beyond.first_divergence
    assert first is not None and first.status == "diverged"
    assert first.rule == "logits-ulp"
    diff = first.diff
    assert (diff.index, diff.position, diff.ulp, diff.max_ulp) == (6, (1, 2), 3, 3)
    assert diff.mismatches == 1  # the 1-ULP change at (2, 3) is inside the tolerance
    assert diff.expected == str(BASE[1, 2]) and diff.actual != diff.expected
    assert decide(beyond, [], False).outcome is ReplayOutcome.DIVERGED
    assert ReplayOutcome.DIVERGED.exit_code == ExitCode.GATE_BREACHED

    # without a rule, 1 ULP diverges too, and every changed element counts
    bare = _one(ulps(ulps(BASE, 1, (0, 1)), 1, (2, 0)))
    d = bare.first_divergence.diff
    assert (d.index, d.position, d.ulp, d.mismatches) == (1, (0, 1), 1, 2)


def test_rtol_atol_rules():
    changed = BASE * np.float32(1.0000005)
    loose = ReplayRule(checkpoint="log*", rtol=1e-5, atol=0.0, place="replay[0]")
    tight = ReplayRule(checkpoint="log*", rtol=0.0, atol=1e-9, place="replay[0]")
    assert _one(changed, rules=[loose]).results[0].status == "within_tolerance"
    assert _one(changed, rules=[tight]).results[0].status == "diverged"


def test_dtype_and_shape_changes_are_divergences_saying_so():
    dtype = _one(BASE.astype(np.float64)).first_divergence
    assert dtype.reason == "dtype <f4 -> <f8" and dtype.diff is None
    shape = _one(BASE.reshape(4, 3), rules=[RULE]).first_divergence
    assert shape.reason == "shape [3, 4] -> [4, 3]"


def test_without_kept_arrays_digests_only():
    rec = record([entry("t.py::test_a", [cp("logits", 0, BASE, kept=False)])])
    rep = record([entry("t.py::test_a", [cp("logits", 0, ulps(BASE, 1, 0))])])
    first = compare(rec, rep, load=Arrays(BASE), rules=[RULE]).first_divergence
    assert first.diff is None and "kept: no" in first.reason
    assert "cannot be checked" in first.reason
    assert first.to_dict()["kept"] is False


def _chain(*arrays_by_test):
    """Tests t0..tn, each with ``h`` then ``out``; ``arrays_by_test[i]`` are its arrays."""
    return [
        entry(f"t.py::test_{i}", [cp("h", 2 * i, h), cp("out", 2 * i + 1, o)])
        for i, (h, o) in enumerate(arrays_by_test)
    ]


def test_first_divergence_is_first_in_causal_order_and_the_rest_downstream():
    a, b = np.arange(4.0), np.arange(4.0) + 1
    changed = ulps(a, 1, 3)
    rec = record(_chain((a, b), (a, b), (a, b)))
    rep = record(_chain((a, b), (changed, b), (changed, changed)))
    comparison = compare(rec, rep, load=Arrays(a, b, changed))
    first = comparison.first_divergence
    assert (first.ref.owner, first.ref.name) == ("t.py::test_1", "h")
    assert first.diff.index == 3 and first.diff.ulp == 1
    assert [(r.ref.owner, r.ref.name) for r in comparison.downstream] == [
        ("t.py::test_2", "h"),
        ("t.py::test_2", "out"),
    ]
    assert comparison.counts() == {
        "identical": 3, "within_tolerance": 0, "diverged": 3, "new": 0, "not_reproduced": 0
    }


def test_not_reproduced_is_a_divergence_in_place_and_new_is_not():
    a = np.arange(3.0)
    rec = record(
        [entry("t.py::test_a", [cp("x", 0, a), cp("y", 1, a)]),
         entry("t.py::test_b", [cp("z", 2, a)]),
         entry("t.py::test_c", [cp("w", 3, a)])]
    )
    # test_a stopped after x; test_b produced an extra checkpoint; test_c was not replayed
    rep = record(
        [entry("t.py::test_a", [cp("x", 0, a)]),
         entry("t.py::test_b", [cp("z", 1, a), cp("extra", 2, a)])]
    )
    comparison = compare(rec, rep, load=Arrays(a))
    statuses = [(r.ref.owner, r.ref.name, r.status) for r in comparison.results]
    assert statuses == [
        ("t.py::test_a", "x", "identical"),
        ("t.py::test_a", "y", "not_reproduced"),
        ("t.py::test_b", "z", "identical"),
        ("t.py::test_b", "extra", "new"),
    ]
    assert comparison.first_divergence.ref.name == "y"
    assert decide(comparison, [], False).outcome is ReplayOutcome.DIVERGED
    # given checkpoints alone, the same walk
    as_refs = compare(checkpoint_refs(rec), checkpoint_refs(rep), load=Arrays(a))
    assert as_refs == comparison


def test_a_replayed_test_that_stopped_before_its_first_checkpoint():
    a = np.arange(3.0)
    rec = record([entry("t.py::test_a", [cp("x", 0, a)])])
    rep = record([entry("t.py::test_a")])
    first = compare(rec, rep, load=Arrays(a)).first_divergence
    assert (first.ref.name, first.status) == ("x", "not_reproduced")
    # only the record says the test ran: its checkpoints alone cannot
    assert compare(checkpoint_refs(rec), [], load=Arrays(a)).results == ()


def test_refs_owners_occurrences_and_first_worker_of_a_session_fixture():
    a = np.zeros(2)

    def setup(worker, checkpoints, stage=None):
        return FixtureSetup(
            worker=worker, requested_by="t", outcome="passed", sample=SAMPLE,
            checkpoints=tuple(checkpoints), stage=stage,
        )

    data = FixtureEntry(
        nodeid="", name="data", scope="session",
        setups=(setup("gw0", [cp("x", 0, a)]), setup("gw1", [cp("x", 0, a)])),
    )
    model = FixtureEntry(
        nodeid="t.py", name="model", scope="module", param_index=1,
        setups=(setup("gw1", [cp("w", 1, a), cp("w", 3, a)], stage={"stage": "model"}),),
    )
    tests = [entry("t.py::test_a", [cp("w", 2, a)], worker="gw1", markers=("slow",))]
    refs = checkpoint_refs(record(tests, [data, model]))
    assert [(r.worker, r.role, r.owner, r.name, r.occurrence) for r in refs] == [
        ("gw0", "fixture", "data", "x", 0),
        ("gw1", "stage", "t.py::model[1]", "w", 0),
        ("gw1", "test", "t.py::test_a", "w", 0),
        ("gw1", "stage", "t.py::model[1]", "w", 1),
    ]
    # rule selection: selectors as the gates use them
    by_marker = ReplayRule(checkpoint="w", markers=("slow",), max_ulp=0, place="replay[0]")
    by_fixture = ReplayRule(checkpoint="*", fixtures=("mod*",), max_ulp=0, place="replay[1]")
    typo = ReplayRule(checkpoint="logitz", max_ulp=0, place="replay[2]")
    everywhere = ReplayRule(checkpoint="x", atol=1.0, rtol=0.0, place="replay[3]")
    assert unused_rules([by_marker, by_fixture, typo, everywhere], refs) == [typo]


def test_environment_drift_fields():
    recorded = {"env.OPENBLAS_NUM_THREADS": "1", "numpy": "2.0", "pytest_rtgov": "1.0",
                "pytest": "8", "env.CUPY_TF32": "1", "cuda_driver": "12.4"}
    replay = {"env.OPENBLAS_NUM_THREADS": "4", "numpy": "2.0", "pytest_rtgov": "1.1",
              "pytest": "9", "cuda_driver": "12.4", "env.CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    assert environment_drift(recorded, replay) == [
        ("env.OPENBLAS_NUM_THREADS", "1", "4"),
        ("env.CUBLAS_WORKSPACE_CONFIG", "", ":4096:8"),
        ("env.CUPY_TF32", "1", ""),
    ]
    assert environment_drift(recorded, recorded) == []


def test_drift_is_not_comparable_unless_allowed_then_candidate_causes():
    drift = [("env.OPENBLAS_NUM_THREADS", "1", "4")]
    diverged = _one(ulps(BASE, 1, 0))
    refused = decide(None, drift, allow_env_drift=False)
    assert refused.outcome is ReplayOutcome.NOT_COMPARABLE
    assert refused.exit_code == ExitCode.INCOMPARABLE
    assert "env.OPENBLAS_NUM_THREADS: '1' vs '4'" in refused.reason
    allowed = decide(diverged, drift, allow_env_drift=True).to_dict()
    assert allowed["outcome"] == "diverged" and allowed["exit_code"] == 6
    assert allowed["first_divergence"]["candidate_causes"] == ["env.OPENBLAS_NUM_THREADS"]
    assert ReplayOutcome.REFUSED.exit_code == ExitCode.REFUSED


def test_to_dict_is_canonical_json_ready_and_stable():
    a, b = np.array([1.0, np.nan, -0.0]), np.array([1.0, np.inf, 0.0])
    rec = record([entry("t.py::test_é", [cp("x", 0, a), cp("y", 1, a)])])
    rep = record([entry("t.py::test_é", [cp("x", 0, b), cp("y", 1, b)])])
    result = decide(compare(rec, rep, load=Arrays(a, b)), [], allow_env_drift=False)
    data = result.to_dict()
    encoded = canonical_json(data)  # no NaN, no numpy scalars
    assert json.loads(encoded) == data
    assert canonical_json(result.to_dict()) == encoded
    first = data["first_divergence"]
    assert first["expected"] == "nan" and first["actual"] == "inf"
    assert first["mismatches"] == 2  # -0.0 and 0.0 differ bit for bit
    assert [d["checkpoint"] for d in data["downstream"]] == ["y"]
    assert sorted(data) == [
        "allow_env_drift", "counts", "downstream", "drift", "exit_code",
        "first_divergence", "outcome", "reason",
    ]


@settings(max_examples=60, deadline=None)
@given(
    chunk=st.integers(min_value=1, max_value=9),
    changed=st.sets(st.integers(min_value=0, max_value=47), max_size=12),
    ulps=st.integers(min_value=1, max_value=4),
)
def test_the_chunked_walk_finds_what_one_pass_finds(chunk, changed, ulps):
    """However the arrays are cut into chunks, the first mismatch, the count and the
    largest distance are those of the whole arrays."""
    import pytest_rtgov.core.replay as replay

    expected = np.linspace(-3, 3, 48, dtype=np.float32).reshape(6, 8)
    actual = expected.copy()
    flat = actual.reshape(-1)
    for index in changed:
        for _ in range(ulps):
            flat[index] = np.nextafter(flat[index], np.float32(np.inf))
    old = replay.CHUNK
    replay.CHUNK = chunk
    try:
        diff, _ = replay._array_diff(expected, actual, None)
    finally:
        replay.CHUNK = old
    assert diff.mismatches == len(changed)
    if changed:
        first = min(changed)
        assert diff.index == first and diff.position == (first // 8, first % 8)
        assert diff.ulp == ulps and diff.max_ulp == ulps
    else:
        assert diff.index is None and diff.max_ulp == 0
