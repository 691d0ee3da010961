"""``rtgov quarantine add|list|show|renew|remove`` and ``rtgov verify`` of the file."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pytest_rtgov.core.ledger_records import parse_leaf
from pytest_rtgov.store.ledger import read_frames
from tests.plugin._cli import cli

SUITE = """
import pytest

def test_flaky():
    pass

@pytest.mark.parametrize("x", [1, 2, "a b"])
def test_param(x):
    pass
"""
GATES = """
[[gates]]
name = "speed"
metric = "wall_time"
tests = ["test_suite.py::*"]
max = "5 s"
"""
NODE = "test_suite.py::test_flaky"
FILE = "rtgov.quarantine.json"


def day(offset: int) -> str:
    return (datetime.now(timezone.utc).date() + timedelta(days=offset)).isoformat()


def fields(**over: str) -> list[str]:
    values = {"owner": "alice", "reason": "flaky on shared runners",
              "issue": "https://example.com/i/1", "expires": day(7), **over}  # fmt: skip
    return [arg for key, value in values.items() for arg in (f"--{key}", value)]


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A suite, a gate, and a keyring key that signs (RTGOV_SIGNING_KEY)."""
    pytester.makepyfile(test_suite=SUITE)
    pytester.makefile(".toml", gates=GATES)
    assert cli(pytester, "keys", "generate", "team", "-o", "team.key") == 0
    monkeypatch.setenv("RTGOV_SIGNING_KEY", str(pytester.path / "team.key"))
    return pytester


def leaves(project: pytest.Pytester) -> list[dict]:
    log = project.path / ".rtgov" / "ledger" / "log"
    return [parse_leaf(frame.payload) for frame in read_frames(log)]


def test_add_list_show_renew_remove_each_signed_and_logged(project, capsys):
    assert cli(project, "quarantine", "add", NODE, *fields()) == 0
    assert cli(project, "quarantine", "add", "gate:speed", *fields(owner="bob")) == 0
    capsys.readouterr()
    assert cli(project, "quarantine", "list") == 0
    out = capsys.readouterr().out
    assert f"{NODE}  alice" in out and "gate:speed" in out and out.count("valid") == 2
    assert cli(project, "quarantine", "list", "--format", "json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [e["subject"] for e in listed] == ["gate:speed", NODE]
    assert all(e["state"] == "valid" and e["keyid"].startswith("team+") for e in listed)
    assert cli(project, "quarantine", "show", NODE) == 0
    out = capsys.readouterr().out
    assert "owner: alice" in out and "state: valid" in out
    assert "https://pytest-rtgov.dev/quarantine/v1" in out
    added = listed[1]["id"]

    same = fields(reason="flaky on shared runners", expires=day(10))
    assert cli(project, "quarantine", "renew", NODE, *same[2:6]) == 4
    assert "expected a new reason" in capsys.readouterr().err
    renewal = ["--reason", "fix needs the new runner image", "--expires", day(10)]
    assert cli(project, "quarantine", "renew", NODE, *renewal) == 0
    assert cli(project, "quarantine", "remove", "gate:speed", "--reason", "fixed") == 0
    document = json.loads((project.path / FILE).read_text())
    assert document["version"] == 1 and len(document["entries"]) == 1
    capsys.readouterr()
    assert cli(project, "quarantine", "show", NODE, "--format", "json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["statement"]["predicate"]["action"] == "renew"
    assert shown["entry"]["expires"] == day(10)

    logged = [leaf for leaf in leaves(project) if leaf["kind"] == "quarantine"]
    assert [(leaf["action"], leaf["subject"]) for leaf in logged] == [
        ("add", NODE), ("add", "gate:speed"), ("renew", NODE), ("remove", "gate:speed"),
    ]  # fmt: skip
    assert logged[0]["entry"] == added and logged[2]["replaces"] == added
    assert logged[3]["reason"] == "fixed" and logged[0]["owner"] == "alice"
    assert cli(project, "verify") == 0


@pytest.mark.parametrize("missing", ["owner", "reason", "issue", "expires"])
def test_each_missing_field_is_a_usage_error(project, capsys, missing):
    args = fields()
    at = args.index(f"--{missing}")
    del args[at : at + 2]
    assert cli(project, "quarantine", "add", NODE, *args) == 4
    assert f"--{missing} is required" in capsys.readouterr().err
    assert not (project.path / FILE).exists()


@pytest.mark.parametrize(
    ("over", "says"),
    [
        ({"expires": day(15)}, "--expires: expected at most 14 days"),
        ({"expires": day(0)}, "--expires: expected a date after created"),
        ({"expires": day(-3)}, "--expires: expected a date after created"),
        ({"expires": "next week"}, "--expires: expected a date YYYY-MM-DD"),
        ({"owner": "a" * 201}, "--owner: expected at most 200 characters"),
        ({"reason": "  "}, "--reason: expected a non-empty string"),
        ({"issue": "x" * 501}, "--issue: expected at most 500 characters"),
        ({"evidence": "sha256:abc"}, "--evidence: expected sha256:<64 lowercase hex digits>"),
    ],
)
def test_bad_or_too_long_fields_are_usage_errors(project, capsys, over, says):
    assert cli(project, "quarantine", "add", NODE, *fields(**over)) == 4
    assert says in capsys.readouterr().err
    assert not (project.path / FILE).exists()


def test_max_days_comes_from_gates_toml(project, capsys):
    project.makefile(".toml", gates=GATES + "\n[quarantine]\nmax_days = 30\n")
    assert cli(project, "quarantine", "add", NODE, *fields(expires=day(30))) == 0
    project.makefile(".toml", gates=GATES + "\n[quarantine]\nmax_days = 91\n")
    assert cli(project, "quarantine", "add", "gate:speed", *fields()) == 4
    assert "gates.toml: at quarantine.max_days: expected an integer" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("subject", "says"),
    [
        ("test_suite.py::test_nope", "is not one; did you mean test_suite.py::test_flaky"),
        ("test_gone.py::test_x", "'test_gone.py' is no file"),
        ("test_suite.py", "a test node id"),
        ("gate:nope", "gates.toml has no gate 'nope' (gates: speed)"),
    ],
)
def test_unknown_tests_and_gates_are_refused(project, capsys, subject, says):
    assert cli(project, "quarantine", "add", subject, *fields()) == 4
    assert says in capsys.readouterr().err
    assert not (project.path / FILE).exists()


def test_a_parametrization_and_the_whole_function_are_known(project):
    assert cli(project, "quarantine", "add", "test_suite.py::test_param[2]", *fields()) == 0
    assert cli(project, "quarantine", "add", "test_suite.py::test_param[a b]", *fields()) == 0
    assert cli(project, "quarantine", "add", "test_suite.py::test_param", *fields()) == 0


def test_duplicates_and_unknown_entries(project, capsys):
    assert cli(project, "quarantine", "add", NODE, *fields()) == 0
    assert cli(project, "quarantine", "add", NODE, *fields()) == 4
    assert "already quarantined" in capsys.readouterr().err
    for action in ("show", "remove"):
        extra = ["--reason", "fixed"] if action == "remove" else []
        assert cli(project, "quarantine", action, "gate:speed", *extra) == 3
        assert "no entry for 'gate:speed'" in capsys.readouterr().err
    assert cli(project, "quarantine", "remove", NODE) == 4
    assert "--reason" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"{not json", "at line 1 column 2: expected valid JSON"),
        (b'{"version": 1, "entries": []}\xff', "expected UTF-8 text"),
        (b'{"version": 2, "entries": []}', "at version: expected 1, got 2"),
        (b'{"entries": []}', 'at the document: expected an object with keys "entries"'),
        (b'{"version": 1, "entries": [{"payload": ""}]}', "at entries[0]: expected envelope keys"),
    ],
)
def test_a_malformed_file_is_refused_and_kept(project, capsys, content, says):
    path = project.path / FILE
    path.write_bytes(content)
    for command in (["add", NODE, *fields()], ["list"], ["show", NODE]):
        assert cli(project, "quarantine", *command) == 4, command
        err = capsys.readouterr().err
        assert FILE in err and says in err, err
    assert path.read_bytes() == content
    (project.path / ".rtgov").mkdir(exist_ok=True)
    assert cli(project, "verify") == 4
    assert says in capsys.readouterr().err


def _edit_predicate(path: Path, index: int, **predicate: str) -> None:
    document = json.loads(path.read_text())
    envelope = document["entries"][index]
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"].update(predicate)
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    path.write_text(json.dumps(document))


def test_verify_reports_a_tampered_entry(project, capsys):
    assert cli(project, "quarantine", "add", NODE, *fields()) == 0
    _edit_predicate(project.path / FILE, 0, expires=day(60))
    capsys.readouterr()
    assert cli(project, "verify") == 15
    err = capsys.readouterr().err
    assert f"entries[0] ({NODE}): its signature does not verify" in err
    assert "owner alice, issue https://example.com/i/1" in err
    assert cli(project, "quarantine", "list") == 0
    assert "tampered" in capsys.readouterr().out
    assert cli(project, "quarantine", "renew", NODE, "--reason", "more", "--expires", day(9)) == 5


def test_verify_an_unsigned_entry_warns_locally_and_fails_in_ci(project, capsys, monkeypatch):
    assert cli(project, "quarantine", "add", NODE, *fields()) == 0
    path = project.path / FILE
    document = json.loads(path.read_text())
    document["entries"][0]["signatures"] = []
    path.write_text(json.dumps(document))
    capsys.readouterr()
    assert cli(project, "verify") == 0
    assert f"entries[0] ({NODE}): not signed" in capsys.readouterr().err
    monkeypatch.setenv("CI", "true")
    assert cli(project, "verify") == 15
    assert f"entries[0] ({NODE}): not signed" in capsys.readouterr().err


def test_an_expired_entry_as_the_session_sees_it(project, capsys, monkeypatch):
    """``$RTGOV_TODAY`` moves the day for the commands as for a session."""
    assert cli(project, "quarantine", "add", NODE, *fields(expires=day(3))) == 0
    monkeypatch.setenv("RTGOV_TODAY", day(3))
    capsys.readouterr()
    assert cli(project, "quarantine", "list") == 0
    assert f"{day(3)}  expired" in capsys.readouterr().out
    assert cli(project, "verify") == 0
    assert f"entries[0] ({NODE}): expired on {day(3)}" in capsys.readouterr().err
    renewal = ["--reason", "the fix slipped a week", "--expires", day(10)]
    assert cli(project, "quarantine", "renew", NODE, *renewal) == 0
    assert cli(project, "quarantine", "show", NODE) == 0
    out = capsys.readouterr().out
    assert f"created: {day(3)}" in out and "state: valid" in out


def test_a_removed_entry_put_back_from_history_is_revoked(project, capsys, monkeypatch):
    """The signed envelope is genuine, but the ledger ended it: it excuses nothing."""
    path = project.path / FILE
    assert cli(project, "quarantine", "add", NODE, *fields()) == 0
    signed = path.read_bytes()
    assert cli(project, "quarantine", "remove", NODE, "--reason", "fixed") == 0
    path.write_bytes(signed)  # `git checkout OLD -- rtgov.quarantine.json`
    capsys.readouterr()
    assert cli(project, "quarantine", "list") == 0
    assert "revoked" in capsys.readouterr().out
    assert cli(project, "quarantine", "show", NODE) == 0
    assert "state: revoked" in capsys.readouterr().out
    renewal = ["--reason", "put back on purpose", "--expires", day(8)]
    assert cli(project, "quarantine", "renew", NODE, *renewal) == 5  # add it anew instead
    assert cli(project, "verify") == 0
    assert f"entries[0] ({NODE}): the ledger records its removal" in capsys.readouterr().err
    project.makepyfile(test_suite=SUITE.replace("    pass\n", "    assert False\n", 1))
    assert project.runpytest("--rtgov").ret == 1  # the failure is not excused
    monkeypatch.setenv("CI", "true")
    assert cli(project, "verify") == 15
    monkeypatch.delenv("CI")
    assert cli(project, "quarantine", "add", NODE, *fields()) == 4  # a subject with an entry
    path.unlink()
    assert cli(project, "quarantine", "add", NODE, *fields()) == 0  # the same bytes again
    assert cli(project, "quarantine", "list") == 0
    assert "valid" in capsys.readouterr().out.splitlines()[-1]


def test_a_key_outside_the_keyring_signs_nothing(project, capsys, monkeypatch):
    """Neither a keyring key nor the local key: its entry would excuse nothing and its
    checkpoint would make `rtgov verify` fail from then on. Refused before any write."""
    assert cli(project, "quarantine", "add", NODE, *fields()) == 0
    before = (project.path / FILE).read_bytes(), len(leaves(project))
    stranger = ["--keyring", str(project.path / "stranger.keyring")]
    assert cli(project, "keys", "generate", "stranger", "-o", "stranger.key", *stranger) == 0
    monkeypatch.setenv("RTGOV_SIGNING_KEY", str(project.path / "stranger.key"))
    capsys.readouterr()
    subject = "test_suite.py::test_param"
    assert cli(project, "quarantine", "add", subject, *fields()) == 2
    assert "neither in" in capsys.readouterr().err
    assert ((project.path / FILE).read_bytes(), len(leaves(project))) == before
    assert cli(project, "verify") == 0


def test_the_issue_is_a_url(project, capsys):
    assert cli(project, "quarantine", "add", NODE, *fields(issue="not a url")) == 4
    assert "--issue: expected a URL" in capsys.readouterr().err
    assert not (project.path / FILE).exists()
