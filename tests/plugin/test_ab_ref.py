"""Which code a gated session's A/B gates compare against, and that it says so.

The repos here have a committed slowdown on a feature branch. These tests assert which
code was chosen (the recorded and printed sha), never a timing outcome: that depends
on the load of the machine.
"""

from __future__ import annotations

import json

import pytest

from tests._git import git

KERNEL = """
def work(n):
    total = 0
    for i in range(n):
        total += i * i
    return total
"""
SLOWER = KERNEL.replace("total += i * i", "total += i * i * 1 ** 2 + 0 + 0 * i")

TEST = """
import pytest
from mykernel import work

@pytest.mark.rtgov(rounds=5)
def test_work():
    work(2000)
"""

ACCEPTED_GATES = """
[defaults]
baseline = "baseline"
ab_ref = "accepted"
ab_pairs = 5

[[gates]]
name = "time"
metric = "cpu_time"
tests = ["test_ab.py::*"]
max_regression_pct = 10
ab = true
"""


@pytest.fixture
def pull_request(pytester):
    """main (fetched as origin/main) moved on after the feature branch left it; the
    feature branch committed a slowdown: the merge base is neither HEAD nor origin/main.
    (tests/conftest.py clears the CI variables of the outer shell.)"""
    pytester.makepyfile(mykernel=KERNEL, test_ab=TEST)
    pytester.makefile(".toml", gates=ACCEPTED_GATES)
    pytester.path.joinpath(".gitignore").write_text(".rtgov/\n__pycache__/\n")
    pytester.syspathinsert()
    git(pytester.path, "init", "-q", "-b", "main")
    git(pytester.path, "add", ".")
    git(pytester.path, "commit", "-q", "-m", "base")
    shas = {"base": git(pytester.path, "rev-parse", "HEAD")}
    pytester.path.joinpath("README").write_text("main moved on\n")
    git(pytester.path, "add", "README")
    git(pytester.path, "commit", "-q", "-m", "main moved on")
    shas["main"] = git(pytester.path, "rev-parse", "HEAD")
    git(pytester.path, "update-ref", "refs/remotes/origin/main", shas["main"])
    git(pytester.path, "checkout", "-q", "-b", "feature", shas["base"])
    (pytester.path / "mykernel.py").write_text(SLOWER)
    git(pytester.path, "commit", "-q", "-am", "a committed slowdown")
    shas["head"] = git(pytester.path, "rev-parse", "HEAD")
    return pytester, shas


def gated(pytester, *args):
    return pytester.runpytest_subprocess(
        "--rtgov-gate", "-p", "no:cacheprovider", "--rtgov-log-json=events.jsonl", *args
    )


def ab_notes(pytester) -> list[str]:
    base = pytester.path / ".rtgov"
    run_id = (base / "latest").read_text().strip()
    record = json.loads((base / "runs" / f"{run_id}.json").read_text())
    return [n for n in record["verdict"]["notes"] if n.startswith("A/B reference:")]


def prepared(pytester) -> dict:
    lines = (pytester.path / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    return next(e for e in events if e.get("event") == "ab.prepared")


def test_a_pull_request_job_compares_with_the_merge_base(pull_request, monkeypatch):
    pytester, shas = pull_request
    monkeypatch.setenv("GITHUB_BASE_REF", "main")
    result = gated(pytester)
    assert result.ret in (0, 6), result.stdout.str() + result.stderr.str()
    (note,) = ab_notes(pytester)
    assert f"the merge base {shas['base']}" in note
    assert "GITHUB_BASE_REF=main" in note
    result.stdout.fnmatch_lines([f"rtgov: note: A/B reference: the merge base {shas['base']}*"])
    event = prepared(pytester)
    assert (event["sha"], event["chosen"]) == (shas["base"], "merge-base")
    assert (pytester.path / ".rtgov" / "ab" / shas["base"]).is_dir()


def test_without_accepted_ref_or_pull_request_it_names_head(pull_request):
    pytester, shas = pull_request
    result = gated(pytester)
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    (note,) = ab_notes(pytester)
    assert f"A/B reference: HEAD = {shas['head']}" in note
    assert "only uncommitted changes are compared" in note
    result.stdout.fnmatch_lines([f"rtgov: note: A/B reference: HEAD = {shas['head']}*"])
    assert (prepared(pytester)["sha"], prepared(pytester)["chosen"]) == (shas["head"], "head")


def test_a_target_branch_not_fetched_is_a_usage_error(pull_request, monkeypatch):
    pytester, _ = pull_request
    monkeypatch.setenv("GITHUB_BASE_REF", "release")
    result = gated(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*origin/release is not fetched*git fetch --no-tags origin +refs/heads/release*"]
    )


def test_a_shard_says_which_code_it_measured_against(pull_request, monkeypatch):
    pytester, shas = pull_request
    monkeypatch.setenv("GITHUB_BASE_REF", "main")
    result = pytester.runpytest_subprocess("--rtgov", "--rtgov-shard=1/1", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines([f"pytest-rtgov: A/B reference: the merge base {shas['base']}*"])
