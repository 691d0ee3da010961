"""Accepting a change with ``--rtgov-update-baseline`` sticks: the next run judges the
accepted code the same way, and committing it later changes nothing (issue 14, 4).

What is accepted: regressions against the baseline (its values and, for A/B gates with
``ab_ref = "accepted"``, the code). What is not: absolute budgets (``min``, ``max``),
which stay breached until gates.toml changes them; such an update session exits 6.

The A/B kernel slows down by six times the work and the gate allows +150%: no load on a
shared CI machine (an unchanged kernel measured +66% there) turns either into the other.
The budget and the recorded regression are recorded metrics: exact, no timing at all.
"""

from __future__ import annotations

import json

from pytest_rtgov.core.constants import EXIT_GATE_BREACHED
from tests._git import git

KERNEL = """
def work(n):
    total = 0
    for i in range(n * FACTOR):
        total += i * i
    return total
"""

TEST = """
import pytest
from mykernel import work

@pytest.mark.rtgov(rounds=3)
def test_work():
    work(20000)
"""

AB_GATES = """
[defaults]
baseline = "baseline"
ab_pairs = 10

[[gates]]
name = "kernel time"
metric = "cpu_time"
tests = ["test_ab.py::*"]
max_regression_pct = 150
ab = true
"""


def kernel(factor: int) -> str:
    return KERNEL.replace("FACTOR", str(factor))


def gated(pytester, *args):
    return pytester.runpytest_subprocess(
        "--rtgov-gate", "--rtgov-report=off", "-p", "no:cacheprovider", *args
    )


def accept(pytester, reason="accepted slowdown"):
    return gated(pytester, "--rtgov-update-baseline", f"--rtgov-reason={reason}")


def last_record(pytester) -> dict:
    base = pytester.path / ".rtgov"
    run_id = (base / "latest").read_text().strip()
    return json.loads((base / "runs" / f"{run_id}.json").read_text())


def statuses(pytester) -> dict[str, str]:
    results = last_record(pytester)["gate_results"]
    return {f"{g['gate']}:{g['subject']}": g["status"] for g in results}


def test_an_accepted_ab_slowdown_sticks_before_and_after_it_is_committed(pytester):
    pytester.makepyfile(mykernel=kernel(1), test_ab=TEST)
    pytester.makefile(".toml", gates=AB_GATES)  # ab_ref unset: "accepted", the default
    pytester.path.joinpath(".gitignore").write_text(".rtgov/\n__pycache__/\n")
    pytester.syspathinsert()
    git(pytester.path, "init", "-q")
    git(pytester.path, "add", ".")
    git(pytester.path, "commit", "-q", "-m", "base")
    head = git(pytester.path, "rev-parse", "HEAD")
    index = (pytester.path / ".git" / "index").read_bytes()

    (pytester.path / "mykernel.py").write_text(kernel(6))  # uncommitted, six times the work
    slow = gated(pytester)
    assert slow.ret == EXIT_GATE_BREACHED, slow.stdout.str()
    assert statuses(pytester)["kernel time:test_ab.py::test_work"] == "breach"

    accepted = accept(pytester)
    assert accepted.ret == 0, accepted.stdout.str()
    accepted.stdout.fnmatch_lines(
        [
            "*A/B baseline code is now refs/rtgov/accepted = *",
            "*accepted: 1 A/B regression (kernel time: test_ab.py::test_work cpu_time*code",
            "rtgov gate: PASSED*1 accepted*exit status 0*",
        ]
    )
    assert "not accepted" not in accepted.stdout.str()
    # the user's branch, index and working tree are as they were
    assert git(pytester.path, "rev-parse", "HEAD") == head
    assert (pytester.path / ".git" / "index").read_bytes() == index
    assert git(pytester.path, "status", "--porcelain", "-uno") == "M mykernel.py"

    after = gated(pytester)  # compared with the accepted code, not the commit
    assert after.ret == 0, after.stdout.str()
    after.stdout.fnmatch_lines(["*A/B reference: refs/rtgov/accepted = *"])

    git(pytester.path, "commit", "-q", "-am", "the accepted slowdown")
    committed = gated(pytester)
    assert committed.ret == 0, committed.stdout.str()

    (pytester.path / "mykernel.py").write_text(kernel(36))  # six times slower again
    slower = gated(pytester)
    assert slower.ret == EXIT_GATE_BREACHED, slower.stdout.str()
    assert statuses(pytester)["kernel time:test_ab.py::test_work"] == "breach"


def test_accepting_in_a_repository_without_commits(pytester):
    pytester.makepyfile(mykernel=kernel(1), test_ab=TEST)
    pytester.makefile(".toml", gates=AB_GATES)
    pytester.path.joinpath(".gitignore").write_text(".rtgov/\n__pycache__/\n")
    pytester.syspathinsert()
    git(pytester.path, "init", "-q")
    git(pytester.path, "add", ".")
    from pytest_rtgov.store.ab_ref import ACCEPTED_REF, accept_code

    sha = accept_code(pytester.path)
    assert git(pytester.path, "rev-parse", ACCEPTED_REF) == sha
    listed = git(pytester.path, "ls-tree", "--name-only", sha).split()
    assert {"mykernel.py", "test_ab.py", "gates.toml"} <= set(listed)
    # the index still holds what was staged, no commit on the branch
    assert git(pytester.path, "rev-list", "--all", "--count") == "1"  # the snapshot only
    assert "gates.toml" in git(pytester.path, "diff", "--cached", "--name-only")


MODEL_TEST = """
def test_train(rtgov):
    rtgov.record("accuracy", ACCURACY, higher_is_better=True)
    rtgov.record("model_mib", SIZE, unit="MiB", higher_is_better=False)
"""

BUDGET_GATES = """
[defaults]
baseline = "baseline"

[[gates]]
name = "accuracy"
metric = "accuracy"
tests = ["test_model.py::*"]
max_regression_pct = 1

[[gates]]
name = "model size"
metric = "model_mib"
tests = ["test_model.py::*"]
max = 10
"""


def model(accuracy: float, size: float) -> str:
    return MODEL_TEST.replace("ACCURACY", str(accuracy)).replace("SIZE", str(size))


def test_a_budget_breach_is_never_accepted_and_the_update_says_which_is_which(pytester):
    pytester.makepyfile(test_model=model(0.9, 5))
    pytester.makefile(".toml", gates=BUDGET_GATES)
    first = gated(pytester)
    assert first.ret == 0, first.stdout.str()

    pytester.makepyfile(test_model=model(0.8, 20))  # a regression, and over the budget
    assert gated(pytester).ret == EXIT_GATE_BREACHED

    update = gated(
        pytester, "--rtgov-update-baseline", "--rtgov-reason=smaller", "--rtgov-log-json=ev.jsonl"
    )
    assert update.ret == EXIT_GATE_BREACHED, update.stdout.str()
    events = [json.loads(line) for line in (pytester.path / "ev.jsonl").read_text().splitlines()]
    (event,) = [e for e in events if e.get("event") == "baseline.accepted"]
    assert (event["accepted"], event["not_accepted"]) == (1, ["budget breach"])
    out = update.stdout.str()
    update.stdout.fnmatch_lines(
        [
            "*accepted: 1 regression (accuracy: test_model.py::test_train accuracy*",
            "*not accepted: 1 budget breach (model size: test_model.py::test_train "
            "model_mib <= 10*change gates.toml*",
            "rtgov gate: BREACHED*1 breached, 1 accepted*exit status 6*",
        ]
    )
    assert "2 breach(es) accepted" not in out
    record = last_record(pytester)
    assert record["verdict"]["status"] == "breached"
    assert record["verdict"]["baseline_action"] == "updated"
    assert record["verdict"]["accepted"] == 1

    again = gated(pytester)  # the regression was accepted, the budget was not
    assert again.ret == EXIT_GATE_BREACHED, again.stdout.str()
    assert statuses(pytester) == {
        "accuracy:test_model.py::test_train": "pass",
        "model size:test_model.py::test_train": "breach",
    }

    pytester.makefile(".toml", gates=BUDGET_GATES.replace("max = 10", "max = 32"))
    assert gated(pytester).ret == 0


EDIT_MEANWHILE = """
from pathlib import Path

def test_edit_meanwhile():  # a developer editing while the suite runs
    Path("mykernel.py").write_text(Path("mykernel.py").read_text() + "# edited meanwhile\\n")
"""


def test_the_update_accepts_the_code_it_measured_not_an_edit_made_meanwhile(pytester):
    pytester.makepyfile(mykernel=kernel(1), test_ab=TEST, test_edit=EDIT_MEANWHILE)
    pytester.makefile(".toml", gates=AB_GATES)
    pytester.path.joinpath(".gitignore").write_text(".rtgov/\n__pycache__/\n")
    pytester.syspathinsert()
    git(pytester.path, "init", "-q")
    git(pytester.path, "add", ".")
    git(pytester.path, "commit", "-q", "-m", "base")
    (pytester.path / "mykernel.py").write_text(kernel(2))  # the change to accept
    result = accept(pytester)
    assert result.ret in (0, EXIT_GATE_BREACHED), result.stdout.str()
    assert "edited meanwhile" in (pytester.path / "mykernel.py").read_text()
    accepted = git(pytester.path, "show", "refs/rtgov/accepted:mykernel.py")
    assert "n * 2" in accepted and "edited meanwhile" not in accepted
