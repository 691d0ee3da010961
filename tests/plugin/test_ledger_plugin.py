"""The ledger end to end: sessions append and sign; the CLI verifies, proves, refuses."""

from __future__ import annotations

import base64
import json

import pytest

from pytest_rtgov.core.constants import EXIT_INTEGRITY
from pytest_rtgov.store.ledger import Ledger
from pytest_rtgov.store.verify import EXIT_FRAME, EXIT_HISTORY, EXIT_LEAF, EXIT_SEAL
from tests.plugin._cli import cli

SUITE = """
import numpy as np
import pytest

@pytest.fixture(scope="session")
def model(rtgov):
    weights = {"w": np.arange(12, dtype=np.float32).reshape(3, 4)}
    rtgov.save_artifact("model", weights)
    return weights

@pytest.mark.rtgov(rounds=3)
def test_kernel():
    np.ones(1 << 14).sum()

def test_accuracy(rtgov):
    rtgov.record("val_accuracy", 0.95, higher_is_better=True)

def test_artifact(model, rtgov):
    loaded = rtgov.load_artifact("model")
    np.testing.assert_array_equal(loaded["w"], model["w"])
"""

GATES = """
[defaults]
baseline = "baseline"

[[gates]]
name = "accuracy"
metric = "val_accuracy"
tests = ["test_suite.py::*"]
min = 0.9
"""


@pytest.fixture
def suite(pytester):
    pytester.makepyfile(test_suite=SUITE)
    pytester.makefile(".toml", gates=GATES)
    return pytester



def test_every_session_appends_and_verify_passes(suite, capsys):
    suite.runpytest("--rtgov", "-p", "no:randomly").assert_outcomes(passed=3)
    result = suite.runpytest("--rtgov-gate", "-n", "2")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["rtgov: ledger * leaves, root *, checkpoint * signed by *"])
    ledger = Ledger(suite.path / ".rtgov" / "ledger")
    assert len(ledger.checkpoint_paths()) == 2
    kinds = [json.loads(f.payload)["kind"] for f in ledger.frames()]
    assert kinds[0] == "ledger"
    assert kinds.count("run") == kinds.count("verdict") == 2
    assert "baseline_refresh" in kinds  # the first gated run created and signed a baseline
    capsys.readouterr()
    assert cli(suite, "verify") == 0
    out = capsys.readouterr().out
    assert "ledger intact" in out
    assert "2 run record file(s) match the ledger" in out


def test_xdist_and_serial_sessions_append_the_same_leaves(suite):
    suite.runpytest("--rtgov", "--rtgov-dir", "serial").assert_outcomes(passed=3)
    suite.runpytest("--rtgov", "--rtgov-dir", "par", "-n", "2").assert_outcomes(passed=3)

    def shape(state: str) -> list[tuple[str, str]]:
        rows = []
        for frame in Ledger(suite.path / state / "ledger").frames():
            leaf = json.loads(frame.payload)
            rows.append((leaf["kind"], leaf.get("nodeid") or leaf.get("name") or ""))
        return rows

    assert shape("serial") == shape("par")


def test_proof_of_a_test_record_verifies_offline_and_fails_when_altered(suite, capsys):
    suite.runpytest("--rtgov").assert_outcomes(passed=3)
    proof = suite.path / "proof.json"
    assert cli(suite, "prove", "--test", "test_suite.py::test_accuracy", "-o", str(proof)) == 0
    capsys.readouterr()
    assert cli(suite, "verify-proof", str(proof)) == 0
    assert '"nodeid":"test_suite.py::test_accuracy"' in capsys.readouterr().out
    doc = json.loads(proof.read_text())
    leaf = json.loads(base64.b64decode(doc["leaf"]))
    leaf["metrics"][0]["value"] = 0.99
    from pytest_rtgov.core.canonical import canonical_json

    doc["leaf"] = base64.b64encode(canonical_json(leaf)).decode()
    proof.write_text(json.dumps(doc))
    assert cli(suite, "verify-proof", str(proof)) == 16


def test_flipping_a_byte_of_the_ledger_fails_verify_naming_the_frame(suite, capsys):
    suite.runpytest("--rtgov").assert_outcomes(passed=3)
    log = suite.path / ".rtgov" / "ledger" / "log"
    raw = bytearray(log.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    log.write_bytes(bytes(raw))
    assert cli(suite, "verify") == EXIT_FRAME
    assert "frame" in capsys.readouterr().err


def test_an_edited_run_record_file_fails_verify(suite, capsys):
    suite.runpytest("--rtgov").assert_outcomes(passed=3)
    state = suite.path / ".rtgov"
    path = state / "runs" / f"{(state / 'latest').read_text().strip()}.json"
    path.write_text(path.read_text().replace('"passed"', '"failed"', 1))
    assert cli(suite, "verify") == EXIT_LEAF
    assert "the file was edited" in capsys.readouterr().err


def test_a_tampered_artifact_is_refused_on_load_and_by_verify(suite, capsys):
    suite.makeconftest(
        """
import pytest
from pathlib import Path

@pytest.fixture(scope="session", autouse=True)
def tamper(model, rtgov):
    path = rtgov._artifacts().path_for("model")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
"""
    )
    result = suite.runpytest("--rtgov")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*SealError*model.npz: sha256 does not match*"])
    capsys.readouterr()
    assert cli(suite, "verify") == EXIT_SEAL


def test_ci_refuses_a_signing_key_outside_the_keyring(suite, monkeypatch):
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest("--rtgov")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*signing key rtgov-local-untrusted-* is not in the keyring*"])


def test_ci_accepts_a_keyring_key_from_the_environment(suite, monkeypatch, capsys):
    assert cli(suite, "keys", "generate", "ci.example/gates", "--out", "ci.key") == 0
    assert oct((suite.path / "ci.key").stat().st_mode & 0o777) == "0o600"
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("RTGOV_SIGNING_KEY", (suite.path / "ci.key").read_text())
    suite.runpytest("--rtgov-gate").assert_outcomes(passed=3)
    capsys.readouterr()
    assert cli(suite, "verify") == 0
    assert "signed by ci.example/gates" in capsys.readouterr().out


def test_a_recording_session_runs_its_tests_without_cryptography_loaded(pytester, capsys):
    """Keys are checked before the tests but loaded after them: memray's cost per
    capture grows with every native library loaded (docs/benchmarks.md)."""
    pytester.makepyfile(
        """
        import sys

        def test_nothing_loaded():
            assert "cryptography" not in sys.modules
        """
    )
    for _ in range(2):  # the first session creates the local key, the second reads it
        result = pytester.runpytest_subprocess("--rtgov", "-p", "no:cacheprovider")
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(["*rtgov: ledger * checkpoint * signed by rtgov-local-*"])
    capsys.readouterr()
    assert cli(pytester, "verify") == 0


def test_ci_refuses_at_the_end_a_key_whose_seed_does_not_match_its_id(suite, monkeypatch):
    """Name and key id are checked before the tests without cryptography; a key file
    whose secret was swapped under the same name and id is refused when it would sign."""
    assert cli(suite, "keys", "generate", "ci.example/gates", "--out", "ci.key") == 0
    assert cli(suite, "keys", "generate", "other.example/x", "--out", "other.key") == 0
    # PRIVATE+KEY+<name>+<key id>+<base64 seed>: the seed's base64 may hold "+" too.
    head = (suite.path / "ci.key").read_text().split("+", 4)[:4]
    seed = (suite.path / "other.key").read_text().split("+", 4)[4]
    (suite.path / "forged.key").write_text("+".join([*head, seed]))
    (suite.path / "forged.key").chmod(0o600)  # a key others can read is refused earlier
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("RTGOV_SIGNING_KEY", str(suite.path / "forged.key"))
    result = suite.runpytest("--rtgov")
    # The suite's model fixture signs its artifact during the tests: the first use.
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*forged.key*key id for 'ci.example/gates' is *"])
    assert result.ret == EXIT_INTEGRITY
    result.stderr.fnmatch_lines(["*ledger not appended*key id*"])
    assert not (suite.path / ".rtgov" / "ledger" / "checkpoints").exists()


def test_an_edited_baseline_warns_locally_and_fails_in_ci(suite, monkeypatch):
    suite.runpytest("--rtgov-gate").assert_outcomes(passed=3)  # creates the signed baseline
    metrics = suite.path / "baseline" / "metrics.json"
    metrics.write_text(metrics.read_text().replace("0.95", "0.5"))
    local = suite.runpytest("--rtgov-gate")
    local.assert_outcomes(passed=3)
    local.stdout.fnmatch_lines(["*WARNING: baseline signature:*metrics.json: sha256*"])

    assert cli(suite, "keys", "generate", "ci.example/gates", "--out", "ci.key") == 0
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("RTGOV_SIGNING_KEY", str(suite.path / "ci.key"))
    in_ci = suite.runpytest("--rtgov-gate")
    assert in_ci.ret == EXIT_INTEGRITY
    in_ci.stdout.fnmatch_lines(["*baseline signature:*refusing to gate against it*"])


def test_a_corrupt_ledger_fails_the_session_but_keeps_the_run_record(suite):
    suite.runpytest("--rtgov").assert_outcomes(passed=3)
    log = suite.path / ".rtgov" / "ledger" / "log"
    raw = bytearray(log.read_bytes())
    raw[20] ^= 0x40
    log.write_bytes(bytes(raw))
    result = suite.runpytest("--rtgov")
    assert result.ret == EXIT_INTEGRITY
    result.stderr.fnmatch_lines(["pytest-rtgov: ledger not appended: *", "*run record is kept*"])
    assert len(list((suite.path / ".rtgov" / "runs").glob("*.json"))) == 2
    assert log.read_bytes() == bytes(raw)  # not repaired


def test_a_gated_summary_states_the_exit_status_the_ledger_failure_set(suite):
    """The gates passed, the ledger append failed: the last line a CI log reader sees
    must say 7, as the process exits, not the gates' 0."""
    assert suite.runpytest("--rtgov-gate").ret == 0
    log = suite.path / ".rtgov" / "ledger" / "log"
    raw = bytearray(log.read_bytes())
    raw[20] ^= 0x40
    log.write_bytes(bytes(raw))
    result = suite.runpytest("--rtgov-gate")
    assert result.ret == EXIT_INTEGRITY
    result.stdout.fnmatch_lines(["rtgov gate: ERROR (*) exit status 7"])
    assert "exit status 0" not in result.stdout.str()


def _corrupt(log):
    raw = bytearray(log.read_bytes())
    raw[20] ^= 0x40
    log.write_bytes(bytes(raw))


def test_a_ledger_that_cannot_be_opened_is_decided_before_the_record_is_written(
    suite, read_latest
):
    """The exit status a ledger failure sets (7) is the record's too, gated or not."""
    assert suite.runpytest("--rtgov-gate").ret == 0
    _corrupt(suite.path / ".rtgov" / "ledger" / "log")
    gated = suite.runpytest("--rtgov-gate")
    assert gated.ret == EXIT_INTEGRITY
    record = read_latest(suite.path)
    assert record["exit_status"] == EXIT_INTEGRITY
    assert record["verdict"]["status"] == "error"
    assert record["verdict"]["exit_status"] == EXIT_INTEGRITY
    assert any("ledger not appended" in note for note in record["verdict"]["notes"])
    assert suite.runpytest("--rtgov").ret == EXIT_INTEGRITY
    assert read_latest(suite.path)["exit_status"] == EXIT_INTEGRITY


FAILING_CHECKPOINT = """
import pytest
from pytest_rtgov.store.ledger import LedgerAppender

_saved = LedgerAppender.write_checkpoint

def _full_disk(self, note):
    raise OSError(28, "No space left on device")

def pytest_configure(config):
    LedgerAppender.write_checkpoint = _full_disk

def pytest_unconfigure(config):
    LedgerAppender.write_checkpoint = _saved
"""


def test_an_append_that_fails_after_the_record_was_written_rewrites_the_record(
    suite, read_latest
):
    """The record was written under the ledger's lock (exit 0); the checkpoint then
    fails: the record is rewritten with exit 7 and the reason before the session ends."""
    suite.makeconftest(FAILING_CHECKPOINT)
    result = suite.runpytest("--rtgov-gate")
    assert result.ret == EXIT_INTEGRITY
    result.stderr.fnmatch_lines(["*ledger not appended: *No space left*", "*rewritten*"])
    record = read_latest(suite.path)
    assert record["exit_status"] == EXIT_INTEGRITY
    assert record["verdict"]["status"] == "error"
    assert any("No space left" in note for note in record["verdict"]["notes"])
    result.stdout.fnmatch_lines(["rtgov gate: ERROR (*) exit status 7"])
    # Its leaves (with the verdict it no longer has) were cut from the log, under the
    # lock: no later writer signs them. The genesis leaf, valid, stays.
    log = (suite.path / ".rtgov" / "ledger" / "log").read_bytes()
    assert record["run_id"].encode() not in log and b'"kind":"ledger"' in log


def test_a_ledger_rewritten_and_resigned_is_caught_by_the_committed_checkpoint(suite, capsys):
    suite.runpytest("--rtgov").assert_outcomes(passed=3)
    ledger_dir = suite.path / ".rtgov" / "ledger"
    checkpoint = sorted((ledger_dir / "checkpoints").glob("*.txt"))[-1]
    (suite.path / "rtgov.checkpoint").write_bytes(checkpoint.read_bytes())  # committed
    capsys.readouterr()
    assert cli(suite, "verify") == 0
    assert "is a prefix" in capsys.readouterr().out
    # Someone with the same key throws the history away and records a fresh one.
    import shutil

    shutil.rmtree(ledger_dir)
    suite.runpytest("--rtgov").assert_outcomes(passed=3)
    suite.runpytest("--rtgov").assert_outcomes(passed=3)
    assert cli(suite, "verify", "--gates", "none.toml") == EXIT_HISTORY
    assert "trusted checkpoint" in capsys.readouterr().err


def test_fsync_per_record_and_no_report_still_verify(suite, capsys):
    result = suite.runpytest("--rtgov", "--rtgov-ledger-fsync", "record", "--rtgov-report", "off")
    result.assert_outcomes(passed=3)
    assert not (suite.path / ".rtgov" / "report.html").exists()
    capsys.readouterr()
    assert cli(suite, "verify") == 0
