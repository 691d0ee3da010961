"""``rtgov audit`` (issue 16, 6): every gated verdict in the ledger re-derives from the
ledger's own content, and a verdict or gate leaf re-signed with another outcome by
someone holding the key is caught, though ``rtgov verify`` passes on it.

One history in one state directory: a first session that creates the baseline, a
passing one, a breach (the accuracy made worse), a refresh (``--rtgov-update-baseline
--rtgov-reason``) and an unconfirmed A/B result. The accuracy is a recorded metric:
exact, no timing. The A/B kernel does six times the work for its first 12 calls in the
last session (2 warm-up and the 10 pairs of the only look), then the same work as the
committed code: the 10 re-measured pairs do not confirm the breach (+500% against a
+150% allowance either way, on CPU time: no load turns one into the other).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from pytest_rtgov.core.constants import EXIT_GATE_BREACHED, EXIT_INTEGRITY
from pytest_rtgov.logs import LOGGER_NAME
from tests._git import git
from tests.plugin._cli import cli

SUITE = """
from pathlib import Path

def test_accuracy(rtgov):
    rtgov.record("val_accuracy", float(Path("acc.txt").read_text()), higher_is_better=True)
"""

KERNEL = """
CALLS = [0]

def work(n):
    CALLS[0] += 1
    factor = FACTOR if CALLS[0] <= 12 else 1
    total = 0
    for i in range(n * factor):
        total += i * i
    return total
"""

AB_TEST = """
from mykernel import work

def test_work():
    work(20000)
"""

GATES = """
[defaults]
baseline = "baseline"
ab_pairs = 10
ab_max_pairs = 10
confirm = 1

[[gates]]
name = "accuracy"
metric = "val_accuracy"
tests = ["test_suite.py::*"]
max_regression_pct = 1

[[gates]]
name = "kernel time"
metric = "cpu_time"
tests = ["test_ab.py::*"]
max_regression_pct = 150
ab = true
"""


@pytest.fixture(autouse=True)
def _own_log_handlers():
    logger = logging.getLogger(LOGGER_NAME)
    handlers = list(logger.handlers)
    yield
    logger.handlers[:] = handlers


def gated(pytester, *args):
    return pytester.runpytest_subprocess(
        "--rtgov-gate", "--rtgov-report=off", "-p", "no:cacheprovider", *args
    )


def latest(pytester) -> dict:
    base = pytester.path / ".rtgov"
    run_id = (base / "latest").read_text().strip()
    return json.loads((base / "runs" / f"{run_id}.json").read_text())


@pytest.fixture
def history(pytester):
    pytester.makepyfile(test_suite=SUITE, test_ab=AB_TEST, mykernel=KERNEL.replace("FACTOR", "1"))
    pytester.makefile(".toml", gates=GATES)
    pytester.path.joinpath(".gitignore").write_text(".rtgov/\n__pycache__/\nacc.txt\n")
    pytester.syspathinsert()
    git(pytester.path, "init", "-q")
    git(pytester.path, "add", ".")
    git(pytester.path, "commit", "-q", "-m", "base")
    acc = pytester.path / "acc.txt"
    runs = {}
    for name, accuracy, args, expected in (
        ("created", "0.95", (), 0),
        ("passed", "0.95", (), 0),
        ("breached", "0.90", (), EXIT_GATE_BREACHED),
        ("refresh", "0.90", ("--rtgov-update-baseline", "--rtgov-reason=accept 0.90"), 0),
    ):
        acc.write_text(accuracy)
        result = gated(pytester, *args)
        assert result.ret == expected, (name, result.stdout.str()[-3000:])
        runs[name] = latest(pytester)
    pytester.makepyfile(mykernel=KERNEL.replace("FACTOR", "6"))
    result = gated(pytester)
    assert result.ret == 0, result.stdout.str()[-3000:]
    runs["unconfirmed"] = latest(pytester)
    return pytester, runs


def test_every_gated_verdict_of_the_history_re_derives(history, capsys):
    pytester, runs = history
    assert runs["created"]["verdict"]["baseline_action"] == "created"
    assert runs["breached"]["verdict"]["status"] == "breached"
    assert runs["refresh"]["verdict"]["baseline_action"] == "updated"
    statuses = {g["gate"]: g["status"] for g in runs["unconfirmed"]["gate_results"]}
    assert statuses == {"accuracy": "pass", "kernel time": "unconfirmed"}
    for record in runs.values():
        assert set(record["inputs"]) == {"gates", "baseline"}
    assert runs["created"]["inputs"]["baseline"] != runs["passed"]["inputs"]["baseline"]
    capsys.readouterr()
    assert cli(pytester, "audit") == 0
    out = capsys.readouterr().out
    for record in runs.values():
        assert f"  {record['run_id']} (verdict leaf " in out
    assert out.count(": re-derived: ") == 5
    assert "rtgov audit: OK: 5 gated runs, 5 re-derived, 0 not re-derived" in out
    assert "re-derived: breached (exit 6)" in out


def _rewrite(path: Path, run_id: str, edit) -> None:
    """Someone holding the key rewrites the log: the run's record edited, its leaves
    made again from it, the log rebuilt from the leaves and signed anew."""
    from pytest_rtgov.core.checkpoints import Checkpoint, format_checkpoint
    from pytest_rtgov.core.ledger_records import parse_leaf, run_leaves
    from pytest_rtgov.core.merkle import MerkleAccumulator
    from pytest_rtgov.core.notes import sign_note
    from pytest_rtgov.core.records import RunRecord
    from pytest_rtgov.store.keys import load_signing_key
    from pytest_rtgov.store.ledger import MAGIC, Ledger, encode_frame

    state = path / ".rtgov"
    record_path = state / "runs" / f"{run_id}.json"
    data = json.loads(record_path.read_bytes())
    edit(data)
    record = RunRecord.from_dict(data)
    encoded = record.canonical_json()
    record_path.write_bytes(encoded)
    ledger = Ledger(state / "ledger")
    payloads = [frame.payload for frame in ledger.frames()]
    mine = [
        i
        for i, p in enumerate(payloads)
        if parse_leaf(p).get("run_id") == run_id
        and parse_leaf(p)["kind"] in ("run", "test", "fixture", "stage", "gate", "verdict")
    ]
    fresh = run_leaves(record, encoded=encoded)
    assert len(mine) == len(fresh)
    for i, leaf in zip(mine, fresh, strict=True):
        payloads[i] = leaf
    ledger.log_path.write_bytes(MAGIC + b"".join(encode_frame(p) for p in payloads))
    tree = MerkleAccumulator()
    for frame in ledger.frames():
        tree.append_leaf_hash(frame.leaf_hash)
    _, old = ledger.latest_checkpoint()
    for checkpoint in ledger.checkpoint_paths():
        checkpoint.unlink()
    signer = load_signing_key(key_file=None, state_dir=state).signer
    body = Checkpoint(origin=old.origin, size=tree.size, root_hash=tree.root())
    text = sign_note(format_checkpoint(body), [signer])
    (ledger.checkpoint_dir / f"{1:010d}.txt").write_text(text, encoding="utf-8")


def test_a_verdict_re_signed_as_passed_verifies_but_does_not_audit(history, capsys):
    pytester, runs = history
    run_id = runs["breached"]["run_id"]

    def passed(data: dict) -> None:
        data["verdict"] = {**data["verdict"], "status": "passed", "exit_status": 0}
        data["exit_status"] = 0

    _rewrite(pytester.path, run_id, passed)
    assert cli(pytester, "verify") == 0
    capsys.readouterr()
    assert cli(pytester, "audit") == EXIT_INTEGRITY
    out = capsys.readouterr().out
    assert f"  {run_id} (verdict leaf " in out and "DOES NOT RE-DERIVE" in out
    assert "verdict: status: recorded 'passed', re-derived 'breached'" in out
    assert "verdict: exit_status: recorded 0, re-derived 6" in out
    assert "rtgov audit: FAILED: 5 gated runs, 4 re-derived, 1 not re-derived" in out
    assert cli(pytester, "audit", "--format", "json") == EXIT_INTEGRITY
    document = json.loads(capsys.readouterr().out)
    assert not document["ok"]
    assert document["counts"] == {"re_derived": 4, "differs": 1, "not_auditable": 0}
    (forged,) = [r for r in document["runs"] if r["outcome"] == "differs"]
    assert forged["run_id"] == run_id and forged["verdict"]["status"] == "breached"
    finding = {"place": "verdict", "field": "status", "detail": "recorded 'passed', "
               "re-derived 'breached'"}
    assert finding in forged["findings"]


def test_a_gate_leaf_re_signed_as_passing_names_the_gate(history, capsys):
    pytester, runs = history
    run_id = runs["breached"]["run_id"]

    def gate_passes(data: dict) -> None:
        for result in data["gate_results"]:
            if result["gate"] == "accuracy":
                result["status"] = "pass"

    _rewrite(pytester.path, run_id, gate_passes)
    assert cli(pytester, "verify") == 0
    capsys.readouterr()
    assert cli(pytester, "audit") == EXIT_INTEGRITY
    out = capsys.readouterr().out
    assert "gate 'accuracy' (test_suite.py::test_accuracy, val_accuracy): status: " in out
    assert "recorded 'pass', re-derived 'breach'" in out
    assert "breach: recorded False, re-derived True" in out
