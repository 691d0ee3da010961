"""Checks one envelope of the quarantine file against given keys on a given day (pure).

The state of an entry (:data:`~pytest_rtgov.core.quarantine.ENTRY_STATES`) comes from here:
``unsigned``, ``tampered``, ``untrusted``, then ``expired`` or ``valid`` by the date.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

from pytest_rtgov.core.canonical import canonical_json
from pytest_rtgov.core.dsse import (
    PAYLOAD_TYPE_INTOTO,
    EnvelopeError,
    envelope_keyid,
    parse_statement,
    verify_envelope,
)
from pytest_rtgov.core.keys import Verifier
from pytest_rtgov.core.quarantine import CheckedEntry, Entry, QuarantineFileError
from pytest_rtgov.errors import RtgovError

__all__ = ["check_envelope", "entry_id"]


def entry_id(envelope: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the envelope's canonical JSON: the entry's id."""
    return "sha256:" + hashlib.sha256(canonical_json(envelope)).hexdigest()


def _payload(envelope: Any, source: str, place: str) -> tuple[bytes, list[Any]]:
    if not isinstance(envelope, Mapping):
        raise QuarantineFileError(source, place, "a DSSE envelope object")
    keys = {"payload", "payloadType", "signatures"}
    if set(envelope) != keys:
        missing, extra = sorted(keys - set(envelope)), sorted(map(str, set(envelope) - keys))
        raise QuarantineFileError(
            source, place, f"envelope keys payload, payloadType, signatures (missing "
            f"{missing}, unexpected {extra})"
        )  # fmt: skip
    if envelope["payloadType"] != PAYLOAD_TYPE_INTOTO:
        raise QuarantineFileError(source, f"{place}.payloadType", repr(PAYLOAD_TYPE_INTOTO))
    signatures = envelope["signatures"]
    if not isinstance(signatures, list):
        raise QuarantineFileError(source, f"{place}.signatures", "a list")
    payload = envelope["payload"]
    try:
        if not isinstance(payload, str):
            raise binascii.Error("not a string")
        return base64.b64decode(payload, validate=True), signatures
    except (binascii.Error, ValueError) as exc:
        raise QuarantineFileError(source, f"{place}.payload", f"base64 ({exc})") from exc


def check_envelope(
    envelope: Any,
    *,
    trusted: Sequence[Verifier],
    others: Iterable[Verifier] = (),
    today: date,
    source: str,
    place: str,
) -> CheckedEntry:
    """Read one envelope of the quarantine file and check it on ``today``.

    ``trusted``: the keyring's keys; ``others``: keys known but not trusted (a machine's
    local key). No signatures: ``unsigned``; a known key's signature that fails (the
    payload was edited): ``tampered``; signed only by untrusted or unknown keys:
    ``untrusted``; else ``expired`` from the expiry date on, ``valid`` before it. A
    malformed envelope or statement is a :class:`QuarantineFileError`."""
    payload, signatures = _payload(envelope, source, place)
    try:
        document = parse_statement(payload)
    except EnvelopeError as exc:
        expected = f"an in-toto statement: {exc}"
        raise QuarantineFileError(source, f"{place}.payload", expected) from exc
    entry = Entry.from_statement(document, source, place)
    ident = entry_id(envelope)
    if not signatures:
        return CheckedEntry(entry, ident, "unsigned", None, "the envelope has no signature")
    keyids = [s.get("keyid") if isinstance(s, Mapping) else None for s in signatures]
    first = next((k for k in keyids if isinstance(k, str)), None)
    known = [*trusted, *others]
    try:
        verified = verify_envelope(envelope, known)
    except EnvelopeError as exc:  # its text says what was expected
        expected = str(exc).removeprefix("expected ")
        raise QuarantineFileError(source, f"{place}.signatures", expected) from exc
    except RtgovError as exc:  # SignatureError: a known key failed, or none is known
        named = {envelope_keyid(v) for v in known}
        if any(k in named for k in keyids):
            return CheckedEntry(entry, ident, "tampered", first, f"signature fails: {exc}")
        return CheckedEntry(entry, ident, "untrusted", first, f"no keyring key signed: {exc}")
    good = [v for v in verified.signed_by if v in trusted]
    if not good:
        who = envelope_keyid(verified.signed_by[0])
        return CheckedEntry(entry, ident, "untrusted", who, f"signed by {who}, not in keyring")
    keyid = envelope_keyid(good[0])
    state = entry.state_on(today)
    detail = entry.expiry_detail(today)
    return CheckedEntry(entry, ident, state, keyid, detail)
