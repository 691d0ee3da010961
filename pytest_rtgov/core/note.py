"""C2SP signed notes and tlog checkpoints, signed with Ed25519.

A signed note (C2SP ``signed-note``, as in Go's ``golang.org/x/mod/sumdb/note``) is UTF-8
text ending in a newline, a blank line, then one line per signature::

    <text ending in LF>
    LF
    — <name> <base64(key id (4 bytes) || Ed25519 signature (64 bytes))> LF

The signature covers the text exactly, final newline included. A key id is the first four
bytes of ``SHA-256(name || 0x0A || 0x01 || public key)``; keys travel as strings::

    verifier: <name>+<key id hex>+<base64(0x01 || public key (32 bytes))>
    signer:   PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 || seed (32 bytes))>

A checkpoint (C2SP ``tlog-checkpoint``) is the text of such a note: origin, tree size in
decimal and the base64 root hash, one per line, then optional extension lines.

Formatting and parsing are pure and strict: every ``parse_*`` accepts exactly what the
matching ``format_*`` writes, so ``parse(format(x)) == x``.

>>> cp = Checkpoint("example.com/log", 3, bytes(32))
>>> format_checkpoint(cp)
'example.com/log\\n3\\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\\n'
>>> parse_checkpoint(format_checkpoint(cp)) == cp
True
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass
from hashlib import sha256
from typing import TYPE_CHECKING, Final

from pytest_rtgov.errors import RtgovError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

# ``cryptography`` is imported where a key is made or used, not with this module: a
# session checks its key's name and id (:func:`key_identity`) before the tests and
# loads the key after them, so the tests run without cryptography's native library
# loaded (memray's per-capture cost grows with every loaded library).

__all__ = [
    "ALG_ED25519",
    "Checkpoint",
    "NoteError",
    "NoteFormatError",
    "NoteVerificationError",
    "Signer",
    "UnverifiedSignature",
    "VerifiedNote",
    "Verifier",
    "format_checkpoint",
    "format_signer_key",
    "format_verifier_key",
    "generate_signer",
    "key_id",
    "key_identity",
    "open_note",
    "parse_checkpoint",
    "parse_signer_key",
    "parse_verifier_key",
    "sign_note",
    "verifier_key_fields",
]

ALG_ED25519: Final = 0x01
"""Signature algorithm byte for Ed25519 in keys and key ids."""
_SIG_PREFIX: Final = "— "  # U+2014 EM DASH, then a space
_PRIVATE_PREFIX: Final = "PRIVATE+KEY+"
_MAX_SIGNATURES: Final = 100  # as Go's note.Open: no spending forever on one note
_KEY_ID_HEX = re.compile(r"[0-9a-f]{8}")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_STD_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # ASCII controls except LF


class NoteError(RtgovError):
    """Root of the signed-note, key and checkpoint errors."""


class NoteFormatError(NoteError, ValueError):
    """A note, key or checkpoint is malformed: it could not be verified or read at all."""


class NoteVerificationError(NoteError):
    """Verification failed: a known key's signature is wrong, or no known key signed.

    ``unverified`` lists the signatures by keys the caller did not supply.
    """

    def __init__(self, message: str, unverified: tuple[UnverifiedSignature, ...] = ()) -> None:
        self.unverified = unverified
        super().__init__(message)


# -- keys -----------------------------------------------------------------------------------


def _is_valid_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _is_valid_name(name):
        raise NoteFormatError(
            f"expected a key name that is non-empty, without '+' or whitespace, got {name!r}"
        )


def _b64decode_std(text: str, what: str) -> bytes:
    """Strict standard base64: padded, no whitespace, canonical trailing bits."""
    if not _STD_BASE64.fullmatch(text):
        raise NoteFormatError(f"expected {what} in standard padded base64, got {text!r}")
    try:
        data = base64.b64decode(text, validate=True)
    except binascii.Error as exc:  # pragma: no cover - the pattern already rules these out
        raise NoteFormatError(f"expected {what} in standard base64, got {text!r}") from exc
    if base64.b64encode(data).decode("ascii") != text:
        raise NoteFormatError(f"expected {what} in canonical base64, got {text!r}")
    return data


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(name: str, public_key_bytes: bytes) -> bytes:
    """The 4-byte key id: ``SHA-256(name || 0x0A || 0x01 || public key)[:4]``.

    >>> key_id("PeterNeumann", bytes.fromhex(
    ...     "1a5cd907143c384c41e830c5bce12aa8817ec5649aaabf2c31388b35b2d744d6")).hex()
    'c74f20a3'
    """
    if len(public_key_bytes) != 32:
        raise NoteFormatError(
            f"expected a 32-byte Ed25519 public key, got {len(public_key_bytes)} bytes"
        )
    material = name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + bytes(public_key_bytes)
    return sha256(material).digest()[:4]


@dataclass(frozen=True, eq=False, slots=True)
class Verifier:
    """A named Ed25519 public key with its key id."""

    name: str
    key_id: bytes
    public_key: Ed25519PublicKey

    def __post_init__(self) -> None:
        _check_name(self.name)
        want = key_id(self.name, _raw_public(self.public_key))
        if self.key_id != want:
            raise NoteFormatError(
                f"key id for {self.name!r} is {want.hex()}, got {bytes(self.key_id).hex()}"
            )

    @classmethod
    def from_public_key(cls, name: str, public_key: Ed25519PublicKey) -> Verifier:
        """The verifier for ``public_key`` under ``name``, its key id computed."""
        _check_name(name)
        return cls(name, key_id(name, _raw_public(public_key)), public_key)

    @property
    def public_key_bytes(self) -> bytes:
        """The raw 32-byte public key."""
        return _raw_public(self.public_key)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature of ``message``."""
        from cryptography.exceptions import InvalidSignature

        try:
            self.public_key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Verifier):
            return NotImplemented
        return (self.name, self.key_id, self.public_key_bytes) == (
            other.name,
            other.key_id,
            other.public_key_bytes,
        )

    def __hash__(self) -> int:
        return hash((self.name, self.key_id))

    def __repr__(self) -> str:
        return f"Verifier({format_verifier_key(self)!r})"


@dataclass(frozen=True, eq=False, slots=True)
class Signer:
    """A named Ed25519 private key."""

    name: str
    private_key: Ed25519PrivateKey

    def __post_init__(self) -> None:
        _check_name(self.name)

    @property
    def key_id(self) -> bytes:
        """The 4-byte key id of the matching public key."""
        return key_id(self.name, _raw_public(self.private_key.public_key()))

    def verifier(self) -> Verifier:
        """The matching verifier."""
        return Verifier.from_public_key(self.name, self.private_key.public_key())

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return self.private_key.sign(message)

    def _seed(self) -> bytes:
        return self.private_key.private_bytes_raw()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Signer):
            return NotImplemented
        return self.name == other.name and self._seed() == other._seed()

    def __hash__(self) -> int:
        return hash((self.name, self.key_id))

    def __repr__(self) -> str:  # never the private key
        return f"Signer(name={self.name!r}, key_id={self.key_id.hex()!r})"


def generate_signer(name: str) -> Signer:
    """A fresh Ed25519 signer named ``name``."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Signer(name, Ed25519PrivateKey.generate())


def format_verifier_key(verifier: Verifier) -> str:
    """``<name>+<key id hex>+<base64(0x01 || public key)>``."""
    material = bytes([ALG_ED25519]) + verifier.public_key_bytes
    return f"{verifier.name}+{verifier.key_id.hex()}+{base64.b64encode(material).decode()}"


def _parse_key_fields(name: str, id_hex: str, key_b64: str, what: str) -> tuple[bytes, bytes]:
    _check_name(name)
    if not _KEY_ID_HEX.fullmatch(id_hex):
        raise NoteFormatError(f"expected a {what} key id of 8 lowercase hex digits, got {id_hex!r}")
    material = _b64decode_std(key_b64, f"a {what} key")
    if len(material) != 33 or material[0] != ALG_ED25519:
        raise NoteFormatError(
            f"expected a {what} key of 0x01 (Ed25519) and 32 bytes, got {len(material)} bytes"
            + (f" starting 0x{material[0]:02x}" if material else "")
        )
    return bytes.fromhex(id_hex), material[1:]


def parse_verifier_key(text: str) -> Verifier:
    """Read ``<name>+<key id hex>+<base64(0x01 || public key)>``; the key id must match."""
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise NoteFormatError(
            f"expected a verifier key '<name>+<key id>+<key>', got {len(parts)} '+'-separated "
            "fields"
        )
    name, id_hex, key_b64 = parts
    kid, raw = _parse_key_fields(name, id_hex, key_b64, "verifier")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Verifier(name, kid, Ed25519PublicKey.from_public_bytes(raw))


def format_signer_key(signer: Signer) -> str:
    """``PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 || seed)>``; keep it secret."""
    material = bytes([ALG_ED25519]) + signer._seed()
    return (
        f"{_PRIVATE_PREFIX}{signer.name}+{signer.key_id.hex()}+"
        f"{base64.b64encode(material).decode()}"
    )


def _signer_fields(text: str) -> tuple[str, bytes, bytes]:
    if not text.startswith(_PRIVATE_PREFIX):
        raise NoteFormatError(f"expected a signer key starting {_PRIVATE_PREFIX!r}")
    parts = text[len(_PRIVATE_PREFIX) :].split("+", 2)
    if len(parts) != 3:
        raise NoteFormatError(
            f"expected a signer key '{_PRIVATE_PREFIX}<name>+<key id>+<key>', "
            f"got {len(parts)} '+'-separated fields after the prefix"
        )
    name, id_hex, key_b64 = parts
    kid, seed = _parse_key_fields(name, id_hex, key_b64, "signer")
    return name, kid, seed


def key_identity(text: str) -> tuple[str, bytes]:
    """``(name, key id)`` of a signer or verifier key, its format checked, without
    cryptography: the id is the one the text states. :func:`parse_signer_key` and
    :func:`parse_verifier_key` check it against the key itself.

    >>> key_identity("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
    ('PeterNeumann', b'\xc7O \xa3')
    """
    if text.startswith(_PRIVATE_PREFIX):
        name, kid, _ = _signer_fields(text)
        return name, kid
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise NoteFormatError(
            f"expected a key '<name>+<key id>+<key>', got {len(parts)} '+'-separated fields"
        )
    kid, _ = _parse_key_fields(*parts, "verifier")
    return parts[0], kid


def verifier_key_fields(text: str) -> tuple[str, bytes, bytes]:
    """``(name, key id, raw public key)`` of a verifier key, its format checked, without
    cryptography: two keys are the same key when these are equal.

    >>> verifier_key_fields("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")[0]
    'PeterNeumann'
    """
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise NoteFormatError(
            f"expected a verifier key '<name>+<key id>+<key>', got {len(parts)} '+'-separated "
            "fields"
        )
    kid, raw = _parse_key_fields(*parts, "verifier")
    return parts[0], kid, raw


def parse_signer_key(text: str) -> Signer:
    """Read ``PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 || seed)>``; the key id must match."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    name, kid, seed = _signer_fields(text)
    id_hex = kid.hex()
    signer = Signer(name, Ed25519PrivateKey.from_private_bytes(seed))
    if signer.key_id != kid:
        raise NoteFormatError(f"key id for {name!r} is {signer.key_id.hex()}, got {id_hex}")
    return signer


# -- notes ----------------------------------------------------------------------------------


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


def _check_text(text: str, what: str) -> None:
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
    _check_text(text, "note text")
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
    _check_text(note, "a signed note")
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteFormatError("expected a blank line before the signature lines")
    text, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise NoteFormatError("expected signature lines ending with a newline")
    known: dict[tuple[str, bytes], Verifier] = {}
    for verifier in verifiers:
        known[(verifier.name, verifier.key_id)] = verifier
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
    if not sep or not _is_valid_name(name):
        raise NoteFormatError(f"expected '— <name> <signature>' on signature line {number}")
    blob = _b64decode_std(b64, f"the signature on line {number}")
    if len(blob) < 5:
        raise NoteFormatError(
            f"expected a key id and a signature on line {number}, got {len(blob)} bytes"
        )
    return name, blob


# -- checkpoints ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A C2SP tlog checkpoint: the log's origin, tree size and root hash.

    ``extensions`` are the optional lines after the root hash, without their newlines.
    """

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin:
            raise NoteFormatError("expected a non-empty checkpoint origin")
        _check_line(self.origin, "the checkpoint origin")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise NoteFormatError(f"expected an integer tree size, got {self.size!r}")
        if not 0 <= self.size < 2**64:
            raise NoteFormatError(f"expected a tree size in [0, 2**64), got {self.size}")
        if len(self.root_hash) != 32:
            raise NoteFormatError(
                f"expected a 32-byte checkpoint root hash, got {len(self.root_hash)} bytes"
            )
        object.__setattr__(self, "root_hash", bytes(self.root_hash))
        object.__setattr__(self, "extensions", tuple(self.extensions))
        for i, line in enumerate(self.extensions):
            if not line:
                raise NoteFormatError(f"expected checkpoint extension {i} to be non-empty")
            _check_line(line, f"checkpoint extension {i}")


def _check_line(line: str, what: str) -> None:
    if "\n" in line:
        raise NoteFormatError(f"expected {what} on one line, got a newline in {line!r}")
    _check_text(line, what)


def format_checkpoint(checkpoint: Checkpoint) -> str:
    """The checkpoint body: origin, size, base64 root hash and extensions, each line ending LF."""
    lines = [
        checkpoint.origin,
        str(checkpoint.size),
        base64.b64encode(checkpoint.root_hash).decode("ascii"),
        *checkpoint.extensions,
    ]
    return "".join(line + "\n" for line in lines)


def parse_checkpoint(text: str) -> Checkpoint:
    """Read a checkpoint body (the text of a verified note), strictly.

    The origin must be non-empty, the size decimal without leading zeros, the root hash 32
    bytes in standard padded base64, and every line (extensions too) non-empty and ending LF.
    """
    if not text.endswith("\n"):
        raise NoteFormatError("expected a checkpoint ending with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteFormatError(
            f"expected at least 3 checkpoint lines (origin, size, root hash), got {len(lines)}"
        )
    origin, size_text, root_text, *extensions = lines
    if not _DECIMAL.fullmatch(size_text):
        raise NoteFormatError(
            f"expected a decimal tree size without leading zeros on line 2, got {size_text!r}"
        )
    root_hash = _b64decode_std(root_text, "the root hash on line 3")
    return Checkpoint(origin, int(size_text), root_hash, tuple(extensions))
