"""`rtgov gc` end to end: old runs' records, captures and artifacts pruned after a signed
prune leaf, the ledger's leaves kept, `rtgov verify` still at 0 and naming them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_rtgov.core.canonical import canonical_json
from pytest_rtgov.core.ledger_records import LeafFormatError, parse_leaf, prune_leaf
from pytest_rtgov.store import prune as prune_module
from pytest_rtgov.store.ledger import read_frames
from pytest_rtgov.store.runs import RunStore
from pytest_rtgov.store.verify import EXIT_LEAF
from tests.plugin._cli import cli

SUITE = """
import numpy as np

def test_model(rtgov):
    rtgov.record("val_accuracy", 0.95, higher_is_better=True)
    rtgov.save_artifact("weights", {"w": np.arange(4)})
"""

GATES = """
[defaults]
baseline = "baseline"

[[gates]]
name = "accuracy"
metric = "val_accuracy"
tests = ["test_suite.py::*"]
min = 0.9
max_regression = 0.02
"""


@pytest.fixture
def three_runs(pytester: pytest.Pytester) -> list[str]:
    """Three gated sessions; the first one wrote the baseline. Run ids in ledger order."""
    pytester.makepyfile(test_suite=SUITE)
    pytester.makefile(".toml", gates=GATES)
    for _ in range(3):
        assert pytester.runpytest("--rtgov-gate").ret == 0
    runs = list(RunStore(pytester.path / ".rtgov").covered())
    assert len(runs) == 3
    return runs


def _leaves(state: Path) -> list[bytes]:
    return [frame.payload for frame in read_frames(state / "ledger" / "log")]


def test_keep_1_prunes_all_but_latest_and_the_baseline_run_and_verify_passes(
    pytester: pytest.Pytester, three_runs: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    first, second, last = three_runs
    state = pytester.path / ".rtgov"
    baseline = json.loads((pytester.path / "baseline" / "metrics.json").read_text())
    assert baseline["run_id"] == first  # the baseline was refreshed from the first run
    capture = state / "captures" / second / "main" / "region-000001.bin"
    capture.parent.mkdir(parents=True)
    capture.write_bytes(b"x" * 1000)
    assert (state / "artifacts" / second).is_dir()
    before = _leaves(state)
    capsys.readouterr()

    assert cli(pytester, "gc", "--keep", "1") == 0
    out = capsys.readouterr().out
    assert f"pruned (1):\n  {second}" in out
    assert f"{first}  the baseline" in out and f"{last}  latest" in out
    assert "rtgov gc: pruned 1 run(s) (keep 1)" in out and "freed" in out
    assert not (state / "runs" / f"{second}.json").exists()
    assert not (state / "artifacts" / second).exists()
    assert not (state / "captures" / second).exists()
    for kept in (first, last):
        assert (state / "runs" / f"{kept}.json").is_file()
        assert (state / "artifacts" / kept).is_dir()

    after = _leaves(state)
    assert after[: len(before)] == before  # every leaf stays, the second run's too
    leaf = parse_leaf(after[-1])
    assert leaf["kind"] == "prune" and [r["run_id"] for r in leaf["runs"]] == [second]

    assert cli(pytester, "verify") == 0
    out = capsys.readouterr().out
    assert f"1 run record(s) pruned (by leaf {len(after) - 1} at" in out and second in out

    # A pruned run asked by id says so; the derived views still work.
    assert cli(pytester, "show", second) == 3
    assert "pruned by `rtgov gc` at" in capsys.readouterr().err
    assert cli(pytester, "compare", first, "latest") in (0, 8)
    assert cli(pytester, "compare", second, "latest") in (0, 8)  # from its leaves
    assert cli(pytester, "prove", second, "-o", "proof.json") == 0
    assert cli(pytester, "verify-proof", "proof.json") == 0
    assert cli(pytester, "graph", "query", "top-regressions") == 0
    assert cli(pytester, "report", "latest", "-o", "r.html") == 0
    capsys.readouterr()
    assert cli(pytester, "runs") == 0
    assert second not in capsys.readouterr().out

    # Later sessions, and a second gc with nothing left to prune, keep it all intact.
    assert pytester.runpytest("--rtgov-gate").ret == 0
    size = (state / "ledger" / "log").stat().st_size
    assert cli(pytester, "gc", "--keep", "2") == 0
    assert "pruned 0 run(s)" in capsys.readouterr().out
    assert (state / "ledger" / "log").stat().st_size == size  # nothing pruned: no leaf
    assert cli(pytester, "verify") == 0


def test_a_record_deleted_by_hand_still_fails_verify(
    pytester: pytest.Pytester, three_runs: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(pytester, "gc", "--keep", "1") == 0
    (pytester.path / ".rtgov" / "runs" / f"{three_runs[0]}.json").unlink()
    capsys.readouterr()
    assert cli(pytester, "verify") == EXIT_LEAF
    err = capsys.readouterr().err
    assert f"{three_runs[0]}.json: run record missing: the ledger's verdict leaf" in err


def test_dry_run_removes_nothing(
    pytester: pytest.Pytester, three_runs: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    state = pytester.path / ".rtgov"
    files = sorted(p for p in state.rglob("*") if p.is_file())
    log = (state / "ledger" / "log").read_bytes()
    capsys.readouterr()
    assert cli(pytester, "gc", "--older-than", "0", "--dry-run") == 0
    out = capsys.readouterr().out
    assert f"would prune (1):\n  {three_runs[1]}" in out
    assert "would prune 1 run(s), freeing " in out and "nothing removed" in out
    assert sorted(p for p in state.rglob("*") if p.is_file()) == files
    assert (state / "ledger" / "log").read_bytes() == log


def test_a_gc_killed_between_its_leaf_and_the_deletes_is_finished_by_the_next(
    pytester: pytest.Pytester,
    three_runs: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = pytester.path / ".rtgov"
    second = three_runs[1]

    def killed(*_: object) -> int:
        raise KeyboardInterrupt  # as a kill after the leaf and checkpoint were written

    with monkeypatch.context() as patch:
        patch.setattr(prune_module, "_remove", killed)
        with pytest.raises(KeyboardInterrupt):
            cli(pytester, "gc", "--keep", "1")
    assert (state / "runs" / f"{second}.json").is_file()
    assert parse_leaf(_leaves(state)[-1])["kind"] == "prune"
    capsys.readouterr()
    assert cli(pytester, "verify") == 0  # the intent is signed; what is left is reported
    assert "still present: an interrupted `rtgov gc`" in capsys.readouterr().err

    size = (state / "ledger" / "log").stat().st_size
    assert cli(pytester, "gc", "--keep", "1") == 0
    assert "finished 1 earlier prune(s)" in capsys.readouterr().out
    assert not (state / "runs" / f"{second}.json").exists()
    assert not (state / "artifacts" / second).exists()
    assert (state / "ledger" / "log").stat().st_size == size  # no second leaf
    assert cli(pytester, "verify") == 0
    out, err = capsys.readouterr()
    assert second in out and "pruned" in out and "interrupted" not in err


def test_older_than_keeps_recent_runs_and_leaves_uncovered_records_alone(
    pytester: pytest.Pytester, three_runs: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    state = pytester.path / ".rtgov"
    orphan = state / "runs" / "20000101T000000Z-0a0a0a.json"
    orphan.write_bytes((state / "runs" / f"{three_runs[1]}.json").read_bytes())
    capsys.readouterr()
    assert cli(pytester, "gc", "--older-than", "36500") == 0
    out = capsys.readouterr().out
    assert "pruned 0 run(s)" in out and "started less than 36500 days ago" in out
    assert "left alone (1):\n  20000101T000000Z-0a0a0a  no verdict leaf covers it" in out
    assert cli(pytester, "gc", "--older-than", "0") == 0
    assert "pruned 1 run(s) (older than 0 days)" in capsys.readouterr().out
    assert orphan.is_file()  # never pruned: no leaf vouches for it


def test_gc_waits_for_the_ledger_lock_and_deletes_nothing_without_it(
    pytester: pytest.Pytester,
    three_runs: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.plugin.test_verify_trust import HOLDER

    state = pytester.path / ".rtgov"
    log = (state / "ledger" / "log").read_bytes()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state / "ledger" / "log.lock")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        monkeypatch.setenv("RTGOV_LEDGER_TIMEOUT", "0")
        capsys.readouterr()
        assert cli(pytester, "gc", "--keep", "1") == 7
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert "waiting for the ledger lock" in err and "nothing pruned" in err
    assert (state / "runs" / f"{three_runs[1]}.json").is_file()
    assert (state / "ledger" / "log").read_bytes() == log


@pytest.mark.parametrize(
    "args",
    [[], ["--keep", "1", "--older-than", "3"], ["--keep", "-1"], ["--older-than", "-2"],
     ["--keep", "x"], ["--older-than", "nan"]],
)  # fmt: skip
def test_bad_arguments_are_usage_errors(
    pytester: pytest.Pytester, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli(pytester, "gc", *args)
    assert exit_info.value.code == 2
    assert "rtgov gc: error:" in capsys.readouterr().err


def test_no_state_directory_is_exit_3(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(pytester, "gc", "--keep", "1") == 3
    assert "no state directory" in capsys.readouterr().err


def test_a_prune_leaf_names_runs_with_digests() -> None:
    digest = "sha256:" + "ab" * 32
    leaf = parse_leaf(prune_leaf({"r1": digest}, pruned_at="t", policy="keep 1", who="w"))
    assert leaf["runs"] == [{"record_sha256": digest, "run_id": "r1"}]
    bad = {"kind": "prune", "pruned_at": "t", "runs": [{"run_id": "r1"}]}
    with pytest.raises(LeafFormatError, match="record_sha256"):
        parse_leaf(canonical_json(bad))


def test_a_prune_leaf_with_another_digest_does_not_excuse_a_missing_record(
    pytester: pytest.Pytester, three_runs: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_rtgov.store.keys import load_signing_key
    from pytest_rtgov.store.ledger import Ledger, append_session

    state = pytester.path / ".rtgov"
    second = three_runs[1]
    signing = load_signing_key(key_file=None, state_dir=state)
    leaf = prune_leaf({second: "sha256:" + "0" * 64}, pruned_at="t", policy="p", who="w")
    append_session(
        Ledger(state / "ledger"), [leaf], signer=signing.signer, origin="", created_at="t"
    )
    (state / "runs" / f"{second}.json").unlink()
    capsys.readouterr()
    assert cli(pytester, "verify") == EXIT_LEAF
    err = capsys.readouterr().err
    assert "run record missing" in err and "pruned another record of that run" in err
