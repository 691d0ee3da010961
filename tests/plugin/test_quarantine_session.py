"""Quarantine in a session (issue 18, Q2): quarantined tests and gates still run and are
measured; a valid entry excuses their failure in the exit status and the verdict, an
expired one fails the session naming owner and issue, an unsigned hand edit fails
where signatures are required; the same under ``-n 2``; ``rtgov audit`` agrees."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from pytest_rtgov.core.canonical import canonical_json
from pytest_rtgov.core.constants import EXIT_GATE_BREACHED, EXIT_INTEGRITY
from pytest_rtgov.core.dsse import PAYLOAD_TYPE_INTOTO
from pytest_rtgov.core.quarantine import QUARANTINE_FILE, Entry
from pytest_rtgov.store.keys import generate_key
from pytest_rtgov.store.ledger import Ledger
from pytest_rtgov.store.quarantine_file import sign_entry
from tests.conftest import latest_record
from tests.plugin._cli import cli

SUITE = """
import os, time
import pytest

def test_flaky():
    assert os.environ.get("FLAKY_PASSES") == "1"

def test_plain():
    assert os.environ.get("PLAIN_FAILS") != "1"

@pytest.mark.rtgov(rounds=2)
def test_slow():
    time.sleep(0.001)

def test_accuracy(rtgov):
    rtgov.record("val_accuracy", float(os.environ.get("ACCURACY", "0.95")),
                 higher_is_better=True)
"""

# A wall-time budget no test can hold (1 us: the test sleeps 1 ms), and an accuracy
# floor the test breaches only when told to: both deterministic, whatever the load.
GATES = """
[[gates]]
name = "time"
metric = "wall_time"
tests = ["test_q.py::test_slow"]
max = "1 us"

[[gates]]
name = "accuracy"
metric = "val_accuracy"
tests = ["test_q.py::test_accuracy"]
min = 0.9
"""

TODAY = "2026-06-10"
FLAKY = "test_q.py::test_flaky"


def entry(subject: str, **changes: str) -> Entry:
    fields = {
        "owner": "alice@example.com",
        "reason": "flaky on shared runners",
        "issue": "https://example.com/issues/42",
        "created": "2026-06-01",
        "expires": "2026-06-14",
        **changes,
    }
    return Entry(subject=subject, **fields)


def write_file(root: Path, envelopes: list[dict]) -> None:
    document = {"version": 1, "entries": envelopes}
    (root / QUARANTINE_FILE).write_bytes(canonical_json(document))


def unsigned(e: Entry) -> dict:
    payload = base64.b64encode(e.statement()).decode()
    return {"payload": payload, "payloadType": PAYLOAD_TYPE_INTOTO, "signatures": []}


@pytest.fixture
def project(pytester, monkeypatch):
    for name in ("RTGOV_TRUSTED_KEYS", "RTGOV_KEYRING_SHA256"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RTGOV_TODAY", TODAY)
    pytester.makepyfile(test_q=SUITE)
    root = pytester.path
    pytester.signer = generate_key("team.example/q", root / "team.key", root / "rtgov.keyring")
    return pytester


def quarantine(project, *subjects: str, **changes: str) -> None:
    write_file(project.path, [sign_entry(entry(s, **changes), project.signer) for s in subjects])


def section(project) -> dict:
    return latest_record(project.path)["quarantine"]


def test_a_quarantined_failing_test_leaves_the_session_green(project):
    quarantine(project, FLAKY)
    result = project.runpytest("--rtgov", "-p", "no:randomly")
    result.assert_outcomes(passed=3, failed=1)  # it ran and failed: pytest says so
    assert result.ret == 0
    record = latest_record(project.path)
    assert record["exit_status"] == 0
    tests = {t["nodeid"]: t for t in record["tests"]}
    assert tests[FLAKY]["outcome"] == "failed"  # its real outcome is kept
    assert tests[FLAKY]["samples"]  # measured
    q = record["quarantine"]
    assert q["file"] == QUARANTINE_FILE and q["digest"].startswith("sha256:")
    assert [e["state"] for e in q["entries"]] == ["valid"]
    (matched,) = q["tests"]
    assert matched == {
        "nodeid": FLAKY, "outcome": "quarantined-fail", "entry": q["entries"][0]["id"],
        "owner": "alice@example.com", "issue": "https://example.com/issues/42",
        "expires": "2026-06-14",
    }  # fmt: skip


def test_a_quarantined_passing_test_is_quarantined_pass(project, monkeypatch):
    quarantine(project, FLAKY)
    monkeypatch.setenv("FLAKY_PASSES", "1")
    assert project.runpytest("--rtgov").ret == 0
    assert [t["outcome"] for t in section(project)["tests"]] == ["quarantined-pass"]


def test_another_failure_still_fails_the_session(project, monkeypatch):
    quarantine(project, FLAKY)
    monkeypatch.setenv("PLAIN_FAILS", "1")
    result = project.runpytest("--rtgov")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert latest_record(project.path)["exit_status"] == 1


def test_no_file_no_section(project):
    assert project.runpytest("--rtgov").ret == 1
    assert "quarantine" not in latest_record(project.path)


def test_after_expiry_the_session_fails_naming_owner_and_issue(project, monkeypatch):
    quarantine(project, FLAKY)
    monkeypatch.setenv("RTGOV_TODAY", "2026-06-14")  # the expiry date: expired
    result = project.runpytest("--rtgov")
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the failure is not excused
    result.stderr.fnmatch_lines(
        ["*quarantine entry test_q.py::test_flaky (owner alice@example.com, issue "
         "https://example.com/issues/42*expired on 2026-06-14*"]
    )  # fmt: skip
    assert [e["state"] for e in section(project)["entries"]] == ["expired"]
    first_run = latest_record(project.path)["run_id"]
    monkeypatch.setenv("FLAKY_PASSES", "1")  # passing, the expired entry still fails it
    result = project.runpytest("--rtgov")
    assert result.ret == EXIT_GATE_BREACHED
    result.stderr.fnmatch_lines(["*owner alice@example.com*expired on 2026-06-14*"])
    record = latest_record(project.path)
    assert record["exit_status"] == EXIT_GATE_BREACHED
    leaves = [json.loads(f.payload) for f in Ledger(project.path / ".rtgov" / "ledger").frames()]
    found = [leaf for leaf in leaves if leaf["kind"] == "quarantine"]
    assert [(leaf["action"], leaf["subject"], leaf["run_id"]) for leaf in found] == [
        ("expired", FLAKY, run_id) for run_id in (first_run, record["run_id"])
    ]  # one per session it failed, naming the entry, its owner and issue
    assert found[0]["entry"] == section(project)["entries"][0]["id"]
    assert found[0]["owner"] == "alice@example.com"
    assert cli(project, "verify") == 0  # the ledger takes the leaves; an expired entry warns


def test_an_expired_entry_of_no_test_here_is_a_warning(project, monkeypatch):
    quarantine(project, "test_q.py::test_gone")
    monkeypatch.setenv("RTGOV_TODAY", "2026-07-01")
    result = project.runpytest("--rtgov", "-k", "not flaky")
    assert result.ret == 0
    result.stderr.fnmatch_lines(["*warning: quarantine entry test_q.py::test_gone*expired*"])


def test_a_bad_today_is_a_usage_error(project, monkeypatch):
    quarantine(project, FLAKY)
    monkeypatch.setenv("RTGOV_TODAY", "tomorrow")
    result = project.runpytest("--rtgov")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*RTGOV_TODAY*YYYY-MM-DD*"])
    assert "Traceback" not in result.stderr.str()


def test_a_malformed_file_is_a_usage_error_before_the_tests(project):
    (project.path / QUARANTINE_FILE).write_text('{"version": 1, "entries": [{}]}')
    result = project.runpytest("--rtgov")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{QUARANTINE_FILE}*entries[[]0[]]*"])
    assert "Traceback" not in result.stderr.str()
    assert not (project.path / ".rtgov" / "latest").exists()


def hand_edited(project) -> None:
    """A signed entry whose owner was edited by hand: its signature no longer holds."""
    envelope = sign_entry(entry(FLAKY), project.signer)
    envelope["payload"] = base64.b64encode(entry(FLAKY, owner="mallory").statement()).decode()
    write_file(project.path, [envelope])


@pytest.mark.parametrize("edit", ["unsigned", "tampered"])
def test_an_unsigned_hand_edit_fails_under_ci(project, monkeypatch, edit):
    if edit == "unsigned":
        write_file(project.path, [unsigned(entry(FLAKY))])
    else:
        hand_edited(project)
    monkeypatch.setenv("FLAKY_PASSES", "1")  # even with every test passing
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("RTGOV_SIGNING_KEY", str(project.path / "team.key"))
    result = project.runpytest("--rtgov")  # TODAY is in the past: in CI that is refused
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*RTGOV_TODAY*on or after today*signatures are required*"])
    monkeypatch.delenv("RTGOV_TODAY")  # the machine's day: the entry's state is not a date's
    result = project.runpytest("--rtgov")
    assert result.ret == EXIT_INTEGRITY
    result.stderr.fnmatch_lines([f"*quarantine entry test_q.py::test_flaky*is {edit}*required*"])
    q = section(project)
    assert q["signatures_required"] is True
    assert [e["state"] for e in q["entries"]] == [edit]


def test_an_unsigned_entry_excuses_nothing_locally(project):
    write_file(project.path, [unsigned(entry(FLAKY))])
    result = project.runpytest("--rtgov")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stderr.fnmatch_lines(["*warning: quarantine entry test_q.py::test_flaky*unsigned*"])
    assert section(project)["tests"][0]["outcome"] == "quarantined-fail"


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["n0", "n2"])
def test_a_quarantined_timing_gate_is_measured_while_another_gate_blocks(
    project, monkeypatch, workers
):
    project.makefile(".toml", gates=GATES)
    quarantine(project, "gate:time")
    monkeypatch.setenv("FLAKY_PASSES", "1")
    result = project.runpytest("--rtgov-gate", *workers)
    assert result.ret == 0, result.stdout.str()
    record = latest_record(project.path)
    (time_gate,) = [g for g in record["gate_results"] if g["gate"] == "time"]
    assert time_gate["status"] == "breach"  # still measured, still a breach
    assert time_gate["current"] > time_gate["threshold"]
    assert record["verdict"]["status"] == "passed"
    assert record["verdict"]["breaches"] == 0 and record["verdict"]["quarantined"] == 1
    (gate,) = record["quarantine"]["gates"]
    assert gate["gate"] == "time" and gate["status"] == "breach"
    assert gate["outcome"] == "quarantined-fail" and gate["subject"] == "test_q.py::test_slow"

    monkeypatch.setenv("ACCURACY", "0.5")  # another gate breaches: it still fails
    result = project.runpytest("--rtgov-gate", *workers)
    assert result.ret == EXIT_GATE_BREACHED
    record = latest_record(project.path)
    assert record["verdict"]["breaches"] == 1 and record["verdict"]["quarantined"] == 1
    statuses = {g["gate"]: g["status"] for g in record["gate_results"]}
    assert statuses == {"time": "breach", "accuracy": "breach"}
    assert cli(project, "audit") == 0  # both verdicts re-derive from the ledger


def test_quarantined_tests_under_xdist_and_audit(project):
    project.makefile(".toml", gates=GATES.replace('max = "1 us"', 'max = "60 s"'))
    quarantine(project, FLAKY)
    result = project.runpytest("--rtgov-gate", "-n", "2")
    assert result.ret == 0, result.stdout.str()
    record = latest_record(project.path)
    assert record["verdict"]["status"] == "passed"
    assert section(project)["tests"][0]["outcome"] == "quarantined-fail"
    assert cli(project, "audit") == 0
    data = json.loads((project.path / QUARANTINE_FILE).read_text())
    assert len(data["entries"]) == 1


def test_merged_shards_keep_the_quarantine_and_audit_agrees(project):
    project.makefile(".toml", gates=GATES)
    quarantine(project, FLAKY, "gate:time")
    runs = []
    for shard in ("1/2", "2/2"):
        assert project.runpytest("--rtgov", "--rtgov-shard", shard).ret == 0
        runs.append(latest_record(project.path)["run_id"])
    assert cli(project, "merge", "--gate", *runs) == 0
    merged = latest_record(project.path)
    assert merged["verdict"]["status"] == "passed" and merged["verdict"]["quarantined"] == 1
    q = merged["quarantine"]
    assert [t["nodeid"] for t in q["tests"]] == [FLAKY]
    assert [(g["gate"], g["outcome"]) for g in q["gates"]] == [("time", "quarantined-fail")]
    assert cli(project, "audit") == 0


def test_a_failure_no_report_shows_is_never_excused(project):
    """pytest-cov's --cov-fail-under fails a session by counting one more failure."""
    project.makeconftest(
        """
        import pytest

        @pytest.hookimpl(wrapper=True)
        def pytest_runtestloop(session):
            result = yield
            session.testsfailed += 1
            return result
        """
    )
    quarantine(project, FLAKY)
    assert project.runpytest("--rtgov").ret == pytest.ExitCode.TESTS_FAILED


def test_an_expired_entry_fails_a_gated_session_and_audit_agrees(project, monkeypatch):
    project.makefile(".toml", gates=GATES.replace('max = "1 us"', 'max = "60 s"'))
    quarantine(project, FLAKY)
    monkeypatch.setenv("FLAKY_PASSES", "1")
    monkeypatch.setenv("RTGOV_TODAY", "2026-06-15")
    assert project.runpytest("--rtgov-gate").ret == EXIT_GATE_BREACHED
    verdict = latest_record(project.path)["verdict"]
    assert verdict["status"] == "breached" and verdict["breaches"] == 0
    assert any("owner alice@example.com" in note for note in verdict["notes"])
    assert cli(project, "audit") == 0


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["n0", "n2"])
def test_a_quarantined_test_that_fails_keeps_its_gates(project, monkeypatch, workers):
    """A failed test is not gated; quarantined, its failure is excused but not its gates:
    they are missing (a breach) unless a gate entry names them too."""
    project.makepyfile(test_q=SUITE + """
def test_accuracy_then_fails(rtgov):
    rtgov.record("val_accuracy", 0.1, higher_is_better=True)
    assert os.environ.get("FLAKY_PASSES") == "1"
""")
    gates = GATES.replace('max = "1 us"', 'max = "60 s"').replace(
        'tests = ["test_q.py::test_accuracy"]',
        'tests = ["test_q.py::test_accuracy", "test_q.py::test_accuracy_then_fails"]',
    )
    project.makefile(".toml", gates=gates)
    monkeypatch.setenv("FLAKY_PASSES", "1")
    assert project.runpytest("--rtgov-gate", *workers).ret == EXIT_GATE_BREACHED  # 0.1 < 0.9
    monkeypatch.delenv("FLAKY_PASSES")  # it fails, and so does test_flaky
    quarantine(project, "test_q.py::test_accuracy_then_fails", FLAKY)
    result = project.runpytest("--rtgov-gate", *workers)
    assert result.ret == EXIT_GATE_BREACHED, result.stdout.str()
    record = latest_record(project.path)
    (kept,) = [g for g in record["gate_results"] if g["subject"].endswith("_then_fails")]
    assert kept["status"] == "missing" and "quarantined, not its gates" in kept["reason"]
    quarantine(project, "test_q.py::test_accuracy_then_fails", FLAKY,
               "gate:accuracy:test_q.py::test_accuracy_then_fails")  # fmt: skip
    assert project.runpytest("--rtgov-gate", *workers).ret == 0
    assert cli(project, "audit") == 0


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["n0", "n2"])
def test_a_session_stopped_early_excuses_nothing(project, workers):
    """-x after a quarantined failure: the tests after it were never judged (under xdist
    its DSession raises Interrupted from the run-test loop)."""
    quarantine(project, FLAKY)
    result = project.runpytest("--rtgov", "-x", "-p", "no:randomly", *workers)
    # pytest says 1, xdist 2 (interrupted): never 0
    assert result.ret == (pytest.ExitCode.INTERRUPTED if workers else pytest.ExitCode.TESTS_FAILED)
    if workers:
        return
    result.assert_outcomes(failed=1)
    project.makeconftest(
        """
        import pytest

        def pytest_runtest_logreport(report):
            if report.failed:
                pytest.exit("stop here", returncode=1)
        """
    )
    assert project.runpytest("--rtgov", "-p", "no:randomly").ret == 1


def test_a_teardown_error_after_a_quarantined_test_is_not_excused(project, monkeypatch):
    """A session fixture's finalizer reports against the last test: never excused."""
    project.makeconftest(
        """
        import pytest

        @pytest.fixture(scope="session", autouse=True)
        def leaky():
            yield
            raise RuntimeError("leaked resources")
        """
    )
    project.makepyfile(test_z="def test_z_last():\n    assert True\n")
    monkeypatch.setenv("FLAKY_PASSES", "1")
    quarantine(project, "test_z.py::test_z_last")
    result = project.runpytest("--rtgov", "-p", "no:randomly")
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_what_the_session_end_says_starts_on_a_line_of_its_own(project):
    """stdout and stderr on one terminal: the warning does not glue onto [100%]."""
    import subprocess
    import sys

    write_file(project.path, [unsigned(entry(FLAKY))])
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--rtgov", "-p", "no:cacheprovider", "-p",
         "no:randomly", "--color=no"],
        cwd=project.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert "quarantine entry test_q.py::test_flaky" in done.stdout
    assert "%]pytest-rtgov" not in done.stdout and "%]warning" not in done.stdout
