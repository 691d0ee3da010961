"""What a baseline update accepts (core/acceptance.py), and how it records the accepted
code (store/ab_ref.accept_code) without touching the user's branch, index or stash."""

from __future__ import annotations

import pytest

from pytest_rtgov.core.acceptance import acceptance_notes, judge_breaches, settle
from pytest_rtgov.core.gates_config import Gate, GatesConfig
from pytest_rtgov.core.verdict import GateResult, Verdict
from pytest_rtgov.store.ab_ref import ACCEPTED_REF, AbChoice, accept_code, resolve_ab_ref
from tests._git import git

GATES = GatesConfig(
    "gates.toml",
    (
        Gate(name="size", metric="mib", maximum=10, max_regression_pct=5),
        Gate(name="acc", metric="acc", max_regression_pct=1),
        Gate(name="digest", metric="weights", exact=True),
        Gate(name="time", metric="cpu_time", max_regression_pct=10, ab=True),
        Gate(name="floor", metric="acc", minimum=0.5),
    ),
)


def breach(gate: str, metric: str, **fields) -> GateResult:
    return GateResult(gate, "t.py::t", metric, fields.pop("status", "breach"), "r", **fields)


@pytest.mark.parametrize(
    ("result", "kind", "accepted"),
    [
        (breach("acc", "acc", baseline=0.9, current=0.8, relative=0.11), "regression", True),
        (breach("digest", "weights", baseline="sha256:a", current="sha256:b"), "regression", True),
        (breach("size", "mib", baseline=5.0, current=20.0, relative=3.0), "budget breach", False),
        # the reason says it where the reported value is another one (a recorded metric)
        (breach("floor", "acc", current=0.9, reason="0.4 < min 0.5"), "budget breach", False),
        (breach("time", "cpu_time", baseline=1.0, current=6.0), "A/B regression", True),
        (breach("acc", "acc", status="missing"), "missing metric", False),
        (breach("acc", "acc", reason="'acc' declares no direction"), "breach", False),
    ],
)
def test_each_breach_is_judged_by_what_the_next_run_will_do(result, kind, accepted):
    (judged,) = judge_breaches([result], GATES, ab_follows=True)
    assert (judged.kind, judged.accepted) == (kind, accepted)


def test_an_ab_regression_is_not_accepted_when_the_reference_does_not_follow():
    result = breach("time", "cpu_time", baseline=1.0, current=6.0, relative=5.0)
    (judged,) = judge_breaches([result], GATES, ab_follows=False)
    assert not judged.accepted
    (note,) = acceptance_notes([judged], ab_why_not="ab_ref = 'HEAD'")
    assert note == "not accepted: 1 A/B regression (time: t.py::t cpu_time +500.0% (worse)): " + (
        "ab_ref = 'HEAD'"
    )


def test_the_verdict_stays_breached_only_for_what_was_not_accepted():
    regression = breach("acc", "acc", baseline=0.9, current=0.8, relative=0.11)
    budget = breach("size", "mib", baseline=5.0, current=20.0)
    updated = Verdict("passed", 0, (regression, budget), (), "updated")
    judged = judge_breaches([regression, budget], GATES, ab_follows=True)
    settled = settle(updated, judged)
    assert (settled.status, settled.exit_status, settled.baseline_action) == (
        "breached",
        6,
        "updated",
    )
    assert settled.accepted == 1 and settled.to_dict()["accepted"] == 1
    assert Verdict.from_dict(settled.to_dict(), settled.gate_results()) == settled
    both = settle(updated, judged[:1])
    assert (both.status, both.exit_status, both.accepted) == ("passed", 0, 1)
    notes = acceptance_notes(judged)
    assert notes[0].startswith("accepted: 1 regression (acc: t.py::t acc -11.0% (worse))")
    assert notes[1].startswith("not accepted: 1 budget breach (size: t.py::t mib r, current 20)")
    assert "change gates.toml" in notes[1]
    assert "accepted" not in Verdict("passed", 0).to_dict()  # only an update says it


def test_the_choice_knows_whether_it_follows_acceptance(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("a\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "base")
    assert resolve_ab_ref(tmp_path, "accepted", {}).follows_acceptance
    assert not resolve_ab_ref(tmp_path, "merge-base", {}).follows_acceptance
    assert not resolve_ab_ref(tmp_path, "HEAD", {}).follows_acceptance
    assert AbChoice(ACCEPTED_REF, "given", asked=ACCEPTED_REF).follows_acceptance


def test_accepting_records_tracked_changes_and_touches_nothing_else(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-identity"))  # as on CI
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("a\n")
    (tmp_path / "b.py").write_text("b\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "base")
    head = git(tmp_path, "rev-parse", "HEAD")
    assert accept_code(tmp_path) == head  # a clean tree: HEAD is the code

    (tmp_path / "a.py").write_text("a2\n")  # unstaged
    (tmp_path / "b.py").write_text("b2\n")
    git(tmp_path, "add", "b.py")  # staged
    (tmp_path / "new.py").write_text("untracked\n")
    index = (tmp_path / ".git" / "index").read_bytes()
    sha = accept_code(tmp_path)
    assert git(tmp_path, "rev-parse", ACCEPTED_REF) == sha != head
    assert git(tmp_path, "rev-parse", f"{sha}^") == head
    assert git(tmp_path, "show", f"{sha}:a.py") == "a2"
    assert git(tmp_path, "show", f"{sha}:b.py") == "b2"
    assert "new.py" not in git(tmp_path, "ls-tree", "--name-only", sha).split()
    assert git(tmp_path, "rev-parse", "HEAD") == head
    assert (tmp_path / ".git" / "index").read_bytes() == index
    assert git(tmp_path, "stash", "list") == ""
    status = git(tmp_path, "status", "--porcelain").splitlines()
    assert sorted(status) == sorted(["M a.py", "M  b.py", "?? new.py"])  # first line stripped
    # committing the accepted code changes nothing: the same tree
    git(tmp_path, "commit", "-q", "-am", "accepted")
    tree = git(tmp_path, "rev-parse", f"{sha}^{{tree}}")
    assert git(tmp_path, "rev-parse", "HEAD^{tree}") == tree
