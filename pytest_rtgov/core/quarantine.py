"""Quarantine entries: what one entry says, its checks, and its state on a day.

An entry is reviewed, signed code in ``rtgov.quarantine.json``: a DSSE envelope over an
in-toto Statement v1 whose subject is a test node id or ``gate:NAME[:SUBJECT]`` and whose
predicate (:data:`QUARANTINE_PREDICATE`) names the owner, reason, issue, creation and
expiry dates and evidence digests. This module is pure: it validates entries, builds and
reads their statements, and looks entries up
(:mod:`.quarantine_envelope` checks an envelope against given keys on a given day);
``store/quarantine_file.py`` reads and writes the file.

An entry is active on the days ``created <= day < expires``: on its ``expires`` date it
has expired (the duration ``expires - created`` counts exactly its active days).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

from pytest_rtgov.core.canonical import canonical_json
from pytest_rtgov.core.constants import ExitCode
from pytest_rtgov.core.dsse import statement
from pytest_rtgov.errors import ReadError, RtgovError

__all__ = [
    "ACTIONS",
    "DEFAULT_MAX_DAYS",
    "ENTRY_STATES",
    "LEAF_ACTIONS",
    "LIMITS",
    "MAX_DAYS_CAP",
    "QUARANTINED_FAIL",
    "QUARANTINED_PASS",
    "QUARANTINE_FILE",
    "QUARANTINE_PREDICATE",
    "CheckedEntry",
    "Entry",
    "Quarantine",
    "QuarantineEntryError",
    "QuarantineFileError",
    "check_max_days",
    "covers",
    "parse_day",
    "quarantine_leaf",
    "subject_sha256",
]

QUARANTINE_FILE: Final = "rtgov.quarantine.json"
QUARANTINE_PREDICATE: Final = "https://pytest-rtgov.dev/quarantine/v1"
DEFAULT_MAX_DAYS, MAX_DAYS_CAP = 14, 90
# revoked: a signed envelope the ledger records as removed or replaced, put back.
ENTRY_STATES = ("valid", "expired", "unsigned", "untrusted", "tampered", "revoked")
QUARANTINED_PASS, QUARANTINED_FAIL = "quarantined-pass", "quarantined-fail"
ACTIONS = ("add", "renew")  # a predicate's action; the ledger adds remove and expired
LEAF_ACTIONS = ("add", "renew", "remove", "expired")
# The longest text each field may hold (characters): a longer one is refused.
LIMITS: Final = {"subject": 1000, "owner": 200, "reason": 2000, "issue": 500}
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_EVIDENCE = re.compile(r"sha256:[0-9a-f]{64}")
_PREDICATE_KEYS = ("owner", "reason", "issue", "created", "expires", "evidence", "action")


class QuarantineEntryError(RtgovError):
    """An entry's field is missing or not what was expected (exit 4, in both faces)."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, message: str, *, field: str = "") -> None:
        self.field = field
        super().__init__(message)


class QuarantineFileError(QuarantineEntryError, ReadError):
    """The quarantine file cannot be read: names the file, the entry and what was expected."""

    def __init__(self, source: str, place: str, expected: str) -> None:
        self.source, self.place, self.expected = source, place, expected
        super().__init__(f"{source}: at {place}: expected {expected}", field=place)


def _fail(field: str, expected: str, got: object) -> QuarantineEntryError:
    return QuarantineEntryError(f"{field}: expected {expected}, got {got!r}", field=field)


def parse_day(value: object, field: str) -> date:
    """An ISO ``YYYY-MM-DD`` date; anything else names ``field`` and what was expected."""
    if not isinstance(value, str) or not _DAY.fullmatch(value):
        raise _fail(field, "a date YYYY-MM-DD", value)
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise _fail(field, f"a real date YYYY-MM-DD ({exc})", value) from exc


def check_max_days(value: object, field: str = "max_days") -> int:
    """The longest allowed duration: an integer within 1..:data:`MAX_DAYS_CAP`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DAYS_CAP:
        raise _fail(field, f"an integer number of days from 1 to {MAX_DAYS_CAP}", value)
    return value


def _text(field: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(field, "a non-empty string", value)
    if len(value) > LIMITS[field]:
        raise QuarantineEntryError(
            f"{field}: expected at most {LIMITS[field]} characters, got {len(value)}", field=field
        )
    if field != "reason" and any(ch.isspace() and ch != " " for ch in value):
        raise _fail(field, "one line of text", value)
    return value


def _check_subject(subject: object) -> str:
    text = _text("subject", subject)
    if text != text.strip():
        raise _fail("subject", "no leading or trailing whitespace", text)
    if text.startswith("gate:"):
        name, sep, rest = text[5:].partition(":")
        if not name.strip() or (sep and not rest.strip()):
            raise _fail("subject", "gate:NAME or gate:NAME:SUBJECT", text)
        return text
    if "::" not in text:
        raise _fail("subject", "a test node id (path::name) or gate:NAME[:SUBJECT]", text)
    return text


def subject_sha256(subject: str) -> str:
    """The statement subject's digest: sha256 of the subject's UTF-8, 64 hex digits."""
    return hashlib.sha256(subject.encode("utf-8")).hexdigest()


def covers(pattern: str, name: str) -> bool:
    """``pattern`` names ``name`` itself or, without parameters, its parametrizations."""
    return name == pattern or (not pattern.endswith("]") and name.startswith(pattern + "["))


@dataclass(frozen=True, slots=True)
class Entry:
    """One quarantine entry: who owns it, why, where it is tracked, and until when.

    Construction validates every field (:class:`QuarantineEntryError` names the field);
    :meth:`check_duration` adds the checks of a new entry (not in the past, within the
    longest allowed duration)."""

    subject: str
    owner: str
    reason: str
    issue: str
    created: str
    expires: str
    evidence: tuple[str, ...] = ()
    action: str = "add"

    def __post_init__(self) -> None:
        _check_subject(self.subject)
        for field in ("owner", "reason", "issue"):
            _text(field, getattr(self, field))
        created = parse_day(self.created, "created")
        expires = parse_day(self.expires, "expires")
        if expires <= created:
            raise _fail("expires", f"a date after created ({self.created})", self.expires)
        if not isinstance(self.evidence, tuple):
            raise _fail("evidence", "a tuple of sha256:<hex> digests", self.evidence)
        for digest in self.evidence:
            if not isinstance(digest, str) or not _EVIDENCE.fullmatch(digest):
                raise _fail("evidence", "sha256:<64 lowercase hex digits>", digest)
        if self.action not in ACTIONS:
            raise _fail("action", " or ".join(ACTIONS), self.action)

    @property
    def kind(self) -> str:
        return "gate" if self.subject.startswith("gate:") else "test"

    @property
    def gate(self) -> tuple[str, str | None]:
        """(gate name, its subject or None for every subject); only for a gate entry."""
        name, sep, rest = self.subject[5:].partition(":")
        return name, (rest if sep else None)

    def check_duration(self, *, today: date, max_days: int) -> Entry:
        """Checks of a new or renewed entry: expires after today and at most ``max_days``
        after created; returns the entry."""
        check_max_days(max_days)
        expires = date.fromisoformat(self.expires)
        if expires <= today:
            raise _fail("expires", f"a date after today ({today.isoformat()})", self.expires)
        days = (expires - date.fromisoformat(self.created)).days
        if days > max_days:
            raise QuarantineEntryError(
                f"expires: expected at most {max_days} days after created ({self.created}; "
                f"[quarantine] max_days), got {self.expires}, {days} days",
                field="expires",
            )
        return self

    def matches_test(self, nodeid: str) -> bool:
        """A test entry naming ``nodeid``, or its function without parameters."""
        return self.kind == "test" and covers(self.subject, nodeid)

    def subject_of_gate(self, gate: str) -> str | None:
        """For an entry of ``gate`` (a name that may itself hold ``:``), the SUBJECT of
        ``gate:NAME:SUBJECT``, ``""`` for ``gate:NAME``; None when it is not ``gate``'s."""
        prefix = f"gate:{gate}"
        if self.kind != "gate" or not self.subject.startswith(prefix):
            return None
        rest = self.subject[len(prefix) :]
        return rest[1:] if rest.startswith(":") else ("" if not rest else None)

    def matches_gate(self, gate: str, subject: str) -> bool:
        """A gate entry naming ``gate`` and either every subject or this ``subject``
        (matched on the gate's whole name: ``gate:perf:gpu`` is gate ``perf:gpu``'s
        entry, and gate ``perf``'s for its subject ``gpu``)."""
        only = self.subject_of_gate(gate)
        return only is not None and (only == "" or covers(only, subject))

    def state_on(self, day: date) -> str:
        """``valid`` on the days ``created <= day < expires`` when the two are at most
        :data:`MAX_DAYS_CAP` apart, else ``expired`` (:meth:`expiry_detail` says why):
        a signed entry dated ahead, or longer than the hard cap, excuses nothing."""
        return "expired" if self.expiry_detail(day) else "valid"

    def expiry_detail(self, day: date) -> str:
        """Why the entry does not excuse on ``day`` (empty: it does)."""
        created, expires = date.fromisoformat(self.created), date.fromisoformat(self.expires)
        if day >= expires:
            return f"expired on {self.expires}"
        if day < created:
            return f"not valid before its created day {self.created}"
        if (expires - created).days > MAX_DAYS_CAP:
            return f"spans {(expires - created).days} days, beyond the cap of {MAX_DAYS_CAP}"
        return ""

    def to_predicate(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "reason": self.reason,
            "issue": self.issue,
            "created": self.created,
            "expires": self.expires,
            "evidence": list(self.evidence),
            "action": self.action,
        }

    def statement(self) -> bytes:
        """The canonical in-toto Statement v1 this entry is signed as."""
        return statement(
            {self.subject: subject_sha256(self.subject)},
            predicate_type=QUARANTINE_PREDICATE,
            predicate=self.to_predicate(),
        )

    @classmethod
    def from_statement(cls, document: Mapping[str, Any], source: str, place: str) -> Entry:
        """The entry a parsed statement holds; a bad one is a :class:`QuarantineFileError`
        naming ``source`` (the file) and ``place`` (the entry)."""
        if document.get("predicateType") != QUARANTINE_PREDICATE:
            got = document.get("predicateType")
            raise QuarantineFileError(source, place, f"predicateType {QUARANTINE_PREDICATE}, "
                                      f"got {got!r}")  # fmt: skip
        subjects = document.get("subject")
        if not isinstance(subjects, list) or len(subjects) != 1:
            raise QuarantineFileError(source, place, "exactly one statement subject")
        name = subjects[0].get("name")
        if subjects[0].get("digest") != {"sha256": subject_sha256(str(name))}:
            raise QuarantineFileError(
                source, place, f"subject {name!r} with digest sha256 of its name"
            )
        predicate = document.get("predicate")
        if not isinstance(predicate, dict) or set(predicate) != set(_PREDICATE_KEYS):
            keys = sorted(predicate) if isinstance(predicate, dict) else predicate
            raise QuarantineFileError(
                source, place, f"a predicate with keys {', '.join(_PREDICATE_KEYS)}, got {keys}"
            )
        evidence = predicate["evidence"]
        if not isinstance(evidence, list):
            raise QuarantineFileError(source, f"{place}.evidence", "a list of digests")
        try:
            return cls(
                subject=name,
                evidence=tuple(evidence),
                **{key: predicate[key] for key in _PREDICATE_KEYS if key != "evidence"},
            )
        except QuarantineEntryError as exc:
            raise QuarantineFileError(source, f"{place}.{exc.field}", str(exc)) from exc


@dataclass(frozen=True, slots=True)
class CheckedEntry:
    """An entry as checked against the keyring on a day; only an active one excuses."""

    entry: Entry
    id: str
    state: str
    keyid: str | None = None
    detail: str = ""

    @property
    def active(self) -> bool:
        return self.state == "valid"

    def to_dict(self) -> dict[str, Any]:
        e = self.entry
        return {
            "id": self.id,
            "subject": e.subject,
            "owner": e.owner,
            "reason": e.reason,
            "issue": e.issue,
            "created": e.created,
            "expires": e.expires,
            "evidence": list(e.evidence),
            "state": self.state,
            "keyid": self.keyid,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Quarantine:
    """Every entry of the quarantine file, checked, sorted by subject."""

    entries: tuple[CheckedEntry, ...] = ()

    def for_test(self, nodeid: str) -> CheckedEntry | None:
        """The entry for a test: its exact node id first, then its unparametrized name."""
        found = [c for c in self.entries if c.entry.matches_test(nodeid)]
        found.sort(key=lambda c: (c.entry.subject != nodeid, not c.active))
        return found[0] if found else None

    def for_gate(self, gate: str, subject: str) -> CheckedEntry | None:
        """The entry for one gate result: ``gate:NAME:SUBJECT`` before ``gate:NAME``."""
        found = [c for c in self.entries if c.entry.matches_gate(gate, subject)]
        found.sort(key=lambda c: (c.entry.subject_of_gate(gate) == "",
                                  c.entry.subject_of_gate(gate) != subject,
                                  not c.active))  # fmt: skip
        return found[0] if found else None

    def problems(self) -> tuple[CheckedEntry, ...]:
        """Entries that excuse nothing: expired, unsigned, untrusted or tampered."""
        return tuple(c for c in self.entries if not c.active)


def quarantine_leaf(action: str, checked: CheckedEntry, *, at: str, **extra: Any) -> bytes:
    """The ``quarantine`` ledger leaf of one change to the file (or of an entry found
    expired): ``action`` (:data:`LEAF_ACTIONS`), the subject, the entry's id, owner, issue
    and expiry, when (``at``), and ``extra`` (``reason``, ``who``, ``replaces``, ...)."""
    if action not in LEAF_ACTIONS:
        raise ValueError(f"expected a quarantine action in {LEAF_ACTIONS}, got {action!r}")
    e = checked.entry
    return canonical_json({
        **extra, "kind": "quarantine", "action": action, "subject": e.subject,
        "entry": checked.id, "owner": e.owner, "issue": e.issue, "expires": e.expires, "at": at,
    })  # fmt: skip
