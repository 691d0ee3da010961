"""``rtgov replay``, end to end as a user meets it: a session recorded with
``--rtgov``, replayed at its code and environment, each checkpoint compared.

The project's test perturbs its array by whole ULPs when ``DEMO_FAULT`` (``index:ulps``)
is set: the replay passes the caller's environment through (only determinism-relevant
variables are restored), so a fault set for the replay alone is a divergence the replay
must name exactly.
"""

from __future__ import annotations

import json

import pytest

from tests._git import git
from tests.plugin._cli import cli

TEST = '''
import os

import numpy as np


def _fault(a):
    spec = os.environ.get("DEMO_FAULT")
    if spec:
        index, ulps = (int(v) for v in spec.split(":"))
        flat = a.reshape(-1)
        for _ in range(ulps):
            flat[index] = np.nextafter(flat[index], np.float32(np.inf))
    return a


def test_forward(rtgov):
    x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    hidden = _fault(np.tanh(x))
    rtgov.checkpoint("hidden", hidden, keep=True)
    rtgov.checkpoint("out", hidden.sum(axis=1), keep=True)
    rtgov.record_digest("hidden_digest", hidden)


def test_other(rtgov):
    rtgov.checkpoint("ones", np.ones(3), keep=True)
'''


@pytest.fixture
def project(pytester, monkeypatch):
    monkeypatch.delenv("DEMO_FAULT", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    pytester.makepyfile(test_demo=TEST)
    result = pytester.runpytest("--rtgov", "-p", "no:cacheprovider", "-p", "no:randomly")
    assert result.ret == 0, result.stdout.str()
    return pytester


def _ledger_leaves(pytester, kind):
    from pytest_rtgov.store.ledger import Ledger

    ledger = Ledger(pytester.path / ".rtgov" / "ledger")
    leaves = [json.loads(f.payload) for f in ledger.frames()]
    return [leaf for leaf in leaves if leaf["kind"] == kind]


def test_a_replay_of_an_unchanged_session_is_identical_and_signed(project, capsys):
    assert cli(project, "replay", "latest") == 0
    out = capsys.readouterr().out
    assert "identical" in out
    (leaf,) = _ledger_leaves(project, "replay")
    assert leaf["outcome"] == "identical"
    assert leaf["first_divergence"] is None
    # every checkpoint of the record was compared: 2 arrays + 1 digest + 1 array
    assert leaf["counts"]["identical"] == 4
    attestation = next((project.path / ".rtgov" / "replays").glob("*/attestation.json"))
    assert cli(project, "verify-proof", str(attestation)) == 0
    assert "RTGOV_REPLAY_IDENTICAL" in capsys.readouterr().out
    assert cli(project, "verify") == 0


@pytest.mark.parametrize("index", [0, 13, 31])
def test_a_one_ulp_fault_is_named_exactly(project, capsys, monkeypatch, index):
    monkeypatch.setenv("DEMO_FAULT", f"{index}:1")
    assert cli(project, "replay", "latest") == 6
    out = capsys.readouterr().out
    (leaf,) = _ledger_leaves(project, "replay")
    first = leaf["first_divergence"]
    assert leaf["outcome"] == "diverged"
    assert first["owner"] == "test_demo.py::test_forward"
    assert first["checkpoint"] == "hidden"
    assert first["index"] == index
    assert first["ulp"] == 1
    assert first["mismatches"] == 1
    assert list(first["position"]) == [index // 8, index % 8]
    assert "hidden" in out.split("downstream")[0]
    # what the fault changed later is downstream, never first
    assert {d["checkpoint"] for d in leaf["downstream"]} <= {"out", "hidden_digest"}


@pytest.mark.parametrize(("ulps", "outcome", "code"), [(1, "within_tolerance", 0),
                                                       (3, "diverged", 6)])
def test_max_ulp_2_takes_one_ulp_and_not_three(pytester, monkeypatch, capsys, ulps, outcome,
                                                code):
    monkeypatch.delenv("DEMO_FAULT", raising=False)
    monkeypatch.delenv("CI", raising=False)
    no_digest = TEST.replace('    rtgov.record_digest("hidden_digest", hidden)\n', "")
    pytester.makepyfile(test_demo=no_digest)
    assert pytester.runpytest("--rtgov", "-p", "no:cacheprovider").ret == 0
    (pytester.path / "gates.toml").write_text(
        '[[replay]]\ncheckpoint = "hidden"\nmax_ulp = 2\n\n'
        '[[replay]]\ncheckpoint = "out"\ntests = ["test_demo.py::*"]\nrtol = 1e-5\n'
    )
    monkeypatch.setenv("DEMO_FAULT", f"9:{ulps}")
    assert cli(pytester, "replay", "latest") == code
    (leaf,) = _ledger_leaves(pytester, "replay")
    assert leaf["outcome"] == outcome
    if outcome == "diverged":
        first = leaf["first_divergence"]
        assert (first["checkpoint"], first["index"], first["ulp"]) == ("hidden", 9, 3)
    else:
        assert leaf["counts"]["within_tolerance"] >= 1 and leaf["first_divergence"] is None


def test_a_changed_thread_count_is_not_comparable_and_named(project, capsys):
    assert cli(project, "replay", "latest", "--env", "OPENBLAS_NUM_THREADS=2") == 8
    out = capsys.readouterr().out
    assert "not comparable" in out
    assert "env.OPENBLAS_NUM_THREADS" in out
    assert _ledger_leaves(project, "replay")[-1]["outcome"] == "not_comparable"


def test_an_edited_record_is_refused_and_nothing_is_appended(project, capsys):
    runs = project.path / ".rtgov" / "runs"
    (record,) = runs.glob("*.json")
    data = json.loads(record.read_text())
    data["tests"][0]["outcome"] = "passed" if data["tests"][0]["outcome"] != "passed" else "failed"
    record.write_text(json.dumps(data))
    before = (project.path / ".rtgov" / "ledger" / "log").read_bytes()
    assert cli(project, "replay", "latest") == 5
    assert "refused" in capsys.readouterr().err
    assert (project.path / ".rtgov" / "ledger" / "log").read_bytes() == before


def test_an_unknown_run_is_exit_3(project, capsys):
    assert cli(project, "replay", "no-such-run") == 3


def test_a_rule_that_selects_nothing_or_a_negative_bound_is_exit_4(project, capsys):
    gates = project.path / "gates.toml"
    gates.write_text('[[replay]]\ncheckpoint = "nothing_like_this"\nmax_ulp = 1\n')
    assert cli(project, "replay", "latest") == 4
    assert "selects none of the run's 4 checkpoints" in capsys.readouterr().err
    gates.write_text('[[replay]]\ncheckpoint = "hidden"\nmax_ulp = -1\n')
    assert cli(project, "replay", "latest") == 4
    err = capsys.readouterr().err
    assert "gates.toml" in err and "max_ulp" in err


def test_replay_checks_out_the_recorded_commit(pytester, monkeypatch, capsys):
    monkeypatch.delenv("DEMO_FAULT", raising=False)
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(test_demo=TEST)
    (pytester.path / ".gitignore").write_text(".rtgov/\n__pycache__/\n")
    git(pytester.path, "init", "-q")
    git(pytester.path, "add", "-A")
    git(pytester.path, "commit", "-q", "-m", "recorded")
    assert pytester.runpytest("--rtgov", "-p", "no:cacheprovider").ret == 0
    # the code changes after the record: a replay runs the recorded commit, not this
    (pytester.path / "test_demo.py").write_text(TEST.replace("np.tanh(x)", "np.tanh(x) * 2"))
    git(pytester.path, "commit", "-q", "-am", "changed")
    assert cli(pytester, "replay", "latest") == 0
    out = capsys.readouterr().out
    assert "checked out in a temporary worktree" in out
    assert git(pytester.path, "worktree", "list").count("\n") == 0  # removed afterwards
    # uncommitted changes that are gone: refused
    data_dirty = pytester.path / "test_demo.py"
    data_dirty.write_text(TEST + "\n# local edit\n")
    assert pytester.runpytest("--rtgov", "-p", "no:cacheprovider").ret == 0
    git(pytester.path, "checkout", "--", "test_demo.py")
    assert cli(pytester, "replay", "latest") == 5
    assert "uncommitted changes" in capsys.readouterr().err


def test_a_session_of_two_xdist_workers_replays_identical(pytester, monkeypatch, capsys):
    monkeypatch.delenv("DEMO_FAULT", raising=False)
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(test_demo=TEST)
    result = pytester.runpytest_subprocess("--rtgov", "-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert cli(pytester, "replay", "latest") == 0
    (leaf,) = _ledger_leaves(pytester, "replay")
    assert leaf["outcome"] == "identical" and leaf["counts"]["identical"] == 4


def test_selection_by_test_and_a_test_never_recorded(project, capsys, monkeypatch):
    assert cli(project, "replay", "latest", "--test", "test_demo.py::test_other") == 0
    (leaf,) = _ledger_leaves(project, "replay")
    # only the selected test ran: its one checkpoint compared, the others not counted
    assert leaf["counts"]["identical"] == 1 and leaf["counts"]["not_reproduced"] == 0
    assert cli(project, "replay", "latest", "--test", "test_demo.py::test_nope") == 3
    assert "recorded no test" in capsys.readouterr().err
    monkeypatch.setenv("DEMO_FAULT", "2:1")
    assert cli(project, "replay", "latest", "-k", "other") == 0  # the fault is not in it


def test_a_bad_env_argument_is_a_usage_error(project, capsys):
    assert cli(project, "replay", "latest", "--env", "NO_EQUALS_SIGN") == 2
    assert "--env 'NO_EQUALS_SIGN': expected NAME=VALUE" in capsys.readouterr().err


def test_an_attestation_that_was_altered_or_names_another_leaf_fails(project, capsys):
    assert cli(project, "replay", "latest") == 0
    path = next((project.path / ".rtgov" / "replays").glob("*/attestation.json"))
    bundle = json.loads(path.read_text())
    # the proof of another leaf (the run header, leaf 1) beside this envelope
    other = project.path / "other-proof.json"
    assert cli(project, "prove", "--index", "1", "-o", str(other)) == 0
    swapped = {**bundle, "input_proof": json.loads(other.read_text())}
    (project.path / "swapped.json").write_text(json.dumps(swapped))
    capsys.readouterr()
    assert cli(project, "verify-proof", "swapped.json") == 16
    assert "not a verdict leaf" in capsys.readouterr().err
    # a changed payload no longer matches its signature
    import base64

    statement = json.loads(base64.b64decode(bundle["envelope"]["payload"]))
    statement["predicate"]["verificationResult"] = "FAILED"
    envelope = {**bundle["envelope"], "payload": base64.b64encode(
        json.dumps(statement).encode()).decode()}  # fmt: skip
    (project.path / "altered.json").write_text(json.dumps({**bundle, "envelope": envelope}))
    assert cli(project, "verify-proof", "altered.json") == 16
    assert "does not verify" in capsys.readouterr().err


def test_a_recorded_commit_missing_from_the_repository_is_refused(pytester, monkeypatch, capsys):
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(test_demo=TEST)
    (pytester.path / ".gitignore").write_text(".rtgov/\n__pycache__/\n")
    git(pytester.path, "init", "-q", "-b", "main")
    git(pytester.path, "add", "-A")
    git(pytester.path, "commit", "-q", "-m", "recorded")
    recorded = git(pytester.path, "rev-parse", "HEAD")
    assert pytester.runpytest("--rtgov", "-p", "no:cacheprovider").ret == 0
    # history rewritten: the recorded commit is gone from the repository
    git(pytester.path, "checkout", "-q", "--orphan", "rewritten")
    git(pytester.path, "commit", "-q", "-m", "rewritten")
    git(pytester.path, "branch", "-q", "-D", "main")
    git(pytester.path, "reflog", "expire", "--expire=now", "--all")
    git(pytester.path, "gc", "-q", "--prune=now")
    capsys.readouterr()
    assert cli(pytester, "replay", "latest") == 5
    err = capsys.readouterr().err
    assert f"recorded on commit {recorded}, which is not in the repository" in err


def test_replay_of_one_stage_recomputes_it_and_a_changed_stage_diverges(
    pytester, monkeypatch, capsys
):
    from tests.plugin._stage_project import edit, write_project

    monkeypatch.delenv("CI", raising=False)
    write_project(pytester)
    assert pytester.runpytest("--rtgov", "-p", "no:cacheprovider").ret == 0
    assert pytester.runpytest("--rtgov", "-p", "no:cacheprovider").ret == 0  # all hits
    assert cli(pytester, "replay", "latest", "--stage", "pretrain") == 0
    out = capsys.readouterr().out
    assert "--stage pretrain (via test_model.py::test_model)" in out
    (leaf,) = _ledger_leaves(pytester, "replay")
    assert leaf["outcome"] == "identical" and leaf["counts"]["identical"] >= 4
    # a stage whose code now computes something else: the replay recomputes it (the
    # cache is off), and its output is the first divergence, named with its element
    edit(pytester, "helpers.py", "np.tanh(x * 2.0)", "np.tanh(x * 2.0) + 1e-7")
    assert cli(pytester, "replay", "latest", "--stage", "pretrain") == 6
    first = _ledger_leaves(pytester, "replay")[-1]["first_divergence"]
    assert first["role"] == "stage" and first["owner"] == "pretrain", first
    assert first["index"] is not None and first["ulp"] >= 1


def test_allow_env_drift_replays_and_names_the_drift_beside_the_divergence(
    project, capsys, monkeypatch
):
    monkeypatch.setenv("DEMO_FAULT", "3:1")
    code = cli(project, "replay", "latest", "--env", "OPENBLAS_NUM_THREADS=2",
               "--allow-env-drift")  # fmt: skip
    assert code == 6
    out = capsys.readouterr().out
    leaf = _ledger_leaves(project, "replay")[-1]
    assert leaf["outcome"] == "diverged" and leaf["first_divergence"]["index"] == 3
    assert [d["field"] for d in leaf["drift"]] == ["env.OPENBLAS_NUM_THREADS"]
    assert out.index("first divergence") < out.index("env.OPENBLAS_NUM_THREADS")


def test_a_replay_past_its_timeout_is_stopped_with_a_message(project, capsys):
    before = (project.path / ".rtgov" / "ledger" / "log").read_bytes()
    # no git here: the replay runs the files as they are, and the recorded test now sleeps
    slow = "def test_other(rtgov):\n    __import__('time').sleep(30)"
    (project.path / "test_demo.py").write_text(TEST.replace("def test_other(rtgov):", slow))
    assert cli(project, "replay", "latest", "--timeout", "3") == 4
    assert "did not finish within --timeout 3 s" in capsys.readouterr().err
    assert (project.path / ".rtgov" / "ledger" / "log").read_bytes() == before
