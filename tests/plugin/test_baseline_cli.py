"""`rtgov baseline show|diff|refresh` against a real gated suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.plugin.test_gating import GATES, SUITE


def rtgov(cwd, *args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "pytest_rtgov.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def gated(pytester):
    pytester.makepyfile(test_suite=SUITE)
    pytester.makefile(".toml", gates=GATES)
    assert pytester.runpytest("--rtgov-gate").ret == 0
    return pytester


def test_show_lists_fingerprint_metrics_and_history(gated):
    result = rtgov(gated.path, "baseline", "show")
    assert result.returncode == 0, result.stderr
    assert "env-" in result.stdout and "metrics.json: 2 metrics" in result.stdout
    assert "reason: first gated run on this fingerprint" in result.stdout


def test_refresh_from_a_run_records_who_why_and_changes(gated, monkeypatch):
    monkeypatch.setenv("SUITE_ACCURACY", "0.93")
    assert gated.runpytest("--rtgov-gate").ret == 0  # within the 0.02 allowance
    diff = rtgov(gated.path, "baseline", "diff")
    assert "accuracy: test_suite.py::test_accuracy val_accuracy: 0.95 -> 0.93" in diff.stdout
    result = rtgov(gated.path, "baseline", "refresh", "--reason", "retrained on new data")
    assert result.returncode == 0, result.stderr
    assert "retrained on new data" in result.stdout
    show = rtgov(gated.path, "baseline", "show").stdout
    assert "val_accuracy: 0.95 -> 0.93" in show
    entry = json.loads((gated.path / "baseline" / "refreshes.jsonl").read_text().splitlines()[-1])
    assert entry["reason"] == "retrained on new data"


def test_refresh_in_ci_needs_a_reason_and_a_passing_run(gated):
    result = rtgov(gated.path, "baseline", "refresh", env={"CI": "true"})
    assert result.returncode == 2 and "needs --reason" in result.stderr
    gated.makepyfile(test_broken="def test_b():\n    assert False\n")
    gated.runpytest("--rtgov-gate")
    refused = rtgov(gated.path, "baseline", "refresh", "--reason", "x")
    assert refused.returncode == 5 and "refusing" in refused.stderr


def test_stale_subjects_are_kept_unless_dropped(gated):
    (gated.path / "test_suite.py").write_text(SUITE.replace("def test_alloc", "def _not_a_test"))
    gated.runpytest("--rtgov-gate")
    kept = rtgov(gated.path, "baseline", "refresh", "--reason", "r")
    assert "stale subjects kept" in kept.stdout and "test_alloc" in kept.stdout
    dropped = rtgov(gated.path, "baseline", "refresh", "--reason", "r", "--drop-stale")
    assert dropped.returncode == 0
    env_file = next((gated.path / "baseline").glob("env-*.json"))
    assert "test_suite.py::test_alloc" not in json.loads(env_file.read_text())["subjects"]


def test_bad_gates_file_exits_4(tmp_path):
    (tmp_path / "gates.toml").write_text("[defaults]\nconfidence = 2\n")
    result = rtgov(tmp_path, "baseline", "show")
    assert result.returncode == 4
    assert "gates.toml: at defaults.confidence: expected a number from 0.5" in result.stderr


def test_sign_and_refresh_take_the_keyring_they_are_given(gated):
    """``--keyring`` names the keys CI trusts for ``baseline sign`` as for ``refresh``:
    a key only in ``team.keyring`` is refused against the default ``rtgov.keyring``."""
    key = gated.path / "team.key"
    generate = ["keys", "generate", "team", "-o", str(key), "--keyring", "team.keyring"]
    assert rtgov(gated.path, *generate).returncode == 0
    for action in ("sign", "refresh"):
        signing = ["--reason", "reviewed", "--signing-key", str(key)]
        refused = rtgov(gated.path, "baseline", action, *signing, env={"CI": "true"})
        assert refused.returncode == 2, (action, refused.stderr)
        assert "is not in rtgov.keyring; CI=true requires a keyring key" in refused.stderr
        ring = ["--keyring", "team.keyring"]
        signed = rtgov(gated.path, "baseline", action, *signing, *ring, env={"CI": "true"})
        assert signed.returncode == 0, (action, signed.stderr)
        assert "signed by team" in signed.stdout


# -- only records the ledger covers ----------------------------------------------------

FORGED = "20990101T000000Z-f0f0f0"


def cli(cwd, *args):
    """``rtgov ARGS`` in-process from ``cwd``: the exit status (output via capsys)."""
    from pytest_rtgov.cli import main

    old = os.getcwd()
    os.chdir(cwd)
    try:
        return main(list(args))
    finally:
        os.chdir(old)


def _covered_and_bad(gated):
    """The gated run's (covered) id, plus a forged record no verdict leaf names and the
    covered record edited in place; returns (covered id, edited path, forged path)."""
    state = gated.path / ".rtgov"
    covered = (state / "latest").read_text().strip()
    data = json.loads((state / "runs" / f"{covered}.json").read_text())
    data["run_id"] = FORGED
    forged = state / "runs" / f"{FORGED}.json"
    forged.write_text(json.dumps(data))
    # A second session, then its record edited: the ledger's digest no longer matches.
    assert gated.runpytest("--rtgov-gate").ret == 0
    edited_id = (state / "latest").read_text().strip()
    edited = state / "runs" / f"{edited_id}.json"
    data = json.loads(edited.read_text())
    data["pytest_args"] = [*data["pytest_args"], "--quietly-edited"]
    edited.write_text(json.dumps(data))
    return covered, edited, forged


def test_runs_marks_records_the_ledger_does_not_cover(gated, capsys):
    covered, edited, _ = _covered_and_bad(gated)
    # Another layout of the same content is no edit (as for `rtgov verify`).
    path = gated.path / ".rtgov" / "runs" / f"{covered}.json"
    path.write_text(json.dumps(json.loads(path.read_text()), indent=2))
    capsys.readouterr()
    assert cli(gated.path, "runs") == 0
    lines = capsys.readouterr().out.splitlines()
    assert covered in lines  # a covered record: its id alone, as before
    assert f"{edited.stem}  EDITED (differs from its verdict leaf)" in lines
    assert f"{FORGED}  NOT IN LEDGER (no verdict leaf names it)" in lines


def test_show_labels_an_uncovered_or_edited_record(gated, capsys):
    _, edited, _ = _covered_and_bad(gated)
    capsys.readouterr()
    for ref, label in ((FORGED, "NOT IN LEDGER"), (edited.stem, "EDITED")):
        assert cli(gated.path, "show", ref) == 0
        captured = capsys.readouterr()
        assert captured.out.startswith(f"!! {label}:"), captured.out[:200]
        assert label in captured.err and "runs/" in captured.err
        assert cli(gated.path, "show", ref, "--format", "json") == 0
        captured = capsys.readouterr()
        json.loads(captured.out)  # still the record, label on stderr only
        assert label in captured.err
        assert cli(gated.path, "baseline", "diff", ref) == 0
        captured = capsys.readouterr()
        assert captured.out.startswith(f"!! {label}:") and label in captured.err


@pytest.mark.parametrize(
    "command",
    [
        ("baseline", "refresh", "--reason", "r", "--from"),
        ("report",),
        ("merge",),
        ("export", "--format", "markdown"),
    ],
)
def test_uncovered_or_edited_records_are_refused(gated, capsys, command):
    _, edited, forged = _covered_and_bad(gated)
    history = (gated.path / "baseline" / "refreshes.jsonl").read_text()
    ledger = (gated.path / ".rtgov" / "ledger" / "log").read_bytes()
    capsys.readouterr()
    for path, why in ((forged, "no verdict leaf names run"), (edited, "was edited")):
        assert cli(gated.path, *command, path.stem) == 4
        err = capsys.readouterr().err
        assert f"runs/{path.name}" in err and why in err, err
        assert "Traceback" not in err
    assert (gated.path / "baseline" / "refreshes.jsonl").read_text() == history
    assert (gated.path / ".rtgov" / "ledger" / "log").read_bytes() == ledger


def test_covered_records_still_work(gated, capsys):
    state = gated.path / ".rtgov"
    covered = (state / "latest").read_text().strip()
    assert cli(gated.path, "show", covered) == 0
    captured = capsys.readouterr()
    assert not captured.out.startswith("!!") and captured.err == ""
    assert cli(gated.path, "report", covered) == 0
    assert cli(gated.path, "baseline", "refresh", "--reason", "r", "--from", covered) == 0
