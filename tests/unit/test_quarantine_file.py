"""rtgov.quarantine.json on disk: read, checked against the keyring, written, removed."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from pytest_rtgov.core.keys import generate_signer
from pytest_rtgov.core.quarantine import Entry, QuarantineFileError
from pytest_rtgov.store.keys import Trust
from pytest_rtgov.store.quarantine_file import (
    EntryNotFoundError,
    load_quarantine,
    quarantine_path,
    read_quarantine_file,
    remove_entry,
    sign_entry,
    write_entry,
)

TODAY = date(2026, 11, 30)
TEAM = generate_signer("team")
LOCAL = generate_signer("rtgov-local-untrusted-box")
TRUST = Trust(keyring=(TEAM.verifier(),), local=(LOCAL.verifier(),), keyring_path=None,
              required=False)  # fmt: skip


def entry(subject: str = "tests/a.py::test_a", **over: str) -> Entry:
    fields: dict[str, Any] = {"owner": "alice", "reason": "flaky", "issue": "https://x/1",
              "created": "2026-11-30", "expires": "2026-12-07", **over}  # fmt: skip
    return Entry(subject=subject, **fields)


def test_a_missing_file_is_an_empty_quarantine(tmp_path: Path) -> None:
    assert load_quarantine(tmp_path, TRUST, today=TODAY).entries == ()
    assert read_quarantine_file(quarantine_path(tmp_path)).digest is None


def test_write_keeps_other_entries_byte_for_byte_and_sorts(tmp_path: Path) -> None:
    write_entry(tmp_path, entry("tests/b.py::t"), TEAM, trust=TRUST, today=TODAY)
    write_entry(tmp_path, entry("gate:speed"), LOCAL, trust=TRUST, today=TODAY)
    before = json.loads(quarantine_path(tmp_path).read_text())["entries"]
    checked, replaced = write_entry(
        tmp_path, entry("tests/b.py::t", reason="still flaky", action="renew"), TEAM,
        trust=TRUST, today=TODAY,
    )  # fmt: skip
    assert replaced is not None and replaced.entry.reason == "flaky"
    assert checked.entry.action == "renew" and checked.state == "valid"
    data = quarantine_path(tmp_path).read_bytes()
    after = json.loads(data)["entries"]
    assert after[0] == before[0]  # gate:speed untouched
    file = read_quarantine_file(quarantine_path(tmp_path))
    assert file.subjects() == ["gate:speed", "tests/b.py::t"]
    assert file.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    states = {c.entry.subject: c.state for c in load_quarantine(tmp_path, TRUST, today=TODAY)
              .entries}  # fmt: skip
    assert states == {"gate:speed": "untrusted", "tests/b.py::t": "valid"}
    later = load_quarantine(tmp_path, TRUST, today=date(2026, 12, 7))
    assert [c.state for c in later.entries] == ["untrusted", "expired"]
    assert {c.state for c in load_quarantine(tmp_path, None, today=TODAY).entries} == {
        "untrusted"
    }


def test_remove(tmp_path: Path) -> None:
    write_entry(tmp_path, entry(), TEAM, trust=TRUST, today=TODAY)
    with pytest.raises(EntryNotFoundError, match="no entry for 'gate:x'"):
        remove_entry(tmp_path, "gate:x", trust=TRUST, today=TODAY)
    removed = remove_entry(tmp_path, "tests/a.py::test_a", trust=TRUST, today=TODAY)
    assert removed.state == "valid"
    assert json.loads(quarantine_path(tmp_path).read_text()) == {"version": 1, "entries": []}


def test_a_subject_twice_names_both_entries(tmp_path: Path) -> None:
    envelope = sign_entry(entry(), TEAM)
    path = quarantine_path(tmp_path)
    path.write_text(json.dumps({"version": 1, "entries": [envelope, envelope]}))
    with pytest.raises(QuarantineFileError, match=r"at entries\[1\]: .*is entries\[0\] too"):
        load_quarantine(tmp_path, TRUST, today=TODAY)
    with pytest.raises(QuarantineFileError):
        write_entry(tmp_path, entry("gate:y"), TEAM, trust=TRUST, today=TODAY)
    assert json.loads(path.read_text())["entries"] == [envelope, envelope]  # kept


@pytest.mark.parametrize(
    ("document", "place"),
    [
        ('{"version": 1, "entries": {}}', "at entries: expected a list"),
        ('{"version": true, "entries": []}', "at version: expected 1"),
        ('{"version": 1, "version": 1, "entries": []}', "expected unique JSON object keys"),
        ("[]", 'expected an object with keys "entries" and "version", got list'),
    ],
)
def test_malformed_documents(tmp_path: Path, document: str, place: str) -> None:
    quarantine_path(tmp_path).write_text(document)
    with pytest.raises(QuarantineFileError, match=r"rtgov\.quarantine\.json") as info:
        load_quarantine(tmp_path, TRUST, today=TODAY)
    assert place in str(info.value)


def test_verify_findings_by_state(tmp_path: Path) -> None:
    from dataclasses import replace

    from pytest_rtgov.store.verify import VerifyFailure, VerifyReport
    from pytest_rtgov.store.verify.quarantine import verify_quarantine

    path = quarantine_path(tmp_path)
    verify_quarantine(path, TRUST, VerifyReport(), today=TODAY)  # no file: nothing
    write_entry(tmp_path, entry("tests/a.py::t"), TEAM, trust=TRUST, today=TODAY)
    write_entry(tmp_path, entry("tests/b.py::t"), LOCAL, trust=TRUST, today=TODAY)
    report = VerifyReport()
    verify_quarantine(path, TRUST, report, today=date(2026, 12, 8))
    assert report.warnings == [
        f"{path}: entries[0] (tests/a.py::t): expired on 2026-12-07: it excuses nothing; "
        "renew or remove it; owner alice, issue https://x/1",
        f"{path}: entries[1] (tests/b.py::t): not signed by a keyring key (signed by "
        f"{LOCAL.verifier().name}+{LOCAL.verifier().key_id.hex()}, not in keyring); "
        "owner alice, issue https://x/1",
    ]
    assert report.notes == [f"{path}: 2 quarantine entries, 0 valid"]
    with pytest.raises(VerifyFailure, match=r"entries\[1\] \(tests/b.py::t\): not signed by"):
        verify_quarantine(path, replace(TRUST, required=True), VerifyReport(), today=TODAY)
    document = json.loads(path.read_text())
    document["entries"][0]["payload"] = sign_entry(entry("tests/a.py::t", owner="eve"), TEAM)[
        "payload"
    ]  # a valid statement under another statement's signature
    path.write_text(json.dumps(document))
    with pytest.raises(VerifyFailure, match=r"entries\[0\] .*signature does not verify") as info:
        verify_quarantine(path, TRUST, VerifyReport(), today=TODAY)
    assert info.value.exit_code == 15 and "owner eve" in str(info.value)
