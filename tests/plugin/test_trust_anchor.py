"""Trust anchored outside the repository: keys CI supplies, the local key's public half,
baselines never re-sealed by a session, baselines that may not vanish, and per-machine
measurements kept out of the committed baseline (issue 11, part D)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from pytest_rtgov.cli import main as rtgov_main
from pytest_rtgov.core.constants import EXIT_GATE_BREACHED, EXIT_INTEGRITY
from pytest_rtgov.store.ledger import Ledger
from pytest_rtgov.store.verify import EXIT_CHECKPOINT, EXIT_SEAL
from tests.plugin._cli import cli
from tests.plugin.test_gating import GATES, SUITE

USAGE = pytest.ExitCode.USAGE_ERROR


@pytest.fixture
def suite(pytester, monkeypatch):
    for name in ("RTGOV_TRUSTED_KEYS", "RTGOV_KEYRING_SHA256"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(test_suite=SUITE)
    pytester.makefile(".toml", gates=GATES)
    return pytester



def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def refresh_leaves(root: Path) -> list[dict]:
    leaves = [json.loads(f.payload) for f in Ledger(root / ".rtgov" / "ledger").frames()]
    return [leaf for leaf in leaves if leaf["kind"] == "baseline_refresh"]


def ci_key(suite, name: str = "ci.example/gates", out: str = "ci.key") -> str:
    """A key generated into the keyring; returns its verifier line."""
    assert cli(suite, "keys", "generate", name, "--out", out) == 0
    lines = [ln for ln in (suite.path / "rtgov.keyring").read_text().splitlines() if ln]
    return next(ln for ln in lines if ln.startswith(name + "+"))


def in_ci_with_a_bootstrapped_baseline(suite, monkeypatch) -> None:
    """CI as docs/ci.md sets it up: CI=true, CI's key pinned from outside the repository,
    and a first baseline bootstrapped explicitly."""
    trusted = ci_key(suite)
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("RTGOV_TRUSTED_KEYS", trusted)
    monkeypatch.setenv("RTGOV_SIGNING_KEY", str(suite.path / "ci.key"))
    assert suite.runpytest("--rtgov-gate", "--rtgov-bootstrap-baseline").ret == 0


def moved_to_another_machine(suite, capsys) -> None:
    """The committed baseline as another machine left it: no env file for this one."""
    (env,) = (suite.path / "baseline").glob("env-*.json")
    env.rename(env.with_name("env-0123456789abcdef.json"))
    assert cli(suite, "baseline", "sign", "--reason", "measured on another machine") == 0
    capsys.readouterr()


# -- 1. a baseline whose seal fails is never re-sealed by a session ---------------------------


def test_a_tampered_baseline_on_a_first_seen_fingerprint_is_refused_not_resealed(suite, capsys):
    assert suite.runpytest("--rtgov-gate").ret == 0
    baseline = suite.path / "baseline"
    metrics = baseline / "metrics.json"
    metrics.write_text(metrics.read_text().replace("0.95", "0.5"))
    for env in baseline.glob("env-*.json"):
        env.unlink()
    before = snapshot(baseline)
    result = suite.runpytest("--rtgov-gate")
    assert result.ret == EXIT_INTEGRITY
    result.stdout.fnmatch_lines(["*baseline*never re-seals*rtgov baseline sign*"])
    assert snapshot(baseline) == before  # untouched
    assert not (suite.path / ".rtgov" / "baseline-local").exists()
    capsys.readouterr()
    assert cli(suite, "verify") == EXIT_SEAL


def test_update_baseline_refuses_a_baseline_whose_seal_fails(suite, capsys):
    assert suite.runpytest("--rtgov-gate").ret == 0
    baseline = suite.path / "baseline"
    metrics = baseline / "metrics.json"
    metrics.write_text(metrics.read_text().replace("0.95", "0.5"))
    before = snapshot(baseline)
    result = suite.runpytest("--rtgov-gate", "--rtgov-update-baseline", "--rtgov-reason=x")
    assert result.ret == EXIT_INTEGRITY
    result.stdout.fnmatch_lines(["*never re-seals*rtgov baseline sign --reason*"])
    assert snapshot(baseline) == before


def test_only_a_reasoned_sign_reseals_it_and_the_ledger_records_what_failed(suite, capsys):
    assert suite.runpytest("--rtgov-gate").ret == 0
    metrics = suite.path / "baseline" / "metrics.json"
    metrics.write_text(metrics.read_text().replace("0.95", "0.94"))
    capsys.readouterr()
    assert cli(suite, "baseline", "sign") == 2
    assert "needs --reason" in capsys.readouterr().err
    assert cli(suite, "baseline", "sign", "--reason", "reviewed: new accuracy") == 0
    last = refresh_leaves(suite.path)[-1]
    assert last["reason"] == "reviewed: new accuracy"
    assert "metrics.json: sha256" in last["failed_seal"]
    assert last["baseline"] == "baseline"
    capsys.readouterr()
    assert cli(suite, "verify") == 0
    assert suite.runpytest("--rtgov-gate").ret == 0


# -- 2. a baseline may not vanish, and CI never bootstraps one implicitly ---------------------


def test_ci_without_a_baseline_fails_unless_bootstrapping_is_asked(suite, monkeypatch):
    ci_key(suite)
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("RTGOV_SIGNING_KEY", str(suite.path / "ci.key"))
    refused = suite.runpytest("--rtgov-gate")
    refused.assert_outcomes(passed=3)
    assert refused.ret == EXIT_GATE_BREACHED
    refused.stdout.fnmatch_lines(["*no baseline in *baseline*--rtgov-bootstrap-baseline*"])
    assert not (suite.path / "baseline").exists()
    assert suite.runpytest("--rtgov-gate", "--rtgov-bootstrap-baseline").ret == 0
    assert (suite.path / "baseline" / "metrics.json").is_file()
    assert suite.runpytest("--rtgov-gate").ret == 0


def test_ci_without_measurements_for_this_fingerprint_fails_unless_bootstrapped(
    suite, monkeypatch, capsys
):
    ci_key(suite)
    monkeypatch.setenv("RTGOV_SIGNING_KEY", str(suite.path / "ci.key"))
    assert suite.runpytest("--rtgov-gate").ret == 0
    moved_to_another_machine(suite, capsys)
    monkeypatch.setenv("CI", "true")
    refused = suite.runpytest("--rtgov-gate")
    assert refused.ret == EXIT_GATE_BREACHED
    refused.stdout.fnmatch_lines(["*no measurement baseline for fingerprint*bootstrap-baseline*"])
    assert suite.runpytest("--rtgov-gate", "--rtgov-bootstrap-baseline").ret == 0
    assert len(list((suite.path / "baseline").glob("env-*.json"))) == 2


def test_a_baseline_the_ledger_recorded_may_not_vanish(suite, capsys):
    assert suite.runpytest("--rtgov-gate").ret == 0
    assert refresh_leaves(suite.path)[0]["baseline"] == "baseline"
    shutil.rmtree(suite.path / "baseline")
    result = suite.runpytest("--rtgov-gate")
    assert result.ret == EXIT_INTEGRITY
    result.stdout.fnmatch_lines(["*baseline * is missing, but the ledger * recorded it*"])
    assert not (suite.path / "baseline").exists()
    capsys.readouterr()
    assert cli(suite, "verify", "--gates", "gates.toml") == EXIT_SEAL
    assert "missing, but the ledger recorded it" in capsys.readouterr().err
    assert suite.runpytest("--rtgov-gate", "--rtgov-bootstrap-baseline").ret == 0
    assert (suite.path / "baseline" / "metrics.json").is_file()


# -- 3. trusted keys supplied by CI, from outside the repository ------------------------------


def test_ci_supplied_keys_refuse_a_keyring_line_added_in_the_repository(
    suite, monkeypatch, capsys
):
    trusted = ci_key(suite)
    ci_key(suite, "mallory.example/own", "mallory.key")  # one line added to rtgov.keyring
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("RTGOV_TRUSTED_KEYS", trusted)
    monkeypatch.setenv("RTGOV_SIGNING_KEY", str(suite.path / "mallory.key"))
    result = suite.runpytest("--rtgov-gate", "--rtgov-bootstrap-baseline")
    assert result.ret == USAGE
    assert "passed" not in result.stdout.str()  # no test ran
    result.stderr.fnmatch_lines(["*rtgov.keyring*mallory.example/own*RTGOV_TRUSTED_KEYS*"])
    capsys.readouterr()
    assert cli(suite, "verify", "--require-signature") == EXIT_CHECKPOINT
    assert "RTGOV_TRUSTED_KEYS" in capsys.readouterr().err


def test_a_keyring_digest_pinned_by_ci_refuses_a_changed_keyring(suite, monkeypatch, capsys):
    ci_key(suite)
    digest = hashlib.sha256((suite.path / "rtgov.keyring").read_bytes()).hexdigest()
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("RTGOV_KEYRING_SHA256", digest)
    monkeypatch.setenv("RTGOV_SIGNING_KEY", str(suite.path / "ci.key"))
    assert suite.runpytest("--rtgov-gate", "--rtgov-bootstrap-baseline").ret == 0
    capsys.readouterr()
    assert cli(suite, "verify") == 0
    assert "RTGOV_KEYRING_SHA256" in capsys.readouterr().out
    ci_key(suite, "mallory.example/own", "mallory.key")
    monkeypatch.setenv("RTGOV_SIGNING_KEY", str(suite.path / "mallory.key"))
    result = suite.runpytest("--rtgov-gate")
    assert result.ret == USAGE
    result.stderr.fnmatch_lines(["*rtgov.keyring: sha256 * does not match $RTGOV_KEYRING_SHA256*"])
    capsys.readouterr()
    assert cli(suite, "verify") == EXIT_CHECKPOINT


def test_ci_supplied_keys_are_trusted_without_a_keyring_file(suite, monkeypatch, capsys):
    trusted = ci_key(suite)
    (suite.path / "rtgov.keyring").unlink()
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("RTGOV_TRUSTED_KEYS", f"{trusted},")
    monkeypatch.setenv("RTGOV_SIGNING_KEY", str(suite.path / "ci.key"))
    assert suite.runpytest("--rtgov-gate", "--rtgov-bootstrap-baseline").ret == 0
    capsys.readouterr()
    assert cli(suite, "verify") == 0
    assert "ci.example/gates (trusted: CI-supplied $RTGOV_TRUSTED_KEYS)" in capsys.readouterr().out


def test_a_malformed_trusted_keys_variable_is_a_usage_error(suite, monkeypatch):
    monkeypatch.setenv("RTGOV_TRUSTED_KEYS", "not a key")
    result = suite.runpytest("--rtgov")
    assert result.ret == USAGE
    result.stderr.fnmatch_lines(["*$RTGOV_TRUSTED_KEYS: entry 1: expected a verifier key*"])


# -- 4. the local key's public half; private keys others can read ------------------------------


def test_verify_needs_only_the_local_public_key(suite, capsys):
    assert suite.runpytest("--rtgov").ret == 0
    keys = suite.path / ".rtgov" / "keys"
    assert (keys / "local.pub").read_text().startswith("rtgov-local-untrusted-")
    (keys / "local.key").unlink()
    capsys.readouterr()
    assert cli(suite, "verify") == 0
    out = capsys.readouterr().out
    assert "(untrusted local key)" in out
    # a new key is created; checkpoints of both keys verify
    assert suite.runpytest("--rtgov").ret == 0
    assert len((keys / "local.pub").read_text().splitlines()) == 2
    assert cli(suite, "verify") == 0


def test_an_old_state_directory_gets_its_public_key_written(suite, capsys):
    assert suite.runpytest("--rtgov").ret == 0
    pub = suite.path / ".rtgov" / "keys" / "local.pub"
    pub.unlink()
    capsys.readouterr()
    assert cli(suite, "verify") == 0
    assert pub.is_file()


def test_a_private_key_others_can_read_is_refused(suite, capsys):
    assert suite.runpytest("--rtgov").ret == 0
    local = suite.path / ".rtgov" / "keys" / "local.key"
    local.chmod(0o644)
    result = suite.runpytest("--rtgov")
    assert result.ret == USAGE
    assert "passed" not in result.stdout.str()
    result.stderr.fnmatch_lines([f"*{local}: * readable by group or others*chmod 600 {local}*"])
    ci_key(suite)
    (suite.path / "ci.key").chmod(0o640)
    result = suite.runpytest("--rtgov", "--rtgov-signing-key", "ci.key")
    assert result.ret == USAGE
    result.stderr.fnmatch_lines(["*ci.key: * readable by group or others*chmod 600*"])
    capsys.readouterr()
    assert cli(suite, "ledger", "recover", "--signing-key", "ci.key") != 0
    assert "chmod 600" in capsys.readouterr().err
    local.chmod(0o600)
    capsys.readouterr()
    assert cli(suite, "verify") == 0  # verifying never needs the private key's mode


def test_verify_names_each_signer_and_whether_it_is_trusted(suite, monkeypatch, capsys):
    assert suite.runpytest("--rtgov").ret == 0
    ci_key(suite)
    monkeypatch.setenv("RTGOV_SIGNING_KEY", str(suite.path / "ci.key"))
    assert suite.runpytest("--rtgov").ret == 0
    capsys.readouterr()
    assert cli(suite, "verify") == 0
    out = capsys.readouterr().out
    assert "ci.example/gates (trusted: keyring rtgov.keyring)" in out
    assert "rtgov-local-untrusted-" in out and "(untrusted local key)" in out


# -- 5. a first-seen fingerprint's measurements stay out of the committed baseline ------------


def test_a_new_machine_keeps_its_measurements_in_the_state_directory(suite, monkeypatch, capsys):
    assert suite.runpytest("--rtgov-gate").ret == 0
    moved_to_another_machine(suite, capsys)
    committed = snapshot(suite.path / "baseline")
    first = suite.runpytest("--rtgov-gate")
    assert first.ret == 0
    first.stdout.fnmatch_lines(["*recorded this run's measurements in *baseline-local*"])
    assert snapshot(suite.path / "baseline") == committed  # the committed files are untouched
    local = suite.path / ".rtgov" / "baseline-local"
    assert len(list(local.glob("env-*.json"))) == 1
    assert (local / "baseline.dsse.json").is_file()
    assert refresh_leaves(suite.path)[-1]["scope"] == "local"
    second = suite.runpytest("--rtgov-gate")
    assert second.ret == 0  # the second run gates against the first ...
    second.stdout.fnmatch_lines(["*measurements compared with this machine's local baseline*"])
    assert "local baseline signed by" not in second.stdout.str()  # ... with no noise
    monkeypatch.setenv("SUITE_EXTRA_MIB", "8")  # memory: deterministic under load
    heavier = suite.runpytest("--rtgov-gate")
    assert heavier.ret == EXIT_GATE_BREACHED
    heavier.stdout.fnmatch_lines(["BREACH *: test_suite.py::test_alloc peak_memory"])
    assert snapshot(suite.path / "baseline") == committed
    capsys.readouterr()
    assert cli(suite, "verify") == 0


def test_a_local_baseline_whose_seal_fails_is_not_resealed_either(suite, capsys):
    assert suite.runpytest("--rtgov-gate").ret == 0
    moved_to_another_machine(suite, capsys)
    assert suite.runpytest("--rtgov-gate").ret == 0  # creates the local baseline
    local = suite.path / ".rtgov" / "baseline-local"
    (env,) = local.glob("env-*.json")
    env.unlink()  # only the envelope and the audit log are left
    before = snapshot(local)
    result = suite.runpytest("--rtgov-gate")
    assert result.ret == EXIT_INTEGRITY
    result.stdout.fnmatch_lines(["*local baseline *: its seal fails (*listed*never re-seals*"])
    assert snapshot(local) == before
    capsys.readouterr()
    assert cli(suite, "verify") == EXIT_SEAL
    assert "baseline-local" in capsys.readouterr().err


# -- a validly sealed but older baseline put back ---------------------------------------------


def restore(directory: Path, files: dict[str, bytes]) -> None:
    for path in directory.iterdir():
        path.unlink()
    for name, data in files.items():
        (directory / name).write_bytes(data)


def test_an_older_sealed_baseline_put_back_is_a_rollback_for_gate_and_verify(suite, capsys):
    """Each seal is valid on its own; only the ledger knows which one is current."""
    assert suite.runpytest("--rtgov-gate").ret == 0
    baseline = suite.path / "baseline"
    first = snapshot(baseline)
    metrics = baseline / "metrics.json"
    metrics.write_text(metrics.read_text().replace("0.95", "0.97"))
    assert cli(suite, "baseline", "sign", "--reason", "reviewed: stricter accuracy") == 0
    capsys.readouterr()
    assert cli(suite, "verify", "--gates", "gates.toml") == 0
    restore(baseline, first)
    capsys.readouterr()
    assert cli(suite, "verify", "--gates", "gates.toml") == EXIT_SEAL
    assert "older baseline was put back" in capsys.readouterr().err
    result = suite.runpytest("--rtgov-gate")
    assert result.ret == EXIT_INTEGRITY
    result.stdout.fnmatch_lines(["*older baseline was put back*refusing to gate*"])
    assert snapshot(baseline) == first  # reported, not repaired


def test_a_baseline_sealed_later_elsewhere_is_accepted(suite, capsys, tmp_path):
    """A maintainer's refresh arriving through git is newer than anything recorded here."""
    assert suite.runpytest("--rtgov-gate").ret == 0
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(suite.path, elsewhere)
    metrics = elsewhere / "baseline" / "metrics.json"
    metrics.write_text(metrics.read_text().replace("0.95", "0.96"))
    old = Path.cwd()
    os.chdir(elsewhere)
    try:
        assert rtgov_main(["baseline", "sign", "--reason", "reviewed elsewhere"]) == 0
    finally:
        os.chdir(old)
    restore(suite.path / "baseline", snapshot(elsewhere / "baseline"))
    capsys.readouterr()
    assert cli(suite, "verify", "--gates", "gates.toml") == 0
    assert suite.runpytest("--rtgov-gate").ret == 0


def test_in_ci_with_a_kept_ledger_an_older_trusted_seal_put_back_fails(suite, monkeypatch, capsys):
    """The attack of a repository writer: revert the baseline to an older commit's files,
    every one validly signed by CI's key. The ledger CI keeps (its cache) knows better."""
    in_ci_with_a_bootstrapped_baseline(suite, monkeypatch)
    baseline = suite.path / "baseline"
    first = snapshot(baseline)
    metrics = baseline / "metrics.json"
    metrics.write_text(metrics.read_text().replace("0.95", "0.97"))
    assert cli(suite, "baseline", "sign", "--reason", "reviewed: stricter accuracy") == 0
    restore(baseline, first)
    result = suite.runpytest("--rtgov-gate")
    assert result.ret == EXIT_INTEGRITY
    result.stdout.fnmatch_lines(["*older baseline was put back*"])
    capsys.readouterr()
    assert cli(suite, "verify", "--require-signature", "--gates", "gates.toml") == EXIT_SEAL


def test_a_seal_made_elsewhere_is_recorded_so_the_one_before_it_cannot_come_back(
    suite, capsys, tmp_path
):
    """Two refreshes made on a maintainer's machine arrive through git; this ledger saw
    neither being made. The gated session records the newest, and the one before it,
    put back, is a rollback although it is newer than anything this ledger had seen."""
    assert suite.runpytest("--rtgov-gate").ret == 0
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(suite.path, elsewhere)
    metrics = elsewhere / "baseline" / "metrics.json"
    sealed = []
    for accuracy in ("0.955", "0.96"):
        metrics.write_text(metrics.read_text().replace("0.95", accuracy, 1))
        old = Path.cwd()
        os.chdir(elsewhere)
        try:
            assert rtgov_main(["baseline", "sign", "--reason", f"reviewed: {accuracy}"]) == 0
        finally:
            os.chdir(old)
        sealed.append(snapshot(elsewhere / "baseline"))
        metrics.write_text(metrics.read_text().replace(accuracy, "0.95", 1))
    baseline = suite.path / "baseline"
    restore(baseline, sealed[1])
    assert suite.runpytest("--rtgov-gate").ret == 0
    assert refresh_leaves(suite.path)[-1]["reason"].startswith("recorded a seal made elsewhere")
    restore(baseline, sealed[0])
    result = suite.runpytest("--rtgov-gate")
    assert result.ret == EXIT_INTEGRITY
    result.stdout.fnmatch_lines(["*older baseline was put back or substituted*"])
    capsys.readouterr()


def test_in_ci_leaves_appended_without_a_checkpoint_are_never_signed(suite, monkeypatch, capsys):
    """A state-directory writer forges a run and appends its verdict leaf, with no key to
    sign a checkpoint. CI's session must not sign it for them, and no command may use it."""
    from pytest_rtgov.core.canonical import canonical_json
    from pytest_rtgov.store.ledger import encode_frame

    in_ci_with_a_bootstrapped_baseline(suite, monkeypatch)
    state = suite.path / ".rtgov"
    (real,) = (state / "runs").glob("*.json")
    record = json.loads(real.read_text())
    forged_id = "20261130T050000Z-f0f0f0"
    record["run_id"] = forged_id
    data = canonical_json(record)
    (state / "runs" / f"{forged_id}.json").write_bytes(data + b"\n")
    leaf = {
        "kind": "verdict",
        "run_id": forged_id,
        "exit_status": 0,
        "verdict": "passed",
        "record_sha256": "sha256:" + hashlib.sha256(data).hexdigest(),
    }
    with open(state / "ledger" / "log", "ab") as fh:
        fh.write(encode_frame(canonical_json(leaf)))
    result = suite.runpytest("--rtgov-gate")
    result.stdout.fnmatch_lines(["*leaves from * on were not signed but set aside in*unsigned*"])
    capsys.readouterr()
    assert cli(suite, "baseline", "refresh", "--from", forged_id, "--reason", "x") == 4
    assert "no verdict leaf" in capsys.readouterr().err
    assert cli(suite, "verify", "--require-signature") == 11  # an orphaned record
