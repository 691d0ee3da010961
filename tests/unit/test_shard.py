"""Sharding: the split, the merge of shard records, and gating after the merge."""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_rtgov.cli import merge as cli_merge
from pytest_rtgov.cli.options import apply_project_config
from pytest_rtgov.core.constants import EXIT_GATE_BREACHED, ExitCode
from pytest_rtgov.core.records import (
    FixtureEntry,
    FixtureSetup,
    Metric,
    RunRecord,
    Sample,
    TestEntry,
)
from pytest_rtgov.core.shard import (
    ShardMergeError,
    in_shard,
    merge_records,
    merged_exit_status,
    parse_shard,
    shard_of,
    strip_shard_option,
)
from pytest_rtgov.errors import InvalidOptionError, RtgovError

SHARD_PLUGIN = ("-p", "pytest_rtgov.plugin.shard")

# -- the split ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1/1", (1, 1)), ("2/4", (2, 4)), (" 3 / 3 ", (3, 3)), ("07/10", (7, 10))],
)
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "a/b", "1", "1/2/3", "", "-1/2", "1.0/2"])
def test_parse_shard_refuses_with_the_accepted_form(text):
    with pytest.raises(InvalidOptionError) as info:
        parse_shard(text)
    message = str(info.value)
    assert "--rtgov-shard" in message
    assert "I/N" in message
    assert repr(text) in message
    assert isinstance(info.value, RtgovError)


def test_in_shard_checks_its_preconditions():
    with pytest.raises(InvalidOptionError):
        in_shard("t.py::x", 0, 2)
    with pytest.raises(InvalidOptionError):
        in_shard("t.py::x", 3, 2)


@given(
    nodeids=st.lists(st.text(min_size=1, max_size=40), max_size=40, unique=True),
    count=st.integers(min_value=1, max_value=9),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_shards_are_disjoint_cover_everything_and_ignore_order(nodeids, count, seed):
    shards = [[n for n in nodeids if in_shard(n, i, count)] for i in range(1, count + 1)]
    assert sorted(n for shard in shards for n in shard) == sorted(nodeids)  # disjoint, covering
    shuffled = list(nodeids)
    random.Random(seed).shuffle(shuffled)
    for index, shard in enumerate(shards, start=1):
        assert {n for n in shuffled if in_shard(n, index, count)} == set(shard)


def test_split_is_a_fixed_function_of_the_node_id():
    # Golden values: a change of hashing would silently reshuffle every CI's shards.
    ids = [f"tests/test_m.py::test_{i}" for i in range(8)]
    assert [next(i for i in range(1, 4) if in_shard(n, i, 3)) for n in ids] == [
        _golden(n) for n in ids
    ]


def _golden(nodeid: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(nodeid.encode()).digest()[:8], "big") % 3 + 1


def test_shard_option_is_read_back_and_stripped_in_both_spellings():
    args = ["-n", "2", "--rtgov", "--rtgov-shard", "2/3", "tests"]
    assert shard_of(args) == (2, 3)
    assert shard_of(["--rtgov-shard=1/3", "-x"]) == (1, 3)
    assert shard_of(["--rtgov"]) is None
    assert strip_shard_option(args) == ("-n", "2", "--rtgov", "tests")
    assert strip_shard_option(["--rtgov-shard=1/3", "-x"]) == ("-x",)


@pytest.mark.parametrize(
    ("statuses", "merged"),
    [([0, 0], 0), ([0, 1], 1), ([5, 0], 0), ([5, 5], 5), ([2, 1], 1), ([0, 2], 2), ([6, 0], 0)],
)
def test_merged_exit_status(statuses, merged):
    assert merged_exit_status(statuses) == merged


# -- merging records (built by hand) ----------------------------------------------------

ENV = {"cpu_model": "X", "cpu_count": "4", "python": "3.11.9", "git.commit": "abc"}


def _record(
    run_id: str,
    tests: list[str],
    *,
    shard: str | None = None,
    env: dict[str, str] | None = None,
    workers: tuple[str, ...] = ("gw0",),
    **changes: Any,
) -> RunRecord:
    worker = workers[0]
    args = ["-n", str(len(workers)), "--rtgov"] + (["--rtgov-shard", shard] if shard else [])
    base = RunRecord(
        run_id=run_id,
        started_at=f"2024-01-01T00:00:0{run_id[-1]}.000Z",
        ended_at=f"2024-01-01T00:01:0{run_id[-1]}.000Z",
        mode="record",
        pytest_args=tuple(args),
        memory_mode="tracemalloc",
        backend="numpy",
        workers=workers,
        environment=env or ENV,
        tests=tuple(
            TestEntry(
                nodeid=n,
                outcome="passed",
                worker=worker,
                samples=(Sample(wall_ns=10, cpu_ns=5),),
                metrics=(Metric("acc", 0.9, higher_is_better=True),),
            )
            for n in sorted(tests)
        ),
        fixtures=(
            FixtureEntry(
                nodeid="",
                name="model",
                scope="session",
                setups=(
                    FixtureSetup(
                        worker=worker,
                        requested_by=sorted(tests)[0],
                        outcome="passed",
                        sample=Sample(wall_ns=7, cpu_ns=3),
                    ),
                ),
            ),
        )
        if tests
        else (),
        calibration={"kernel": "k1", "workers": {worker: 100}},
        gate_results=({"gate": "g", "status": "pass"},),
        verdict={"status": "passed"},
    )
    return _replace(base, **changes)


def _replace(record: RunRecord, **changes: Any) -> RunRecord:
    import dataclasses

    return dataclasses.replace(record, **changes)


def test_merge_unions_renames_workers_and_clears_the_verdict():
    one = _record("20240101T000000Z-aaaaa1", ["t.py::a", "t.py::c"], shard="1/2")
    two = _record("20240101T000000Z-bbbbb2", ["t.py::b"], shard="2/2", exit_status=1)
    merged = merge_records([two, one], run_id="20240102T000000Z-cccccc")
    assert merged.run_id == "20240102T000000Z-cccccc"
    assert [t.nodeid for t in merged.tests] == ["t.py::a", "t.py::b", "t.py::c"]
    assert merged.workers == ("20240101T000000Z-aaaaa1/gw0", "20240101T000000Z-bbbbb2/gw0")
    assert {t.nodeid: t.worker for t in merged.tests}["t.py::b"] == "20240101T000000Z-bbbbb2/gw0"
    (model,) = merged.fixtures
    assert [s.worker for s in model.setups] == list(merged.workers)  # one setup per process
    assert merged.calibration == {"kernel": "k1", "workers": dict.fromkeys(merged.workers, 100)}
    assert merged.pytest_args == ("-n", "1", "--rtgov")  # the first shard's, unsharded
    assert (merged.started_at, merged.ended_at) == (one.started_at, two.ended_at)
    assert merged.exit_status == 1
    assert merged.gate_results == () and merged.verdict == {} and merged.mode == "record"
    assert RunRecord.from_dict(json.loads(json.dumps(merged.to_dict()))) == merged


def test_merge_of_unsharded_runs_keeps_their_order():
    one = _record("20240101T000000Z-aaaaa1", ["a.py::x"])
    two = _record("20240101T000000Z-bbbbb2", ["b.py::y"], workers=("main",))
    merged = merge_records([two, one], run_id="20240102T000000Z-cccccc")
    assert merged.pytest_args == two.pytest_args
    assert len(merged.tests) == 2


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"env": {**ENV, "cpu_model": "Y"}}, "cpu_model: 'X' vs 'Y'"),
        ({"env": {**ENV, "git.commit": "def"}}, "different code (git.commit: 'abc' vs 'def')"),
        ({"backend": "cupy"}, "backend: 'numpy' vs 'cupy'"),
        ({"memory_mode": "rss"}, "memory_mode: 'tracemalloc' vs 'rss'"),
        ({"calibration": {"kernel": "k2", "workers": {"gw0": 1}}}, "different kernels"),
    ],
)
def test_merge_refuses_records_of_different_runs(changes, expected):
    one = _record("20240101T000000Z-aaaaa1", ["t.py::a"], shard="1/2")
    two = _record("20240101T000000Z-bbbbb2", ["t.py::b"], shard="2/2", **changes)
    with pytest.raises(ShardMergeError, match="20240101T000000Z-aaaaa1") as info:
        merge_records([one, two], run_id="20240102T000000Z-cccccc")
    assert expected in str(info.value)


def test_merge_refuses_a_test_in_two_shards_naming_it_and_both_runs():
    one = _record("20240101T000000Z-aaaaa1", ["t.py::a", "t.py::dup"], shard="1/2")
    two = _record("20240101T000000Z-bbbbb2", ["t.py::dup"], shard="2/2")
    with pytest.raises(ShardMergeError) as info:
        merge_records([one, two], run_id="20240102T000000Z-cccccc")
    assert str(info.value) == (
        "test t.py::dup is in runs 20240101T000000Z-aaaaa1 and 20240101T000000Z-bbbbb2: "
        "shards must not overlap"
    )


@pytest.mark.parametrize(
    ("shards", "expected"),
    [
        (["1/3", "2/3"], "incomplete split: shard(s) 3/3 missing"),
        (["1/2", "1/2"], "shard 1/2 is given twice"),
        (["1/2", "2/3"], "shards of different splits"),
        (["1/2", None], "was not run with --rtgov-shard"),
    ],
)
def test_merge_refuses_an_incomplete_or_mixed_split(shards, expected):
    records = [
        _record(f"20240101T000000Z-aaaaa{i}", [f"t.py::t{i}"], shard=shard)
        for i, shard in enumerate(shards, start=1)
    ]
    with pytest.raises(ShardMergeError) as info:
        merge_records(records, run_id="20240102T000000Z-cccccc")
    assert expected in str(info.value)


def test_merge_refuses_the_same_run_twice_and_nothing():
    one = _record("20240101T000000Z-aaaaa1", ["t.py::a"])
    with pytest.raises(ShardMergeError, match="given twice"):
        merge_records([one, one], run_id="20240102T000000Z-cccccc")
    with pytest.raises(ShardMergeError, match="no run records"):
        merge_records([], run_id="20240102T000000Z-cccccc")


# -- end to end: real shard records from pytester ----------------------------------------

SUITE = """
import os
import pytest

@pytest.fixture(scope="session")
def model(rtgov):
    rtgov.record("model_size", 42.0)
    rtgov.record_digest("weights", b"0123456789")
    return 1

@pytest.fixture(scope="module")
def table():
    return 2

@pytest.fixture
def batch(rtgov):
    rtgov.record("batch_rows", 16.0)
    return 3

@pytest.mark.parametrize("k", range(8))
def test_score(k, model, batch, rtgov):
    rtgov.record("score", 0.9 + k / 100 - float(os.environ.get("SUITE_DROP", "0")),
                 higher_is_better=True)

@pytest.mark.tablemark
def test_table(table):
    assert table == 2

def test_fails():
    assert os.environ.get("SUITE_FAIL", "0") == "0"

@pytest.mark.skip(reason="never")
def test_skipped():
    pass
"""

GATES = """
[defaults]
baseline = "baseline"

[[gates]]
name = "score floor"
metric = "score"
tests = ["test_suite.py::test_score*"]
min = 0.9

[[gates]]
name = "score drift"
metric = "score"
tests = ["test_suite.py::*"]
max_regression = 0.005

[[gates]]
name = "weights"
metric = "weights"
fixtures = ["model"]
exact = true

[[gates]]
name = "batch"
metric = "batch_rows"
fixtures = ["batch"]
min = 16

[[gates]]
name = "marked budget"
metric = "wall_time"
markers = ["tablemark"]
max = 10.0
"""

CONFTEST = """
def pytest_configure(config):
    config.addinivalue_line("markers", "tablemark: selected by a gate through its marker")
"""


def _read(pytester: pytest.Pytester) -> RunRecord:
    base = pytester.path / ".rtgov"
    run_id = (base / "latest").read_text().strip()
    data = json.loads((base / "runs" / f"{run_id}.json").read_text())
    return RunRecord.from_dict(data)


def _run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, RunRecord]:
    result = pytester.runpytest(*SHARD_PLUGIN, *args)
    return result, _read(pytester)


def _content(record: RunRecord) -> dict[str, Any]:
    """What an unsharded and a merged run must agree on: no timings, ids or workers."""
    tests = [
        (t.nodeid, t.outcome, t.rounds, t.warmup, len(t.samples), t.metrics, t.markers)
        for t in record.tests
    ]
    fixtures: dict[tuple[str, str, int], tuple[str, list[Any]]] = {}
    for f in record.fixtures:
        if f.scope == "function":  # one setup per test: the same whoever ran it
            setups = [(s.requested_by, s.outcome, s.metrics) for s in f.setups]
        else:  # one setup per process that needed it: compare what each recorded
            setups = sorted({(s.outcome, s.metrics) for s in f.setups}, key=repr)
        fixtures[f.key] = (f.scope, setups)
    return {
        "tests": tests,
        "fixtures": fixtures,
        "backend": record.backend,
        "memory_mode": record.memory_mode,
        "exit_status": record.exit_status,
    }


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_suite=SUITE)
    pytester.makeconftest(CONFTEST)
    pytester.makefile(".toml", gates=GATES)
    return pytester


def test_merged_shards_match_the_unsharded_run(suite, monkeypatch):
    monkeypatch.setenv("SUITE_FAIL", "1")
    # Gated, so that it records what gates select by (markers), as shards now do.
    _, unsharded = _run(suite, "--rtgov-gate")
    first_result, first = _run(suite, "--rtgov", "--rtgov-shard", "1/2")
    second_result, second = _run(suite, "--rtgov", "--rtgov-shard", "2/2")

    ids = [t.nodeid for t in unsharded.tests]
    assert len(ids) == 11
    shard_ids = [[t.nodeid for t in r.tests] for r in (first, second)]
    assert all(shard_ids) and sorted(shard_ids[0] + shard_ids[1]) == ids  # disjoint, covering
    first_result.stdout.fnmatch_lines([f"*{len(shard_ids[1])} deselected*"])
    second_result.stdout.fnmatch_lines([f"*{len(shard_ids[0])} deselected*"])

    merged = merge_records([second, first], run_id="20990101T000000Z-000000")
    assert _content(merged) == _content(unsharded)
    assert unsharded.exit_status == merged.exit_status == 1
    # The shards' command without the split (the reference run here was gated).
    assert merged.pytest_args == tuple(strip_shard_option(first.pytest_args))
    assert "--rtgov-shard" not in merged.pytest_args
    # Sorted, as every workers list is (two shards in one second sort by their suffix).
    assert merged.workers == tuple(sorted([f"{first.run_id}/main", f"{second.run_id}/main"]))
    # The session fixture: one setup in the unsharded run, one per shard process here.
    model = next(f for f in merged.fixtures if f.name == "model")
    assert {s.worker for s in model.setups} <= set(merged.workers)


def test_workers_of_one_shard_deselect_the_same_tests(suite):
    pytest.importorskip("xdist")
    # Without --rtgov: what is under test is only which tests each worker keeps.
    # hypothesis's plugin alone costs seconds per process; nothing here needs it.
    result = suite.runpytest_subprocess(
        *SHARD_PLUGIN, "-p", "no:hypothesispytest", "--rtgov-shard", "1/2", "-n", "2", "-v"
    )
    # xdist itself fails the session when its workers collect different tests.
    assert "Different tests were collected" not in result.stdout.str() + result.stderr.str()
    ran = sorted(re.findall(r"\[gw\d\] \[\s*\d+%\] \w+ (\S+)", result.stdout.str()))
    _, serial = _run(suite, "--rtgov", "--rtgov-shard", "1/2")
    assert ran and ran == [t.nodeid for t in serial.tests]


def test_no_option_selects_everything_and_a_bad_one_is_a_usage_error(suite):
    result = suite.runpytest(*SHARD_PLUGIN)
    result.assert_outcomes(passed=10, skipped=1)
    bad = suite.runpytest(*SHARD_PLUGIN, "--rtgov-shard", "3/2")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*invalid value for --rtgov-shard, expected I/N*(got '3/2')*"])


def _merge_args(directory: Path, runs: list[str], *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rtgov")
    parser.add_argument("--dir", type=Path, default=Path(".rtgov"))
    sub = parser.add_subparsers(dest="command", required=True)
    cli_merge.add_parsers(sub)
    args = parser.parse_args(["--dir", str(directory), "merge", *runs, *extra])
    apply_project_config(args)  # as cli.main does: --gates and --keyring from the project
    return args


def _statuses(gate_results: Any) -> list[tuple[str, str, str, str]]:
    return [(g["gate"], g["subject"], g["metric"], g["status"]) for g in gate_results]


def test_merged_shards_gate_like_the_unsharded_run(suite, monkeypatch, capsys):
    # The first gated run records the baseline; then every score drops by 0.02.
    assert suite.runpytest(*SHARD_PLUGIN, "--rtgov-gate", "-k", "not fails").ret == 0
    monkeypatch.setenv("SUITE_DROP", "0.02")
    unsharded_result, unsharded = _run(suite, "--rtgov-gate", "-k", "not fails")
    assert unsharded_result.ret == EXIT_GATE_BREACHED
    _, first = _run(suite, "--rtgov", "-k", "not fails", "--rtgov-shard", "1/2")
    _, second = _run(suite, "--rtgov", "-k", "not fails", "--rtgov-shard=2/2")

    state = suite.path / ".rtgov"
    args = _merge_args(state, [first.run_id, str(state / "runs" / f"{second.run_id}.json")])
    monkeypatch.chdir(suite.path)
    assert cli_merge.run(_merge_args(state, [*args.runs], "--gate")) == EXIT_GATE_BREACHED
    out = capsys.readouterr().out
    assert f"merged 2 run(s) ({first.run_id}, {second.run_id})" in out
    assert "rtgov gate: BREACHED" in out
    merged = _read(suite)
    assert merged.mode == "gate" and merged.exit_status == EXIT_GATE_BREACHED
    assert _statuses(merged.gate_results) == _statuses(unsharded.gate_results)
    marked = [g for g in merged.gate_results if g["gate"] == "marked budget"]
    assert [(g["subject"], g["status"]) for g in marked] == [("test_suite.py::test_table", "pass")]
    assert {s for *_, s in _statuses(merged.gate_results)} == {"pass", "breach"}
    assert merged.verdict["status"] == unsharded.verdict["status"] == "breached"
    assert merged.verdict["breaches"] == unsharded.verdict["breaches"]
    assert set(merged.verdict) == set(unsharded.verdict)
    assert merged.verdict["baseline_action"] is None


def test_merge_reports_failed_tests_refusals_and_never_writes_the_baseline(
    suite, monkeypatch, capsys
):
    monkeypatch.setenv("SUITE_FAIL", "1")
    _, first = _run(suite, "--rtgov", "--rtgov-shard", "1/2")
    _, second = _run(suite, "--rtgov", "--rtgov-shard", "2/2")
    record, path, status = cli_merge.merge_runs(
        suite.path / ".rtgov",
        [first.run_id, second.run_id],
        gate=True,
        gates_path=suite.path / "gates.toml",
    )
    assert status == record.exit_status == 1
    assert record.verdict["status"] == "failed-tests"
    assert any("does not create baselines" in note for note in record.verdict["notes"])
    assert path == suite.path / ".rtgov" / "runs" / f"{record.run_id}.json"
    assert _read(suite) == record
    assert not (suite.path / "baseline").exists()

    state = suite.path / ".rtgov"
    from pytest_rtgov.cli import main as rtgov_main

    merge = ["--dir", str(state), "merge"]
    assert rtgov_main([*merge, first.run_id]) == ExitCode.NOT_MERGEABLE
    assert "cannot merge: incomplete split: shard(s) 2/2 missing" in capsys.readouterr().err
    assert rtgov_main([*merge, "nosuchrun"]) == ExitCode.NOT_FOUND
    bad_gates = [*merge, first.run_id, second.run_id, "--gate", "--gates", "no.toml"]
    assert rtgov_main(bad_gates) == ExitCode.BAD_INPUT
    assert "no.toml" in capsys.readouterr().err


# -- the merged run in the ledger: the record says the exit status, a failure (7) too ----


def _shards(suite: pytest.Pytester) -> list[str]:
    """A baseline from a gated run, then the two shards of an ungated one: run ids."""
    assert suite.runpytest(*SHARD_PLUGIN, "--rtgov-gate", "-k", "not fails").ret == 0
    _, first = _run(suite, "--rtgov", "-k", "not fails", "--rtgov-shard", "1/2")
    _, second = _run(suite, "--rtgov", "-k", "not fails", "--rtgov-shard", "2/2")
    return [first.run_id, second.run_id]


def test_a_merged_run_is_logged_in_the_ledger_and_verifies(suite, monkeypatch, capsys):
    from pytest_rtgov.cli import main as rtgov_main

    runs = _shards(suite)
    monkeypatch.chdir(suite.path)
    state = suite.path / ".rtgov"
    assert rtgov_main(["--dir", str(state), "merge", *runs, "--gate"]) == 0
    out = capsys.readouterr().out
    assert "rtgov gate: PASSED" in out and "ledger: " in out.splitlines()[-1]
    merged = _read(suite)
    assert merged.exit_status == 0 and merged.verdict["status"] == "passed"
    assert merged.run_id.encode() in (state / "ledger" / "log").read_bytes()
    assert rtgov_main(["--dir", str(state), "verify"]) == 0


def test_a_merge_whose_ledger_is_locked_exits_7_and_its_record_says_7(
    suite, monkeypatch, capsys
):
    """The ledger fails before the record is written: it is written saying exit 7."""
    import fcntl

    from pytest_rtgov.cli import main as rtgov_main

    runs = _shards(suite)
    monkeypatch.chdir(suite.path)
    state = suite.path / ".rtgov"
    log = (state / "ledger" / "log").read_bytes()
    monkeypatch.setenv("RTGOV_LEDGER_TIMEOUT", "0")
    with open(state / "ledger" / "log.lock", "a+b") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # another writer holds the ledger
        status = rtgov_main(["--dir", str(state), "merge", *runs, "--gate"])
    assert status == ExitCode.INTEGRITY
    captured = capsys.readouterr()
    assert "exit status 7" in captured.out  # the verdict printed is the record's
    assert "written with exit status 7 but not logged in the ledger" in captured.err
    merged = _read(suite)
    assert merged.run_id not in runs
    assert merged.exit_status == ExitCode.INTEGRITY
    assert merged.verdict["status"] == "error"
    assert merged.verdict["exit_status"] == ExitCode.INTEGRITY
    assert any("ledger not appended" in note for note in merged.verdict["notes"])
    assert (state / "ledger" / "log").read_bytes() == log


FAILING_CHECKPOINT_WRITE = OSError(28, "No space left on device")


def test_a_merge_whose_append_fails_after_the_record_was_written_rewrites_it(
    suite, monkeypatch, capsys
):
    """Ungated: the record was written (exit 0) under the lock, then the checkpoint
    fails: it is rewritten with exit 7, and its leaves are cut from the log."""
    from pytest_rtgov.cli import main as rtgov_main
    from pytest_rtgov.store.ledger import LedgerAppender

    runs = _shards(suite)
    monkeypatch.chdir(suite.path)
    state = suite.path / ".rtgov"

    def full_disk(self: Any, note: str) -> Path:
        raise FAILING_CHECKPOINT_WRITE

    monkeypatch.setattr(LedgerAppender, "write_checkpoint", full_disk)
    assert rtgov_main(["--dir", str(state), "merge", *runs]) == ExitCode.INTEGRITY
    assert "No space left on device" in capsys.readouterr().err
    merged = _read(suite)
    assert merged.run_id not in runs
    assert merged.exit_status == ExitCode.INTEGRITY and not merged.verdict
    assert merged.run_id.encode() not in (state / "ledger" / "log").read_bytes()
