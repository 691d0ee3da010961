"""The quarantine file's disk edge: read, check, sign and write ``rtgov.quarantine.json``.

The file sits at the project root, next to ``rtgov.keyring``, and is committed and
reviewed like code: ``{"version": 1, "entries": [<DSSE envelope>, ...]}``, the envelopes
sorted by subject, one per subject, written sorted and indented (the canonical content,
one key a line, so a review diff shows which entry changed). An envelope already in the
file is kept byte for byte when another entry is added, renewed or removed; a file that
does not read is never rewritten (nothing recorded is lost).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from pytest_rtgov.core.canonical import pretty_json
from pytest_rtgov.core.dsse import PAYLOAD_TYPE_INTOTO, reject_duplicate_keys, sign_envelope
from pytest_rtgov.core.keys import Signer
from pytest_rtgov.core.quarantine import (
    QUARANTINE_FILE,
    CheckedEntry,
    Entry,
    Quarantine,
    QuarantineFileError,
)
from pytest_rtgov.core.quarantine_envelope import check_envelope
from pytest_rtgov.errors import NotFoundError, RecordFormatError
from pytest_rtgov.store.files import atomic_write, read_bytes, utf8_text
from pytest_rtgov.store.keys.keyring import Trust

__all__ = [
    "FILE_VERSION",
    "EntryNotFoundError",
    "QuarantineFile",
    "check_file",
    "load_quarantine",
    "quarantine_path",
    "read_quarantine_file",
    "remove_entry",
    "sign_entry",
    "write_entry",
]

FILE_VERSION = 1


class EntryNotFoundError(NotFoundError):
    """No entry of the quarantine file has that subject."""


@dataclass(frozen=True)
class QuarantineFile:
    """The file as read: its path, its bytes' digest (None: no file), each envelope
    with the subject its statement names, in file order."""

    path: Path
    digest: str | None
    envelopes: tuple[tuple[str, dict[str, Any]], ...]

    def subjects(self) -> list[str]:
        return [subject for subject, _ in self.envelopes]

    def get(self, subject: str) -> dict[str, Any] | None:
        return next((env for s, env in self.envelopes if s == subject), None)


def quarantine_today(*, required: bool = False) -> date:
    """The day entries are checked and created on: today in UTC, or ``$RTGOV_TODAY``
    (``core/quarantine_record.py``, ``today_from``: only forward where signatures are
    ``required``). The one clock of the quarantine: a session, its commands, verify."""
    import os
    from datetime import datetime, timezone

    from pytest_rtgov.core.quarantine_record import today_from

    return today_from(os.environ, datetime.now(timezone.utc).date(), required=required)


def quarantine_path(root: Path) -> Path:
    """``rtgov.quarantine.json`` in the project root ``root``."""
    return root / QUARANTINE_FILE


def _decode(path: Path, data: bytes) -> Any:
    source = str(path)
    try:
        text = utf8_text(path, data)
    except RecordFormatError as exc:
        raise QuarantineFileError(exc.source, exc.place, exc.expected) from None
    try:
        return json.loads(text, object_pairs_hook=reject_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise QuarantineFileError(
            source, f"line {exc.lineno} column {exc.colno}", f"valid JSON ({exc.msg})"
        ) from None
    except ValueError as exc:  # a duplicate key (EnvelopeError)
        expected = str(exc).removeprefix("expected ")
        raise QuarantineFileError(source, "the document", expected) from None


def _subject_of(envelope: Any, source: str, place: str, today: date) -> str:
    """The subject an envelope's statement names (read and checked, signature aside)."""
    checked = check_envelope(envelope, trusted=(), today=today, source=source, place=place)
    return checked.entry.subject


def read_quarantine_file(path: Path, *, today: date | None = None) -> QuarantineFile:
    """The file's envelopes (none when the file is missing); a malformed file, envelope
    or statement is a :class:`QuarantineFileError` naming the file, the entry and what
    was expected; a subject twice is one too."""
    try:
        data = read_bytes(path)
    except FileNotFoundError:
        return QuarantineFile(path, None, ())
    except RecordFormatError as exc:
        raise QuarantineFileError(exc.source, exc.place, exc.expected) from None
    source = str(path)
    document = _decode(path, data)
    if not isinstance(document, dict) or set(document) != {"version", "entries"}:
        got = sorted(document) if isinstance(document, dict) else type(document).__name__
        raise QuarantineFileError(
            source, "the document", f'an object with keys "entries" and "version", got {got}'
        )
    if document["version"] != FILE_VERSION or isinstance(document["version"], bool):
        raise QuarantineFileError(
            source, "version", f"{FILE_VERSION}, got {document['version']!r}"
        )
    if not isinstance(document["entries"], list):
        raise QuarantineFileError(source, "entries", "a list of DSSE envelopes")
    day = today or date.today()
    seen: dict[str, int] = {}
    envelopes = []
    for i, envelope in enumerate(document["entries"]):
        place = f"entries[{i}]"
        subject = _subject_of(envelope, source, place, day)
        if subject in seen:
            raise QuarantineFileError(
                source, place, f"one entry per subject; {subject!r} is entries[{seen[subject]}] "
                "too (merge them: keep one, `rtgov quarantine renew` if needed)"
            )  # fmt: skip
        seen[subject] = i
        envelopes.append((subject, envelope))
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return QuarantineFile(path, digest, tuple(envelopes))


def load_quarantine(
    root: Path, trust: Trust | None, *, today: date, state_dir: Path | None = None
) -> Quarantine:
    """Every entry of ``root``'s quarantine file, checked against ``trust`` (its keyring
    keys are trusted, its local keys known but untrusted; None: no key, every signed
    entry is ``untrusted``) on ``today``, and against ``state_dir``'s ledger (entries it
    removed or replaced are ``revoked``); a missing file: an empty Quarantine."""
    file = read_quarantine_file(quarantine_path(root), today=today)
    revoked = revoked_entries(state_dir) if state_dir is not None else {}
    return check_file(file, trust, today=today, revoked=revoked)


def check_file(
    file: QuarantineFile, trust: Trust | None, *, today: date, revoked: Mapping[str, str] = {}
) -> Quarantine:
    """:func:`load_quarantine` for a file already read. ``revoked`` (entry id -> what
    ended it, :func:`revoked_entries`): a valid envelope the ledger says was removed or
    replaced is ``revoked``: put back from history, it excuses nothing."""
    from dataclasses import replace

    trusted = tuple(trust.keyring) if trust is not None else ()
    others = tuple(trust.local) if trust is not None else ()
    order = {subject: i for i, subject in enumerate(file.subjects())}
    checked = [
        check_envelope(
            env, trusted=trusted, others=others, today=today,
            source=str(file.path), place=f"entries[{order[subject]}]",
        )
        for subject, env in sorted(file.envelopes, key=lambda pair: pair[0])
    ]  # fmt: skip
    checked = [
        replace(c, state="revoked", detail=revoked[c.id])
        if c.id in revoked and c.state in ("valid", "expired")
        else c
        for c in checked
    ]
    return Quarantine(tuple(checked))


def revoked_entries(state_dir: Path) -> dict[str, str]:
    """Entry id -> what ended it, from the ``quarantine`` leaves of ``state_dir``'s
    ledger: a ``remove`` names its entry, a ``renew`` the entry it ``replaces``. Read
    without verifying the ledger: a leaf here can only take an excuse away (``rtgov
    verify`` checks the ledger itself); no ledger, nothing revoked."""
    from pytest_rtgov.errors import RtgovError
    from pytest_rtgov.store.ledger import Ledger

    ledger = Ledger(state_dir / "ledger")
    if not ledger.exists():
        return {}
    ended: dict[str, str] = {}
    try:
        frames = list(ledger.frames())
    except (OSError, ValueError, RtgovError):
        return {}  # a damaged ledger: rtgov verify says so
    for index, frame in enumerate(frames):
        try:
            leaf = json.loads(frame.payload)
        except ValueError:
            continue
        if not isinstance(leaf, dict) or leaf.get("kind") != "quarantine":
            continue
        action, at = leaf.get("action"), leaf.get("at", "")
        if action in ("add", "renew"):  # signed (again) later: the same bytes are current
            ended.pop(str(leaf.get("entry")), None)
        if action == "remove" and isinstance(leaf.get("entry"), str):
            ended[leaf["entry"]] = f"removed at {at} (ledger leaf {index})"
        elif action == "renew" and isinstance(leaf.get("replaces"), str):
            ended[leaf["replaces"]] = f"replaced by a renewal at {at} (ledger leaf {index})"
    return ended


def _write(path: Path, envelopes: dict[str, dict[str, Any]]) -> None:
    document = {"version": FILE_VERSION, "entries": [envelopes[s] for s in sorted(envelopes)]}
    atomic_write(path, pretty_json(document).encode("utf-8"))


def sign_entry(entry: Entry, signer: Signer) -> dict[str, Any]:
    """The DSSE envelope of ``entry``'s statement, signed by ``signer``."""
    return sign_envelope(entry.statement(), PAYLOAD_TYPE_INTOTO, [signer])


def write_entry(
    root: Path, entry: Entry, signer: Signer, *, trust: Trust | None, today: date
) -> tuple[CheckedEntry, CheckedEntry | None]:
    """Sign ``entry`` and write it into ``root``'s quarantine file, replacing the entry of
    its subject if there is one; every other envelope is kept as it was. Returns the new
    entry, checked, and the one it replaced (None for a new subject)."""
    path = quarantine_path(root)
    file = read_quarantine_file(path, today=today)
    envelopes = dict(file.envelopes)
    old = envelopes.get(entry.subject)
    envelopes[entry.subject] = sign_entry(entry, signer)
    _write(path, envelopes)
    new_file = QuarantineFile(path, None, ((entry.subject, envelopes[entry.subject]),))
    replaced = None
    if old is not None:
        old_file = QuarantineFile(path, None, ((entry.subject, old),))
        replaced = check_file(old_file, trust, today=today).entries[0]
    return check_file(new_file, trust, today=today).entries[0], replaced


def remove_entry(root: Path, subject: str, *, trust: Trust | None, today: date) -> CheckedEntry:
    """Remove the entry of ``subject`` from ``root``'s quarantine file; returns it, as
    checked before removal. No such entry: :class:`EntryNotFoundError`."""
    path = quarantine_path(root)
    file = read_quarantine_file(path, today=today)
    envelopes = dict(file.envelopes)
    old = envelopes.pop(subject, None)
    if old is None:
        raise EntryNotFoundError(
            f"{path}: no entry for {subject!r} (entries: {', '.join(file.subjects()) or 'none'})"
        )
    checked = check_file(QuarantineFile(path, None, ((subject, old),)), trust, today=today)
    _write(path, envelopes)
    return checked.entries[0]
