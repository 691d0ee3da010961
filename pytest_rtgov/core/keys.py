"""Ed25519 keys for signed notes: key ids, and verifier and signer keys as strings.

A key id is the first four bytes of ``SHA-256(name || 0x0A || 0x01 || public key)``; keys
travel as strings (the C2SP ``signed-note`` key formats, as in Go's
``golang.org/x/mod/sumdb/note``)::

    verifier: <name>+<key id hex>+<base64(0x01 || public key (32 bytes))>
    signer:   PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 || seed (32 bytes))>

This module also holds the errors of keys, notes (:mod:`.notes`) and checkpoints
(:mod:`.checkpoints`). Formatting and parsing are pure and strict: every ``parse_*``
accepts exactly what the matching ``format_*`` writes.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from hashlib import sha256
from typing import TYPE_CHECKING, Final

from pytest_rtgov.errors import ReadError, RtgovError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

# ``cryptography`` is imported where a key is made or used, not with this module: a
# session checks its key's name and id (:func:`key_identity`) before the tests and
# loads the key when it first signs (the checkpoint after the tests, or an artifact
# during them; a gated session loads it before them), so a recording session's tests
# run without cryptography's native library loaded (memray's per-capture cost grows
# with every loaded library).

__all__ = [
    "ALG_ED25519",
    "NoteError",
    "NoteFormatError",
    "Signer",
    "Verifier",
    "format_signer_key",
    "format_verifier_key",
    "generate_signer",
    "key_id",
    "key_identity",
    "parse_signer_key",
    "parse_verifier_key",
    "verifier_key_fields",
]

ALG_ED25519: Final = 0x01
"""Signature algorithm byte for Ed25519 in keys and key ids."""
_PRIVATE_PREFIX: Final = "PRIVATE+KEY+"
_KEY_ID_HEX = re.compile(r"[0-9a-f]{8}")
_STD_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


class NoteError(RtgovError):
    """Root of the signed-note, key and checkpoint errors."""


class NoteFormatError(NoteError, ReadError, ValueError):
    """A note, key or checkpoint is malformed: it could not be verified or read at all."""


def is_valid_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not is_valid_name(name):
        raise NoteFormatError(
            f"expected a key name that is non-empty, without '+' or whitespace, got {name!r}"
        )


def b64decode_std(text: str, what: str) -> bytes:
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
    material = b64decode_std(key_b64, f"a {what} key")
    if len(material) != 33 or material[0] != ALG_ED25519:
        raise NoteFormatError(
            f"expected a {what} key of 0x01 (Ed25519) and 32 bytes, got {len(material)} bytes"
            + (f" starting 0x{material[0]:02x}" if material else "")
        )
    return bytes.fromhex(id_hex), material[1:]


def parse_verifier_key(text: str) -> Verifier:
    """Read ``<name>+<key id hex>+<base64(0x01 || public key)>``; the key id must match."""
    name, kid, raw = verifier_key_fields(text)
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
    name, id_hex, key_b64 = parts
    kid, _ = _parse_key_fields(name, id_hex, key_b64, "verifier")
    return name, kid


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
    name, id_hex, key_b64 = parts
    kid, raw = _parse_key_fields(name, id_hex, key_b64, "verifier")
    return name, kid, raw


def parse_signer_key(text: str) -> Signer:
    """Read ``PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 || seed)>``; the key id must match."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    name, kid, seed = _signer_fields(text)
    id_hex = kid.hex()
    signer = Signer(name, Ed25519PrivateKey.from_private_bytes(seed))
    if signer.key_id != kid:
        raise NoteFormatError(f"key id for {name!r} is {signer.key_id.hex()}, got {id_hex}")
    return signer
