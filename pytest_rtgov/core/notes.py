"""C2SP signed notes: text signed by one or more named Ed25519 keys (:mod:`.keys`).

A signed note (C2SP ``signed-note``, as in Go's ``golang.org/x/mod/sumdb/note``) is UTF-8
text ending in a newline, a blank line, then one line per signature::

    <text ending in LF>
    LF
    — <name> <base64(key id (4 bytes) || Ed25519 signature (64 bytes))> LF

The signature covers the text exactly, final newline included. Signing and opening are
pure and strict: :func:`open_note` accepts exactly what :func:`sign_note` writes.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from pytest_rtgov.core.keys import (
    NoteError,
    NoteFormatError,
    Signer,
    Verifier,
    b64decode_std,
    is_valid_name,
)
from pytest_rtgov.errors import IntegrityError

__all__ = [
    "NoteVerificationError",
    "UnverifiedSignature",
    "VerifiedNote",
    "check_text",
    "open_note",
    "sign_note",
]

_SIG_PREFIX: Final = "— "  # U+2014 EM DASH, then a space
_MAX_SIGNATURES: Final = 100  # as Go's note.Open: no spending forever on one note
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # ASCII controls except LF


class NoteVerificationError(NoteError, IntegrityError):
    """Verification failed: a known key's signature is wrong, or no known key signed.

    ``unverified`` lists the signatures by keys the caller did not supply.
    """

    def __init__(self, message: str, unverified: tuple[UnverifiedSignature, ...] = ()) -> None:
        self.unverified = unverified
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class UnverifiedSignature:
    """A signature by a key the caller did not supply; reported, never trusted."""

    name: str
    key_id: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class VerifiedNote:
    """The text of a note and who vouched for it.

    ``verified_by`` holds the supplied verifiers whose signatures verified, in note order;
    ``unverified`` the signatures by keys that were not supplied.
    """

    text: str
    verified_by: tuple[Verifier, ...]
    unverified: tuple[UnverifiedSignature, ...] = ()


def check_text(text: str, what: str) -> None:
    bad = _CONTROL.search(text)
    if bad:
        raise NoteFormatError(
            f"expected {what} without ASCII control characters other than LF, "
            f"got {bad.group()!r} at offset {bad.start()}"
        )


def sign_note(text: str, signers: Iterable[Signer]) -> str:
    """``text`` followed by a blank line and one signature line per signer.

    ``text`` must be non-empty, end with LF and hold no ASCII control character but LF.
    """
    if not text.endswith("\n"):
        raise NoteFormatError("expected note text ending with a newline")
    check_text(text, "note text")
    signers = tuple(signers)
    if not signers:
        raise NoteFormatError("expected at least one signer")
    message = text.encode("utf-8")
    lines = []
    for signer in signers:
        blob = signer.key_id + signer.sign(message)
        lines.append(f"{_SIG_PREFIX}{signer.name} {base64.b64encode(blob).decode()}\n")
    return text + "\n" + "".join(lines)


def open_note(note: str | bytes, verifiers: Iterable[Verifier]) -> VerifiedNote:
    """Verify a signed note against ``verifiers`` and return its text.

    Signatures by keys not in ``verifiers`` (matched on name and key id) are ignored but
    reported in :attr:`VerifiedNote.unverified`; repeated signature lines by one key count
    once. Raises :class:`NoteFormatError` for a malformed note and
    :class:`NoteVerificationError` when a known key's signature fails or no known key signed.
    """
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteFormatError(f"expected UTF-8, got invalid byte at {exc.start}") from exc
    check_text(note, "a signed note")
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteFormatError("expected a blank line before the signature lines")
    text, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise NoteFormatError("expected signature lines ending with a newline")
    known: dict[tuple[str, bytes], Verifier] = {}
    for supplied in verifiers:
        known[(supplied.name, supplied.key_id)] = supplied
    message = text.encode("utf-8")
    verified: list[Verifier] = []
    unverified: list[UnverifiedSignature] = []
    lines = block[:-1].split("\n")
    if len(lines) > _MAX_SIGNATURES:
        raise NoteFormatError(f"expected at most {_MAX_SIGNATURES} signatures, got {len(lines)}")
    for number, line in enumerate(lines, start=1):
        name, blob = _parse_signature_line(line, number)
        kid, signature = blob[:4], blob[4:]
        verifier = known.get((name, kid))
        if verifier is None:
            entry = UnverifiedSignature(name, kid, signature)
            if entry not in unverified:
                unverified.append(entry)
            continue
        if verifier in verified:
            continue
        if not verifier.verify(message, signature):
            raise NoteVerificationError(
                f"signature line {number} by {name}+{kid.hex()} does not verify",
                tuple(unverified),
            )
        verified.append(verifier)
    if not verified:
        signed = ", ".join(f"{u.name}+{u.key_id.hex()}" for u in unverified)
        raise NoteVerificationError(
            f"expected a signature by one of the {len(known)} known keys, got only {signed}",
            tuple(unverified),
        )
    return VerifiedNote(text, tuple(verified), tuple(unverified))


def _parse_signature_line(line: str, number: int) -> tuple[str, bytes]:
    if not line.startswith(_SIG_PREFIX):
        raise NoteFormatError(
            f"expected signature line {number} to start with '— ' (U+2014, space), "
            f"got {line[:10]!r}"
        )
    name, sep, b64 = line[len(_SIG_PREFIX) :].partition(" ")
    if not sep or not is_valid_name(name):
        raise NoteFormatError(f"expected '— <name> <signature>' on signature line {number}")
    blob = b64decode_std(b64, f"the signature on line {number}")
    if len(blob) < 5:
        raise NoteFormatError(
            f"expected a key id and a signature on line {number}, got {len(blob)} bytes"
        )
    return name, blob
