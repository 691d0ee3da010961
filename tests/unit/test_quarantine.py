"""Quarantine entries (core): validation, statements, states, lookups."""

from __future__ import annotations

import base64
import copy
import json
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_rtgov.core.constants import ExitCode
from pytest_rtgov.core.dsse import PAYLOAD_TYPE_INTOTO, sign_envelope
from pytest_rtgov.core.exit_codes import exit_code_for
from pytest_rtgov.core.keys import generate_signer
from pytest_rtgov.core.quarantine import (
    LIMITS,
    MAX_DAYS_CAP,
    CheckedEntry,
    Entry,
    Quarantine,
    QuarantineEntryError,
    QuarantineFileError,
    check_max_days,
)
from pytest_rtgov.core.quarantine_envelope import check_envelope, entry_id

TODAY = date(2026, 11, 30)
SIGNER = generate_signer("team")
OTHER = generate_signer("someone")
FIELDS: dict[str, Any] = {
    "subject": "tests/test_x.py::test_y",
    "owner": "alice",
    "reason": "flaky on shared runners",
    "issue": "https://example.com/issues/1",
    "created": "2026-11-30",
    "expires": "2026-12-10",
}


def entry(**over: Any) -> Entry:
    return Entry(**{**FIELDS, **over})


def envelope(e: Entry, signers: list[Any] | None = None) -> dict[str, Any]:
    return sign_envelope(e.statement(), PAYLOAD_TYPE_INTOTO, signers or [SIGNER])


def check(env: Any, *, today: date = TODAY, trusted: Any = None) -> CheckedEntry:
    trusted = [SIGNER.verifier()] if trusted is None else trusted
    return check_envelope(env, trusted=trusted, today=today, source="q.json", place="entries[0]")


@pytest.mark.parametrize("field", ["subject", "owner", "reason", "issue", "created", "expires"])
@pytest.mark.parametrize("value", ["", "   ", None])
def test_every_field_required(field: str, value: Any) -> None:
    with pytest.raises(QuarantineEntryError, match=field) as info:
        entry(**{field: value})
    assert info.value.field == field
    assert exit_code_for(info.value) == ExitCode.BAD_INPUT
    assert exit_code_for(info.value, face="session") == ExitCode.BAD_INPUT


@pytest.mark.parametrize("field", sorted(LIMITS))
def test_too_long_text_refused(field: str) -> None:
    value = "x" * (LIMITS[field] + 1)
    if field == "subject":
        value = "tests/a.py::" + value
    with pytest.raises(QuarantineEntryError, match=f"at most {LIMITS[field]} characters"):
        entry(**{field: value})


@pytest.mark.parametrize(
    "subject",
    ["test_y", "gate:", "gate::x", "gate:name:", " tests/a.py::t", "tests/a.py::t\n"],
)
def test_bad_subjects(subject: str) -> None:
    with pytest.raises(QuarantineEntryError, match="subject"):
        entry(subject=subject)


@pytest.mark.parametrize(
    "day", ["2026-2-01", "20261201", "2026-02-30", "tomorrow", "2026-12-01T00"]
)
def test_dates_are_iso_days(day: str) -> None:
    with pytest.raises(QuarantineEntryError, match="expires: expected a"):
        entry(expires=day)


def test_expires_after_created() -> None:
    with pytest.raises(QuarantineEntryError, match=r"after created \(2026-11-30\)"):
        entry(expires="2026-11-30")


def test_evidence_digests() -> None:
    good = "sha256:" + "a" * 64
    assert entry(evidence=(good,)).evidence == (good,)
    with pytest.raises(QuarantineEntryError, match="evidence"):
        entry(evidence=("sha256:xyz",))


@settings(max_examples=200, deadline=None)
@given(
    offset=st.integers(min_value=-30, max_value=30),
    days=st.integers(min_value=1, max_value=120),
    max_days=st.integers(min_value=1, max_value=MAX_DAYS_CAP),
)
def test_duration_rules(offset: int, days: int, max_days: int) -> None:
    created = TODAY + timedelta(days=offset)
    e = entry(created=created.isoformat(), expires=(created + timedelta(days=days)).isoformat())
    ok = created + timedelta(days=days) > TODAY and days <= max_days
    if ok:
        assert e.check_duration(today=TODAY, max_days=max_days) is e
    else:
        with pytest.raises(QuarantineEntryError, match="expires"):
            e.check_duration(today=TODAY, max_days=max_days)


@given(st.one_of(st.integers(), st.booleans(), st.text(), st.none()))
def test_max_days_within_cap(value: Any) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_DAYS_CAP:
        assert check_max_days(value) == value
    else:
        with pytest.raises(QuarantineEntryError, match="max_days"):
            check_max_days(value)


@settings(max_examples=100)
@given(days=st.integers(min_value=1, max_value=90), at=st.integers(min_value=0, max_value=120))
def test_state_on_a_day(days: int, at: int) -> None:
    created = date(2026, 1, 1)
    e = entry(created=created.isoformat(), expires=(created + timedelta(days=days)).isoformat())
    assert e.state_on(created + timedelta(days=at)) == ("valid" if at < days else "expired")


def test_a_signed_entry_dated_ahead_or_beyond_the_cap_excuses_nothing() -> None:
    """Signed is not enough: the session checks the window as ``add`` does."""
    ahead = check(envelope(entry(created="2026-12-05", expires="2026-12-10")))
    assert ahead.state == "expired" and "not valid before" in ahead.detail
    long = entry(created="2026-11-20", expires="2027-03-01")  # 101 days
    checked = check(envelope(long))
    assert checked.state == "expired" and "beyond the cap of 90" in checked.detail
    assert entry(created="2026-11-20", expires="2027-02-18").state_on(TODAY) == "valid"  # 90


def test_statement_round_trip_and_states() -> None:
    e = entry(evidence=("sha256:" + "b" * 64,))
    env = envelope(e)
    checked = check(env)
    assert checked.entry == e and checked.state == "valid" and checked.active
    assert checked.id == entry_id(env) and checked.id.startswith("sha256:")
    assert checked.keyid and checked.keyid.startswith("team+")
    assert set(checked.to_dict()) == {
        "id", "subject", "owner", "reason", "issue", "created", "expires", "evidence",
        "state", "keyid", "detail",
    }  # fmt: skip
    expired = check(env, today=date(2026, 12, 10))
    assert expired.state == "expired" and not expired.active and "2026-12-10" in expired.detail


def _edit(env: dict[str, Any], **predicate: Any) -> dict[str, Any]:
    env = copy.deepcopy(env)
    document = json.loads(base64.b64decode(env["payload"]))
    document["predicate"].update(predicate)
    env["payload"] = base64.b64encode(json.dumps(document).encode()).decode()
    return env


def test_hand_edit_is_tampered_unsigned_untrusted() -> None:
    env = envelope(entry())
    assert check(_edit(env, expires="2026-12-12")).state == "tampered"
    assert check(_edit(env, owner="mallory")).state == "tampered"
    assert check({**env, "signatures": []}).state == "unsigned"
    assert check(envelope(entry(), [OTHER])).state == "untrusted"
    local = check_envelope(
        envelope(entry(), [OTHER]), trusted=[SIGNER.verifier()], others=[OTHER.verifier()],
        today=TODAY, source="q", place="entries[0]",
    )  # fmt: skip
    assert local.state == "untrusted" and local.keyid and local.keyid.startswith("someone+")


@pytest.mark.parametrize(
    ("env", "place"),
    [
        ("not an object", "DSSE envelope"),
        ({"payload": "", "payloadType": PAYLOAD_TYPE_INTOTO}, "missing .'signatures'"),
        ({"payload": "!!", "payloadType": PAYLOAD_TYPE_INTOTO, "signatures": []}, "payload"),
        ({"payload": "e30=", "payloadType": PAYLOAD_TYPE_INTOTO, "signatures": []}, "payload"),
    ],
)
def test_malformed_envelopes(env: Any, place: str) -> None:
    with pytest.raises(QuarantineFileError, match=rf"q\.json: at entries\[0\].*{place}"):
        check(env)


def test_bad_predicate_names_entry_and_field() -> None:
    env = _edit(envelope(entry()), owner="")
    with pytest.raises(QuarantineFileError, match=r"q\.json: at entries\[0\]\.owner"):
        check(env)


def test_lookups_prefer_the_most_specific_entry() -> None:
    def checked(subject: str, state: str = "valid") -> CheckedEntry:
        return CheckedEntry(entry(subject=subject), "sha256:" + subject, state)

    q = Quarantine((
        checked("tests/a.py::t"),
        checked("tests/a.py::t[1]", "expired"),
        checked("gate:speed"),
        checked("gate:speed:tests/a.py::t"),
    ))  # fmt: skip
    found = q.for_test("tests/a.py::t[1]")
    assert found is not None and found.entry.subject == "tests/a.py::t[1]"
    found = q.for_test("tests/a.py::t[2]")
    assert found is not None and found.entry.subject == "tests/a.py::t"
    assert q.for_test("tests/a.py::tt") is None
    found = q.for_gate("speed", "tests/a.py::t")
    assert found is not None and found.entry.subject == "gate:speed:tests/a.py::t"
    found = q.for_gate("speed", "other")
    assert found is not None and found.entry.subject == "gate:speed"
    assert q.for_gate("memory", "other") is None
    assert [c.entry.subject for c in q.problems()] == ["tests/a.py::t[1]"]
    assert entry(subject="gate:speed").kind == "gate" and entry().kind == "test"


def test_gate_names_are_matched_whole_even_with_colons() -> None:
    """gates.toml allows ``:`` in a gate's name: ``gate:perf:gpu`` is that gate's."""
    whole = entry(subject="gate:perf:gpu")
    assert whole.matches_gate("perf:gpu", "tests/a.py::t")  # every subject of perf:gpu
    assert whole.matches_gate("perf", "gpu") and not whole.matches_gate("perf", "t")
    assert not whole.matches_gate("perf:gp", "u") and not whole.matches_gate("perf:gpux", "t")
    one = entry(subject="gate:perf:gpu:tests/a.py::t")
    assert one.matches_gate("perf:gpu", "tests/a.py::t")
    assert not one.matches_gate("perf:gpu", "tests/a.py::u")
    q = Quarantine(
        (CheckedEntry(whole, "sha256:w", "valid"), CheckedEntry(one, "sha256:o", "valid"))
    )
    found = q.for_gate("perf:gpu", "tests/a.py::t")
    assert found is not None and found.id == "sha256:o"  # the more specific one


def test_gates_toml_quarantine_max_days() -> None:
    from pytest_rtgov.core.gates_config import GatesConfigError, parse_gates

    assert parse_gates({}, source="gates.toml").quarantine_max_days == 14
    assert parse_gates({"quarantine": {"max_days": 90}}, source="g").quarantine_max_days == 90
    for bad in (0, 91, "7", True, 1.5):
        with pytest.raises(GatesConfigError, match=r"gates\.toml: at quarantine\.max_days") as info:
            parse_gates({"quarantine": {"max_days": bad}}, source="gates.toml")
        assert exit_code_for(info.value) == ExitCode.BAD_INPUT


def test_quarantine_leaf_carries_its_required_fields() -> None:
    from pytest_rtgov.core.ledger_records import parse_leaf
    from pytest_rtgov.core.quarantine import quarantine_leaf

    checked = check(envelope(entry()))
    leaf = parse_leaf(quarantine_leaf("add", checked, at="2026-11-30T00:00:00Z", reason="r"))
    assert leaf["action"] == "add" and leaf["subject"] == FIELDS["subject"]
    assert leaf["entry"] == checked.id and leaf["owner"] == "alice" and leaf["reason"] == "r"
    with pytest.raises(ValueError, match="action"):
        quarantine_leaf("bogus", checked, at="t")
