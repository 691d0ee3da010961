"""The experiment graph end to end: a real slowdown committed in git, then found.

The kernel is CPU work, and the gate judges its CPU time: a machine loaded by other
processes stretches wall time (a sleep wakes late, a loop is descheduled) but not the
CPU time of a fixed amount of work, so the verdicts here do not depend on the load.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import networkx as nx
import pytest

from pytest_rtgov.core.constants import EXIT_GATE_BREACHED, ExitCode
from tests.plugin._cli import cli

WORK = "80_000"  # loop iterations: a few ms of CPU time

KERNEL = """
def kernel():
    total = 0
    for i in range(80_000):
        total += i * i
    return total
"""

SUITE = """
import pytest
from kernel import kernel

@pytest.fixture(scope="session")
def dataset(rtgov):
    rtgov.record("data_seed", 7, unit="seed")
    rtgov.record_digest("dataset_digest", b"rows-v1")
    return 1

@pytest.mark.rtgov(rounds=7, warmup=1)
def test_kernel():
    kernel()

def test_accuracy(dataset, rtgov):
    rtgov.record("val_accuracy", 0.95, higher_is_better=True)
"""

# +100% allowed: an unchanged kernel's CPU time has measured +66% beside the other xdist
# worker on a 2-core CI machine; the committed slowdown is 8x the work.
GATES = """
[defaults]
baseline = "baseline"

[[gates]]
name = "kernel time"
metric = "cpu_time"
tests = ["test_suite.py::test_kernel"]
max_regression_pct = 100

[[gates]]
name = "accuracy"
metric = "val_accuracy"
tests = ["test_suite.py::*"]
min = 0.9
"""


def git(path: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
    }
    done = subprocess.run(
        ["git", *args], cwd=path, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def runs_in_order(path: Path) -> list[str]:
    """Run ids in the order the sessions ran (the ledger's), not by name: two runs in
    one second sort by their random suffix."""
    from pytest_rtgov.store.delta_index import DeltaIndexStore

    return [info.run_id for info in DeltaIndexStore(path / ".rtgov").load().runs]



@pytest.fixture
def repo(pytester):
    pytester.makepyfile(test_suite=SUITE, kernel=KERNEL)
    pytester.makefile(".toml", gates=GATES)
    pytester.path.joinpath(".gitignore").write_text(".rtgov/\nbaseline/\n__pycache__/\n")
    git(pytester.path, "init", "-q", "-b", "main")
    git(pytester.path, "add", "-A")
    git(pytester.path, "commit", "-q", "-m", "initial")
    return pytester


def commit_kernel(repo, work: str, message: str) -> str:
    repo.path.joinpath("kernel.py").write_text(KERNEL.replace(WORK, work))
    git(repo.path, "commit", "-q", "-am", message)
    return git(repo.path, "rev-parse", "HEAD")


def test_a_committed_slowdown_is_compared_located_and_exported(repo, capsys):
    first = git(repo.path, "rev-parse", "HEAD")
    # -p no:cacheprovider: a subprocess run sees the kernel module as edited on disk.
    assert repo.runpytest_subprocess("--rtgov-gate", "-p", "no:cacheprovider").ret == 0
    good = commit_kernel(repo, "82_000", "harmless edit")  # +2.5%: within 100%
    assert repo.runpytest_subprocess("--rtgov-gate", "-p", "no:cacheprovider").ret == 0
    bad = commit_kernel(repo, "640_000", "slow kernel")  # 8x the CPU work
    result = repo.runpytest_subprocess("--rtgov-gate", "-p", "no:cacheprovider")
    assert result.ret == EXIT_GATE_BREACHED

    capsys.readouterr()
    assert cli(repo.path, "compare", "baseline", "latest", "--format", "json") == 0
    report = json.loads(capsys.readouterr().out)
    changed = {(r["subject"], r["metric"]) for r in report["rows"]}
    assert ("test_suite.py::test_kernel", "cpu_time") in changed
    assert ("test_suite.py::test_accuracy", "val_accuracy") not in changed
    assert report["comparable"] is True
    # the text says which way the time went, in the metric's direction
    assert cli(repo.path, "compare", "baseline", "latest", "--format", "markdown") == 0
    kernel = [line for line in capsys.readouterr().out.splitlines() if "test_kernel |" in line]
    assert any("| cpu_time |" in line and "% (worse)" in line for line in kernel), kernel
    assert cli(repo.path, "graph", "query", "top-regressions") == 0
    assert "% (worse))" in capsys.readouterr().out

    assert cli(repo.path, "graph", "query", "first-regression") == 0
    out = capsys.readouterr().out
    runs = runs_in_order(repo.path)
    assert f"first bad run {runs[-1]}" in out
    assert f"last good run {runs[-2]}" in out
    assert f"git bisect start {bad} {good}" in out
    assert first != good

    assert cli(repo.path, "graph", "query", "top-regressions", "--json") == 0
    top = json.loads(capsys.readouterr().out)["regressions"][0]
    assert (top["subject"], top["verdict"]) == ("test_suite.py::test_kernel", "breach")

    out_path = repo.path / "graph.graphml"
    assert cli(repo.path, "graph", "export", "--format", "graphml", "-o", str(out_path)) == 0
    graph = nx.read_graphml(out_path, force_multigraph=True)
    kinds = {d["kind"] for _, d in graph.nodes(data=True)}
    assert {"run", "commit", "environment", "baseline", "subject", "observation"} <= kinds
    assert graph.has_edge(f"run:{runs[-1]}", f"commit:{bad}")
    deltas = [
        d
        for u, _, d in graph.edges(data=True)
        if d["kind"] == "delta" and u == f"obs:{runs[-1]}|test_suite.py::test_kernel|cpu_time"
    ]
    assert deltas and deltas[0]["verdict"] == "breach"


def test_runs_on_different_fingerprints_are_not_comparable(repo, capsys, monkeypatch):
    assert repo.runpytest_subprocess("--rtgov", "-p", "no:cacheprovider").ret == 0
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    assert repo.runpytest_subprocess("--rtgov", "-p", "no:cacheprovider").ret == 0
    runs = runs_in_order(repo.path)
    capsys.readouterr()
    assert cli(repo.path, "compare", runs[0], runs[1]) == ExitCode.INCOMPARABLE
    out = capsys.readouterr().out
    assert "NOT COMPARABLE" in out
    assert "env.OPENBLAS_NUM_THREADS: '' vs '3'" in out


def test_a_changed_dataset_is_flagged_by_compare_and_by_the_gate(repo, capsys):
    assert repo.runpytest_subprocess("--rtgov-gate", "-p", "no:cacheprovider").ret == 0
    suite = repo.path / "test_suite.py"
    suite.write_text(SUITE.replace("rows-v1", "rows-v2"))
    result = repo.runpytest_subprocess("--rtgov-gate", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*NOT COMPARABLE with the baseline: dataset dataset_digest*"])
    runs = runs_in_order(repo.path)
    capsys.readouterr()
    assert cli(repo.path, "compare", runs[0], runs[1]) == ExitCode.INCOMPARABLE
    assert "dataset dataset_digest: sha256:" in capsys.readouterr().out


def test_the_index_a_session_extends_from_memory_equals_a_rebuild(repo, monkeypatch):
    """After a session appends, the report's index takes the record from memory, not
    from the ledger: the result must be the very index a rebuild reads from the log."""
    from pytest_rtgov.store.delta_index import DeltaIndexStore

    fast = []
    add_appended = DeltaIndexStore._add_appended

    def spy(self, index, meta, appended):
        fast.append(add_appended(self, index, meta, appended))
        return fast[-1]

    monkeypatch.setattr(DeltaIndexStore, "_add_appended", spy)
    index_dir = repo.path / ".rtgov" / "index"
    for _ in range(4):
        assert repo.runpytest("--rtgov-gate", "-p", "no:cacheprovider").ret == 0
    assert fast[-3:] == [True, True, True]  # the later sessions took the in-memory path

    def content() -> list[str]:  # the sqlite file's rows, not its page layout
        with closing(sqlite3.connect(index_dir / "index.sqlite3")) as conn:
            return list(conn.iterdump())

    kept = content()
    DeltaIndexStore(repo.path / ".rtgov").rebuild()
    assert content() == kept
