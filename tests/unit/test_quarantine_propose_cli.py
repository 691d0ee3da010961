"""``rtgov quarantine propose`` (cli/quarantine_propose.py) on real run records in a state
directory: each proposal with its evidence and the command that applies it, the
exclusions with their reasons, JSON, and the options' checks."""

from __future__ import annotations

import argparse
import json
import shlex
from datetime import timedelta
from pathlib import Path

import pytest

from pytest_rtgov.cli import quarantine, quarantine_propose
from pytest_rtgov.cli.options import apply_project_config
from pytest_rtgov.errors import InvalidOptionError
from tests.unit.test_quarantine_history import BROKEN, FLAKY, ODD, STEADY, _history


def _args(project: Path, *argv: str) -> argparse.Namespace:
    """``rtgov --dir .rtgov quarantine propose ARGV``, as cli/quarantine.py parses it."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=Path)
    quarantine.add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["--dir", str(project / ".rtgov"), "quarantine", "propose", *argv])
    apply_project_config(args)
    return args


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CI", raising=False)
    _history(tmp_path / ".rtgov")
    return tmp_path


def test_each_proposal_prints_its_evidence_and_command(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert quarantine_propose.run(_args(project, "--owner", "ana")) == 0
    out = capsys.readouterr().out
    assert out.startswith("rtgov quarantine propose: 12 runs (")
    assert "Proposed quarantine (2):\n  gate:step_time:t.py::test_ok\n" in out
    assert "runs 12, failures 3, passed on rerun 3, transitions 11; failure rate 0.500" in out
    assert "runs 12, breaches 0, unconfirmed breaches 4, transitions 7" in out
    command = next(line.strip() for line in out.splitlines()
                   if line.strip().startswith(f"rtgov quarantine add {FLAKY}"))
    words = shlex.split(command)
    assert words[words.index("--owner") + 1] == "ana" and words[words.index("--issue") + 1] == "URL"
    assert words[words.index("--reason") + 1].startswith("intermittent: bad in 6 of 12 runs")
    assert f"  {BROKEN}: broken: fails every run of the window [" in out
    assert f"  {ODD}: environment: fails only where numpy is '2.5.0'; passes where it is " in out
    assert STEADY + ":" not in out and "Proposed removal (0):" in out


def test_json_lists_proposals_exclusions_and_commands(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert quarantine_propose.run(_args(project, "--format", "json", "--window", "8")) == 0
    document = json.loads(capsys.readouterr().out)
    assert len(document["runs"]) == 8
    assert [p["subject"] for p in document["add"]] == [f"gate:step_time:{STEADY}", FLAKY]
    assert document["add"][1]["runs"] == 8 and len(document["add"][1]["interval"]) == 2
    assert {e["subject"]: e["reason"] for e in document["excluded"]} == {
        BROKEN: "broken", ODD: "environment"}
    assert document["commands"][0].startswith("rtgov quarantine add gate:step_time:")


@pytest.mark.parametrize("argv", [["--window", "0"], ["--clean-runs", "-1"],
                                  ["--apply", "--owner", "ana"], ["--expires", "soon"]])
def test_bad_options_are_usage_errors(project: Path, argv: list[str]) -> None:
    with pytest.raises(InvalidOptionError):
        quarantine_propose.run(_args(project, *argv))


def test_apply_writes_each_proposal_as_a_signed_entry_and_a_ledger_leaf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_rtgov.core.ledger_records import parse_leaf
    from pytest_rtgov.store.keys import load_signing_key
    from pytest_rtgov.store.ledger import Ledger, scan_frames
    from pytest_rtgov.store.quarantine_file import load_quarantine

    monkeypatch.chdir(tmp_path)
    for name in ("CI", "RTGOV_SIGNING_KEY", "PYTEST_ADDOPTS"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "t.py").write_text(
        "def test_flaky(): pass\ndef test_broken(): pass\ndef test_ok(): pass\n"
    )
    state = tmp_path / ".rtgov"
    signing = load_signing_key(key_file=None, state_dir=state)
    _history(state, gates=False, signer=signing.signer,
             origin=f"pytest-rtgov.local/{tmp_path.name}")
    argv = ("--apply", "--owner", "ana", "--issue", "https://issues.example/18")
    assert quarantine_propose.run(_args(tmp_path, *argv)) == 0
    assert capsys.readouterr().out.endswith(f"applied: add {FLAKY}\n")
    entries = load_quarantine(tmp_path, None, today=quarantine_propose.utc_today()).entries
    assert [c.entry.subject for c in entries] == [FLAKY]
    entry = entries[0].entry
    assert (entry.owner, entry.issue, entry.action) == ("ana", "https://issues.example/18", "add")
    assert entry.reason.startswith("intermittent: bad in 6 of 12 runs") and len(entry.evidence) == 6
    leaves = [parse_leaf(f.payload) for f in scan_frames(Ledger(state / "ledger").log_path)
              if b'"quarantine"' in f.payload]
    assert [(leaf["action"], leaf["subject"]) for leaf in leaves] == [("add", FLAKY)]
    # applied: now quarantined, so proposed no more
    assert quarantine_propose.run(_args(tmp_path, "--format", "json")) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["add"] == [] and FLAKY in {e["subject"] for e in document["excluded"]}


@pytest.mark.parametrize(("clean_runs", "proposed"), [("22", True), ("23", False)])
def test_a_quarantined_test_clean_in_enough_runs_is_proposed_for_removal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    clean_runs: str, proposed: bool,
) -> None:
    from pytest_rtgov.core.keys import generate_signer
    from pytest_rtgov.core.quarantine import Entry
    from pytest_rtgov.store.quarantine_file import write_entry

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CI", raising=False)
    _history(tmp_path / ".rtgov", runs=22, gates=False)
    today = quarantine_propose.utc_today()
    entry = Entry(STEADY, "ana", "slow network", "https://issues.example/7",
                  today.isoformat(), (today + timedelta(days=7)).isoformat())
    write_entry(tmp_path, entry, generate_signer("test.example/q"), trust=None, today=today)
    assert quarantine_propose.run(_args(tmp_path, "--clean-runs", clean_runs)) == 0
    out = capsys.readouterr().out
    if proposed:
        assert f"Proposed removal (1):\n  {STEADY} (entry sha256:" in out
        assert "clean in the last 22 runs it ran in\n" in out
        assert (f"    rtgov quarantine remove {STEADY} --reason 'clean in 22 consecutive runs "
                "(rtgov quarantine propose)'\n") in out
    else:
        assert "Proposed removal (0):" in out


def test_no_history_says_what_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert quarantine_propose.run(_args(tmp_path)) == 0
    assert capsys.readouterr().out.startswith(
        "rtgov quarantine propose: 0 runs\n  no run record the ledger covers in "
    )


def test_apply_removes_an_entry_clean_long_enough(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_rtgov.core.quarantine import Entry
    from pytest_rtgov.store.keys import load_signing_key
    from pytest_rtgov.store.quarantine_file import load_quarantine, write_entry

    monkeypatch.chdir(tmp_path)
    for name in ("CI", "RTGOV_SIGNING_KEY", "PYTEST_ADDOPTS"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "t.py").write_text("def test_flaky(): pass\ndef test_ok(): pass\n")
    state = tmp_path / ".rtgov"
    signing = load_signing_key(key_file=None, state_dir=state)
    _history(state, runs=22, gates=False, signer=signing.signer,
             origin=f"pytest-rtgov.local/{tmp_path.name}")
    today = quarantine_propose.utc_today()
    for subject in (STEADY, FLAKY):
        entry = Entry(subject, "ana", "slow network", "https://issues.example/7",
                      today.isoformat(), (today + timedelta(days=7)).isoformat())
        write_entry(tmp_path, entry, signing.signer, trust=None, today=today)
    argv = ("--apply", "--owner", "ana", "--issue", "https://issues.example/18")
    assert quarantine_propose.run(_args(tmp_path, *argv)) == 0
    assert capsys.readouterr().out.endswith(f"applied: remove {STEADY}\n")
    left = load_quarantine(tmp_path, None, today=today).entries
    assert [c.entry.subject for c in left] == [FLAKY]  # still failing: kept
