"""DSSE v1 envelopes over in-toto Statement v1 payloads.

The envelope signs the pre-authentication encoding (PAE) of the payload type and the
payload, never the raw payload::

    PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

with ``LEN`` the ASCII decimal of the UTF-8 *byte* length. The JSON envelope is::

    {"payload": base64(body), "payloadType": type,
     "signatures": [{"keyid": "<name>+<key id hex>", "sig": base64(signature)}]}

This module knows the envelope and the encoding; keys come from :mod:`.keys`
(:class:`~pytest_rtgov.core.keys.Signer`, :class:`~pytest_rtgov.core.keys.Verifier`), and a
``keyid`` is a verifier key string without its key material. :func:`verify_envelope` returns
the payload bytes exactly as decoded and verified, so nothing is re-serialized in between.

>>> pae("http://example.com/HelloWorld", b"hello world")
b'DSSEv1 29 http://example.com/HelloWorld 11 hello world'
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pytest_rtgov.core.canonical import canonical_json
from pytest_rtgov.core.keys import Signer, Verifier
from pytest_rtgov.errors import IntegrityError, ReadError, RtgovError

__all__ = [
    "PAYLOAD_TYPE_INTOTO",
    "STATEMENT_TYPE_V1",
    "DsseError",
    "EnvelopeError",
    "SignatureError",
    "VerifiedPayload",
    "envelope_keyid",
    "pae",
    "parse_statement",
    "reject_duplicate_keys",
    "sign_envelope",
    "statement",
    "verify_envelope",
]

PAYLOAD_TYPE_INTOTO: Final = "application/vnd.in-toto+json"
"""The DSSE payload type of an in-toto Statement."""
STATEMENT_TYPE_V1: Final = "https://in-toto.io/Statement/v1"
"""The ``_type`` of an in-toto Statement v1."""

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_HEX = re.compile(r"(?:[0-9a-f]{2})+")
_STD_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_URL_B64 = re.compile(r"[A-Za-z0-9_-]*={0,2}")
_ENVELOPE_KEYS: Final = frozenset({"payload", "payloadType", "signatures"})
_SIGNATURE_KEYS: Final = frozenset({"keyid", "sig"})


class DsseError(RtgovError):
    """Root of the DSSE and in-toto errors."""


class EnvelopeError(DsseError, ReadError, ValueError):
    """An envelope or statement is malformed: it could not be verified or read at all."""


class SignatureError(DsseError, IntegrityError):
    """Verification failed: a known key's signature is wrong, or no known key signed."""


@dataclass(frozen=True, slots=True)
class VerifiedPayload:
    """What a verified envelope vouches for: the payload exactly as signed, and by whom."""

    payload_type: str
    payload: bytes
    signed_by: tuple[Verifier, ...]


def pae(payload_type: str, payload: bytes) -> bytes:
    """The DSSE v1 pre-authentication encoding; lengths count UTF-8 bytes."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), bytes(payload))


def envelope_keyid(verifier: Verifier) -> str:
    """The ``keyid`` naming ``verifier`` in an envelope: ``<name>+<key id hex>``."""
    return f"{verifier.name}+{verifier.key_id.hex()}"


# -- in-toto statements ---------------------------------------------------------------------


def statement(
    subjects: Mapping[str, str], *, predicate_type: str, predicate: Mapping[str, Any]
) -> bytes:
    """Canonical JSON bytes of an in-toto Statement v1.

    ``subjects`` maps each subject name to its SHA-256 as 64 lowercase hex digits; they are
    written sorted by name. ``predicate`` is copied, never modified.

    >>> statement({"b": "0" * 64}, predicate_type="https://example.com/p", predicate={})[:45]
    b'{"_type":"https://in-toto.io/Statement/v1","p'
    """
    if not subjects:
        raise EnvelopeError("expected at least one subject")
    subject_list = []
    for name in sorted(subjects):
        digest = subjects[name]
        if not isinstance(name, str) or not name:
            raise EnvelopeError(f"expected a non-empty subject name, got {name!r}")
        if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest):
            raise EnvelopeError(
                f"expected subject {name!r} to have a sha256 of 64 lowercase hex digits, "
                f"got {digest!r}"
            )
        subject_list.append({"name": name, "digest": {"sha256": digest}})
    if not isinstance(predicate_type, str) or not predicate_type:
        raise EnvelopeError(f"expected a non-empty predicate type, got {predicate_type!r}")
    if not isinstance(predicate, Mapping):
        raise EnvelopeError(f"expected the predicate to be a mapping, got {type(predicate)}")
    document = {
        "_type": STATEMENT_TYPE_V1,
        "subject": subject_list,
        "predicateType": predicate_type,
        "predicate": dict(predicate),
    }
    try:
        return canonical_json(document)
    except (TypeError, ValueError) as exc:
        raise EnvelopeError(f"expected a JSON-serializable predicate: {exc}") from exc


def reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise EnvelopeError(f"expected unique JSON object keys, got {key!r} twice")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise EnvelopeError(f"expected JSON without NaN or Infinity, got {name}")


def parse_statement(payload: bytes) -> dict[str, Any]:
    """Read and check an in-toto Statement v1; returns a new dict.

    Checks ``_type``, a non-empty ``subject`` list of ``{"name", "digest"}`` with lowercase
    hex digests, a non-empty ``predicateType`` and, when present, an object ``predicate``.
    """
    try:
        document = json.loads(
            payload.decode("utf-8"),
            object_pairs_hook=reject_duplicate_keys,
            parse_constant=_reject_constant,
        )
    except UnicodeDecodeError as exc:
        raise EnvelopeError(f"expected a UTF-8 statement, got invalid byte at {exc.start}") from exc
    except json.JSONDecodeError as exc:
        raise EnvelopeError(f"expected a JSON statement: {exc}") from exc
    if not isinstance(document, dict):
        raise EnvelopeError(f"expected a JSON object statement, got {type(document).__name__}")
    if document.get("_type") != STATEMENT_TYPE_V1:
        raise EnvelopeError(f"expected _type {STATEMENT_TYPE_V1!r}, got {document.get('_type')!r}")
    subjects = document.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise EnvelopeError("expected 'subject' to be a non-empty list")
    for i, subject in enumerate(subjects):
        _check_subject(subject, f"subject[{i}]")
    predicate_type = document.get("predicateType")
    if not isinstance(predicate_type, str) or not predicate_type:
        raise EnvelopeError(f"expected a non-empty string predicateType, got {predicate_type!r}")
    if "predicate" in document and not isinstance(document["predicate"], dict):
        raise EnvelopeError("expected 'predicate' to be a JSON object")
    return document


def _check_subject(subject: Any, place: str) -> None:
    if not isinstance(subject, dict):
        raise EnvelopeError(f"expected {place} to be an object")
    name = subject.get("name")
    if not isinstance(name, str) or not name:
        raise EnvelopeError(f"expected {place}.name to be a non-empty string, got {name!r}")
    digest = subject.get("digest")
    if not isinstance(digest, dict) or not digest:
        raise EnvelopeError(f"expected {place}.digest to be a non-empty object")
    for algorithm, value in digest.items():
        if not isinstance(value, str) or not _HEX.fullmatch(value):
            raise EnvelopeError(
                f"expected {place}.digest.{algorithm} in lowercase hex, got {value!r}"
            )
    if "sha256" in digest and not _SHA256_HEX.fullmatch(digest["sha256"]):
        raise EnvelopeError(f"expected {place}.digest.sha256 of 64 hex digits")


# -- envelopes ------------------------------------------------------------------------------


def sign_envelope(payload: bytes, payload_type: str, signers: Sequence[Signer]) -> dict[str, Any]:
    """A DSSE JSON envelope holding ``payload``, signed over its PAE by every signer."""
    if not signers:
        raise EnvelopeError("expected at least one signer")
    payload = bytes(payload)
    message = pae(payload_type, payload)
    return {
        "payload": base64.b64encode(payload).decode("ascii"),
        "payloadType": payload_type,
        "signatures": [
            {
                "keyid": envelope_keyid(signer.verifier()),
                "sig": base64.b64encode(signer.sign(message)).decode("ascii"),
            }
            for signer in signers
        ],
    }


def _b64decode(value: Any, place: str) -> bytes:
    """Standard or URL-safe base64 (DSSE allows both), padded or not; nothing else."""
    if not isinstance(value, str):
        raise EnvelopeError(f"expected {place} to be a base64 string, got {type(value).__name__}")
    if _STD_B64.fullmatch(value):
        altchars = None
    elif _URL_B64.fullmatch(value):
        altchars = b"-_"
    else:
        raise EnvelopeError(f"expected {place} in standard or URL-safe base64")
    unpadded = value.rstrip("=")
    padded = unpadded + "=" * (-len(unpadded) % 4)
    if len(value) not in (len(unpadded), len(padded)):
        raise EnvelopeError(f"expected {place} with correct base64 padding")
    try:
        return base64.b64decode(padded, altchars=altchars, validate=True)
    except binascii.Error as exc:
        raise EnvelopeError(f"expected {place} in base64: {exc}") from exc


def _read_envelope(envelope: Mapping[str, Any]) -> tuple[str, bytes, list[tuple[str, bytes]]]:
    if not isinstance(envelope, Mapping):
        raise EnvelopeError(f"expected an envelope object, got {type(envelope).__name__}")
    keys = set(envelope)
    if keys != _ENVELOPE_KEYS:
        missing = sorted(_ENVELOPE_KEYS - keys)
        extra = sorted(map(str, keys - _ENVELOPE_KEYS))
        raise EnvelopeError(
            f"expected envelope keys payload, payloadType, signatures; "
            f"missing {missing}, unexpected {extra}"
        )
    payload_type = envelope["payloadType"]
    if not isinstance(payload_type, str) or not payload_type:
        raise EnvelopeError(f"expected payloadType to be a non-empty string, got {payload_type!r}")
    payload = _b64decode(envelope["payload"], "payload")
    entries = envelope["signatures"]
    if not isinstance(entries, list) or not entries:
        raise EnvelopeError("expected signatures to be a non-empty list")
    signatures = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or set(entry) != _SIGNATURE_KEYS:
            raise EnvelopeError(f"expected signatures[{i}] to be an object with keyid and sig")
        keyid = entry["keyid"]
        if not isinstance(keyid, str):
            raise EnvelopeError(f"expected signatures[{i}].keyid to be a string, got {keyid!r}")
        signatures.append((keyid, _b64decode(entry["sig"], f"signatures[{i}].sig")))
    return payload_type, payload, signatures


def verify_envelope(envelope: Mapping[str, Any], verifiers: Iterable[Verifier]) -> VerifiedPayload:
    """Verify a DSSE envelope against ``verifiers`` and return what it signed.

    Signatures are matched to verifiers by ``keyid``; those by unknown keys are ignored, and
    one key signing twice counts once. Raises :class:`EnvelopeError` for a malformed envelope,
    :class:`SignatureError` when a known key's signature fails or no known key signed. The
    returned payload is the very bytes decoded from the envelope and verified. The envelope
    is only read.
    """
    payload_type, payload, signatures = _read_envelope(envelope)
    known = {envelope_keyid(verifier): verifier for verifier in verifiers}
    message = pae(payload_type, payload)
    signed_by: list[Verifier] = []
    unknown: list[str] = []
    for i, (keyid, signature) in enumerate(signatures):
        verifier = known.get(keyid)
        if verifier is None:
            unknown.append(keyid)
            continue
        if not verifier.verify(message, signature):
            raise SignatureError(f"signatures[{i}] by {keyid!r} does not verify")
        if verifier not in signed_by:
            signed_by.append(verifier)
    if not signed_by:
        raise SignatureError(
            f"expected a signature by one of the {len(known)} known keys, "
            f"got only {', '.join(map(repr, unknown))}"
        )
    return VerifiedPayload(payload_type, payload, tuple(signed_by))
