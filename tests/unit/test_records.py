"""Run records: round trips, validation with places, canonical order."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_rtgov.core.canonical import canonical_json
from pytest_rtgov.core.records import (
    FixtureEntry,
    FixtureSetup,
    Metric,
    RunRecord,
    Sample,
    TestEntry,
)
from pytest_rtgov.core.run_order import canonical_run
from pytest_rtgov.errors import RecordFormatError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"

ints = st.integers(min_value=0, max_value=2**53)
names = st.from_regex(r"[a-z_][a-z0-9_.]{0,10}", fullmatch=True)
samples = st.builds(
    Sample,
    wall_ns=ints,
    cpu_ns=ints,
    peak_memory_bytes=st.none() | ints,
    gpu_time_ns=st.none() | ints,
    gpu_memory_bytes=st.none() | ints,
    warmup=st.booleans(),
    completed=st.booleans(),
    evidence=st.none() | st.text(max_size=20),
    variant=st.sampled_from(["current", "baseline"]),
    block=st.integers(0, 3),
)
metrics = st.builds(
    Metric,
    name=names,
    value=st.floats(allow_nan=False, allow_infinity=False) | st.text(min_size=1, max_size=8),
    unit=st.text(max_size=5),
    higher_is_better=st.none() | st.booleans(),
)
tests = st.builds(
    TestEntry,
    nodeid=st.text(min_size=1, max_size=30),
    outcome=st.sampled_from(["passed", "failed", "skipped", "error"]),
    worker=st.sampled_from(["main", "gw0", "gw1"]),
    rounds=st.integers(1, 9),
    warmup=st.integers(0, 3),
    samples=st.lists(samples, max_size=3).map(tuple),
    metrics=st.lists(metrics, max_size=3).map(tuple),
)
setups = st.builds(
    FixtureSetup,
    worker=st.sampled_from(["main", "gw0", "gw1"]),
    requested_by=st.text(max_size=20),
    outcome=st.sampled_from(["passed", "error"]),
    sample=samples,
    metrics=st.lists(metrics, max_size=2).map(tuple),
)
fixture_entries = st.builds(
    FixtureEntry,
    nodeid=st.text(max_size=20),
    name=names,
    scope=st.sampled_from(["session", "module", "function"]),
    param_index=st.none() | st.integers(0, 3),
    setups=st.lists(setups, min_size=1, max_size=3).map(tuple),
)
records = st.builds(
    RunRecord,
    run_id=st.just("20261122T101010Z-abcdef"),
    started_at=st.just("2026-11-22T10:10:10.000Z"),
    ended_at=st.just("2026-11-22T10:10:11.000Z"),
    mode=st.sampled_from(["record", "gate"]),
    pytest_args=st.lists(st.text(max_size=10), max_size=3).map(tuple),
    memory_mode=st.sampled_from(["tracemalloc", "off"]),
    backend=st.just("numpy"),
    workers=st.lists(st.sampled_from(["main", "gw0"]), max_size=2).map(tuple),
    environment=st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
    tests=st.lists(tests, max_size=4).map(tuple),
    fixtures=st.lists(fixture_entries, max_size=3).map(tuple),
    exit_status=st.integers(0, 5),
)


@given(records)
def test_run_record_round_trips_through_json(record):
    data = json.loads(canonical_json(record.to_dict()))
    frozen = copy.deepcopy(data)
    assert RunRecord.from_dict(data) == record
    assert data == frozen  # from_dict never mutates its input


@given(records, st.integers(1, 3))
def test_record_canonical_json_is_canonical_json_of_its_dict(record, chunk):
    # The record is written a chunk of tests at a time: the bytes must not change.
    assert record.canonical_json(chunk=chunk) == canonical_json(record.to_dict())


@given(records)
def test_every_ledger_leaf_of_a_record_is_canonical_json(record):
    """run_leaves builds test leaves without sorting (their dicts come sorted): the
    bytes must still be exactly canonical JSON."""
    from pytest_rtgov.core.ledger_records import run_leaves

    for leaf in run_leaves(record):
        assert leaf == canonical_json(json.loads(leaf))
    assert [json.loads(leaf)["kind"] for leaf in run_leaves(record)].count("test") == len(
        record.tests
    )


@given(st.lists(tests, max_size=6, unique_by=lambda t: t.nodeid), st.randoms())
def test_canonical_order_does_not_depend_on_arrival_order(entries, rnd):
    shuffled = list(entries)
    rnd.shuffle(shuffled)
    assert canonical_run(tests=entries, fixture_setups=[]) == canonical_run(
        tests=shuffled, fixture_setups=[]
    )


@given(st.lists(st.tuples(fixture_entries, setups), max_size=8), st.randoms())
def test_fixture_setups_group_and_sort_whatever_the_order(pairs, rnd):
    shuffled = list(pairs)
    rnd.shuffle(shuffled)
    _, first = canonical_run(tests=[], fixture_setups=pairs)
    _, second = canonical_run(tests=[], fixture_setups=shuffled)
    key = lambda f: (f.key, [(s.worker, s.requested_by) for s in f.setups])  # noqa: E731
    assert [key(f) for f in first] == [key(f) for f in second]
    assert [f.key for f in first] == sorted(f.key for f in first)


def test_metrics_sort_by_name_and_keep_order_within_a_name():
    entry = TestEntry(
        nodeid="t",
        outcome="passed",
        worker="main",
        metrics=(Metric("b", 1.0), Metric("a", 2.0), Metric("b", 0.5)),
    )
    (ordered,), _ = canonical_run(tests=[entry], fixture_setups=[])
    assert [(m.name, m.value) for m in ordered.metrics] == [("a", 2.0), ("b", 1.0), ("b", 0.5)]


def test_committed_example_record_parses():
    path = FIXTURES / "records" / "run-v1.json"
    record = RunRecord.from_dict(json.loads(path.read_text()), source=str(path))
    assert record.tests and record.fixtures
    assert json.loads(path.read_text()) == record.to_dict()


@pytest.mark.parametrize(
    ("mutate", "place", "expected"),
    [
        (lambda d: d.pop("run_id"), "$.run_id", "a string"),
        (lambda d: d.update(schema="rtgov.run/9"), "$.schema", "'rtgov.run/1'"),
        (lambda d: d["tests"][0].update(outcome="ok"), "$.tests[0].outcome", "one of"),
        (
            lambda d: d["tests"][0]["samples"][0].update(wall_ns=-1),
            "$.tests[0].samples[0].wall_ns",
            "an integer >= 0",
        ),
        (
            lambda d: d["tests"][1]["metrics"][0].update(value=True),
            "$.tests[1].metrics[0].value",
            "a finite number",
        ),
        (
            lambda d: d["fixtures"][0]["setups"][0]["sample"].update(completed="yes"),
            "$.fixtures[0].setups[0].sample.completed",
            "true or false",
        ),
        (lambda d: d.update(pytest_args=[1]), "$.pytest_args", "a list of strings"),
    ],
)
def test_invalid_records_name_the_file_place_and_expectation(mutate, place, expected):
    data = json.loads((FIXTURES / "records" / "run-v1.json").read_text())
    mutate(data)
    with pytest.raises(RecordFormatError) as info:
        RunRecord.from_dict(data, source="run.json")
    assert info.value.source == "run.json"
    assert info.value.place == place
    assert expected in info.value.expected
    assert str(info.value).startswith(f"run.json: at {place}: expected ")


def test_canonical_json_refuses_nan():
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})
    assert canonical_json({"b": [1, 2.5], "a": "é"}) == '{"a":"é","b":[1,2.5]}'.encode()


def _run_v1():
    return json.loads((FIXTURES / "records" / "run-v1.json").read_text())


@pytest.mark.parametrize(
    ("mutate", "place", "expected"),
    [
        # keys a file must hold though the classes give Python callers a default
        (lambda d: d.pop("schema"), "$.schema", "'rtgov.run/1' (got '<missing>')"),
        (lambda d: d.pop("exit_status"), "$.exit_status", "an integer >= 0 (got '<missing>')"),
        (lambda d: d["tests"][0].pop("samples"), "$.tests[0].samples", "a list"),
        (lambda d: d["tests"][0].pop("rounds"), "$.tests[0].rounds", "an integer >= 1"),
        (
            lambda d: d["tests"][0]["samples"][1].pop("warmup"),
            "$.tests[0].samples[1].warmup",
            "true or false (got '<missing>')",
        ),
        (
            lambda d: d["fixtures"][0]["setups"][0]["metrics"][0].pop("unit"),
            "$.fixtures[0].setups[0].metrics[0].unit",
            "a string",
        ),
        (lambda d: d["fixtures"][0].pop("setups"), "$.fixtures[0].setups", "a list"),
        # a choice is exact: no trailing newline
        (lambda d: d["tests"][0].update(outcome="passed\n"), "$.tests[0].outcome", "one of"),
        (
            lambda d: d["tests"][1]["metrics"][0].update(value=float("nan")),
            "$.tests[1].metrics[0].value",
            "a finite number",
        ),
        (lambda d: d["environment"].update(cpu_count=2), "$.environment", "an object of strings"),
        (lambda d: d["tests"].append(3), "$.tests[2]", "an object (got 3)"),
        (lambda d: d.update(verdict=[]), "$.verdict", "an object"),
        (
            lambda d: d["tests"][0]["samples"][0].update(peak_memory_bytes="1"),
            "$.tests[0].samples[0].peak_memory_bytes",
            "an integer >= 0 or null (got '1')",
        ),
    ],
)
def test_record_schema_places(mutate, place, expected):
    data = _run_v1()
    assert len(data["tests"]) == 2
    mutate(data)
    with pytest.raises(RecordFormatError) as info:
        RunRecord.from_dict(data, source="run.json")
    assert info.value.place == place
    assert expected in info.value.expected


def test_optional_keys_may_be_absent_and_unknown_keys_are_ignored():
    data = _run_v1()
    sample = data["tests"][0]["samples"][0]
    for key in ("variant", "block", "evidence", "gpu_time_ns"):
        sample.pop(key)
    data["tests"][0].pop("markers", None)
    data["tests"][1]["metrics"][0].pop("higher_is_better")
    data.pop("verdict")
    data["future_key"] = 1
    record = RunRecord.from_dict(data)
    assert record.tests[0].samples[0].variant == "current" and record.verdict == {}


def test_integer_metric_values_read_as_floats():
    data = _run_v1()
    data["tests"][1]["metrics"][0]["value"] = 3
    value = RunRecord.from_dict(data).tests[1].metrics[0].value
    assert value == 3.0 and isinstance(value, float)
