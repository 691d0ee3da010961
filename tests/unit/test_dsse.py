"""DSSE envelopes and in-toto statements: PAE bytes, signatures, tampering."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_rtgov.core.dsse import (
    PAYLOAD_TYPE_INTOTO,
    STATEMENT_TYPE_V1,
    DsseError,
    EnvelopeError,
    SignatureError,
    VerifiedPayload,
    envelope_keyid,
    pae,
    parse_statement,
    sign_envelope,
    statement,
    verify_envelope,
)
from pytest_rtgov.core.keys import generate_signer, parse_signer_key
from pytest_rtgov.errors import RtgovError

SIGNING = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "signing.json").read_text("utf-8")
)
DSSE = SIGNING["dsse"]
GO_SIGNER = parse_signer_key(SIGNING["signed_note"]["note_go_example"]["signer_key"])
DIGEST = "ab" * 32


# -- PAE ------------------------------------------------------------------------------------


def test_pae_matches_the_published_example_byte_for_byte() -> None:
    example = DSSE["pae_example"]
    got = pae(example["payload_type"], example["payload_utf8"].encode("utf-8"))
    assert got == example["pae"].encode("utf-8")


def test_pae_counts_utf8_bytes_not_characters() -> None:
    payload_type = "application/é"  # 13 characters, 14 bytes
    payload = "naïve ☃".encode()  # 7 characters, 10 bytes
    assert (
        pae(payload_type, payload) == b"DSSEv1 14 application/\xc3\xa9 10 na\xc3\xafve \xe2\x98\x83"
    )


def test_pae_of_empty_type_and_payload() -> None:
    assert pae("", b"") == b"DSSEv1 0  0 "


def test_ecdsa_p256_example_verifies_over_our_pae() -> None:
    example = DSSE["ecdsa_p256_example"]
    public = ec.EllipticCurvePublicNumbers(
        int(example["public_x"]), int(example["public_y"]), ec.SECP256R1()
    ).public_key()
    raw = base64.b64decode(example["sig_b64_raw_r_s"])
    signature = encode_dss_signature(
        int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    )
    payload = base64.b64decode(example["payload_b64"])
    public.verify(signature, pae(example["payload_type"], payload), ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):  # over the raw payload it must not verify
        public.verify(signature, payload, ec.ECDSA(hashes.SHA256()))


# -- statements -----------------------------------------------------------------------------


def test_statement_is_canonical_json_with_sorted_subjects() -> None:
    predicate = {"z": 1, "a": ["é"]}
    body = statement(
        {"b.txt": "11" * 32, "a.txt": "22" * 32},
        predicate_type="https://example.com/bench/v1",
        predicate=predicate,
    )
    expected = (
        '{"_type":"https://in-toto.io/Statement/v1","predicate":{"a":["é"],"z":1},'
        '"predicateType":"https://example.com/bench/v1","subject":['
        f'{{"digest":{{"sha256":"{"22" * 32}"}},"name":"a.txt"}},'
        f'{{"digest":{{"sha256":"{"11" * 32}"}},"name":"b.txt"}}]}}'
    ).encode()
    assert body == expected
    assert predicate == {"z": 1, "a": ["é"]}
    parsed = parse_statement(body)
    assert parsed["_type"] == STATEMENT_TYPE_V1
    assert [s["name"] for s in parsed["subject"]] == ["a.txt", "b.txt"]


@pytest.mark.parametrize(
    ("subjects", "predicate", "message"),
    [
        ({}, {}, "at least one subject"),
        ({"a": "AB" * 32}, {}, "64 lowercase hex"),
        ({"a": "ab" * 31}, {}, "64 lowercase hex"),
        ({"": DIGEST}, {}, "non-empty subject name"),
        ({"a": DIGEST}, {"x": float("nan")}, "JSON-serializable"),
        ({"a": DIGEST}, {"x": object()}, "JSON-serializable"),
    ],
)
def test_statement_refuses_bad_input(
    subjects: dict[str, str], predicate: dict[str, Any], message: str
) -> None:
    with pytest.raises(EnvelopeError, match=message):
        statement(subjects, predicate_type="https://example.com/p", predicate=predicate)


def _statement_dict(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "_type": STATEMENT_TYPE_V1,
        "subject": [{"name": "a", "digest": {"sha256": DIGEST}}],
        "predicateType": "https://example.com/p",
        "predicate": {},
    }
    document.update(changes)
    return document


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\xff", "UTF-8"),
        (b"{", "JSON statement"),
        (b"[]", "JSON object"),
        (json.dumps(_statement_dict(_type="https://in-toto.io/Statement/v0.1")).encode(), "_type"),
        (json.dumps(_statement_dict(subject=[])).encode(), "non-empty list"),
        (json.dumps(_statement_dict(subject=[{"name": "a"}])).encode(), r"subject\[0\].digest"),
        (
            json.dumps(
                _statement_dict(subject=[{"name": "", "digest": {"sha256": DIGEST}}])
            ).encode(),
            r"subject\[0\].name",
        ),
        (
            json.dumps(
                _statement_dict(subject=[{"name": "a", "digest": {"sha256": "xyz"}}])
            ).encode(),
            "lowercase hex",
        ),
        (json.dumps(_statement_dict(predicateType="")).encode(), "predicateType"),
        (json.dumps(_statement_dict(predicate=[])).encode(), "'predicate'"),
        (b'{"_type": 1, "_type": 2}', "unique"),
        (b'{"_type": NaN}', "NaN"),
    ],
)
def test_parse_statement_refuses_bad_statements(payload: bytes, message: str) -> None:
    with pytest.raises(EnvelopeError, match=message):
        parse_statement(payload)


# -- envelopes ------------------------------------------------------------------------------


def _envelope(payload: bytes = b'{"hello": "world"}', payload_type: str = PAYLOAD_TYPE_INTOTO):
    return sign_envelope(payload, payload_type, [GO_SIGNER])


def test_sign_then_verify_returns_exactly_the_signed_bytes() -> None:
    payload = b'{"b": 1,   "a": 2}\n'  # not canonical: must come back untouched
    envelope = _envelope(payload)
    assert envelope == {
        "payload": base64.b64encode(payload).decode(),
        "payloadType": PAYLOAD_TYPE_INTOTO,
        "signatures": [
            {
                "keyid": "PeterNeumann+c74f20a3",
                "sig": base64.b64encode(GO_SIGNER.sign(pae(PAYLOAD_TYPE_INTOTO, payload))).decode(),
            }
        ],
    }
    frozen = copy.deepcopy(envelope)
    verified = verify_envelope(envelope, [GO_SIGNER.verifier()])
    assert verified == VerifiedPayload(PAYLOAD_TYPE_INTOTO, payload, (GO_SIGNER.verifier(),))
    assert envelope == frozen  # only read


def test_envelope_survives_json_and_the_statement_round_trips() -> None:
    body = statement({"x": DIGEST}, predicate_type="https://example.com/p", predicate={"n": 1})
    wire = json.dumps(sign_envelope(body, PAYLOAD_TYPE_INTOTO, [GO_SIGNER]))
    verified = verify_envelope(json.loads(wire), [GO_SIGNER.verifier()])
    assert verified.payload == body
    assert parse_statement(verified.payload)["predicate"] == {"n": 1}


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=200), st.text(min_size=1, max_size=20))
def test_any_payload_and_type_round_trip(payload: bytes, payload_type: str) -> None:
    verified = verify_envelope(
        sign_envelope(payload, payload_type, [GO_SIGNER]), [GO_SIGNER.verifier()]
    )
    assert (verified.payload_type, verified.payload) == (payload_type, payload)


def test_tampered_payload_is_rejected() -> None:
    envelope = _envelope()
    envelope["payload"] = base64.b64encode(b'{"hello": "World"}').decode()
    with pytest.raises(SignatureError, match="does not verify"):
        verify_envelope(envelope, [GO_SIGNER.verifier()])


def test_tampered_payload_type_is_rejected() -> None:
    envelope = _envelope()
    envelope["payloadType"] = "application/json"
    with pytest.raises(SignatureError):
        verify_envelope(envelope, [GO_SIGNER.verifier()])


@pytest.mark.parametrize("byte", [0, 31, 63])
def test_tampered_signature_is_rejected(byte: int) -> None:
    envelope = _envelope()
    signature = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    signature[byte] ^= 0x80
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(signature)).decode()
    with pytest.raises(SignatureError):
        verify_envelope(envelope, [GO_SIGNER.verifier()])


def test_unknown_keyid_is_rejected() -> None:
    stranger = generate_signer("stranger")
    envelope = sign_envelope(b"x", "t", [stranger])
    with pytest.raises(SignatureError, match="known keys, got only 'stranger\\+"):
        verify_envelope(envelope, [GO_SIGNER.verifier()])
    with pytest.raises(SignatureError):
        verify_envelope(envelope, [])


def test_known_name_with_another_key_is_rejected() -> None:
    impostor = generate_signer("PeterNeumann")
    envelope = sign_envelope(b"x", "t", [impostor])
    envelope["signatures"][0]["keyid"] = envelope_keyid(GO_SIGNER.verifier())
    with pytest.raises(SignatureError, match="does not verify"):
        verify_envelope(envelope, [GO_SIGNER.verifier()])


def test_unknown_signers_beside_a_known_one_are_ignored() -> None:
    stranger = generate_signer("stranger")
    envelope = sign_envelope(b"x", "t", [stranger, GO_SIGNER, GO_SIGNER])
    assert verify_envelope(envelope, [GO_SIGNER.verifier()]).signed_by == (GO_SIGNER.verifier(),)


def test_url_safe_base64_is_accepted_as_dsse_allows() -> None:
    payload = b"\xfb\xff\xfe" * 5
    envelope = _envelope(payload)
    envelope["payload"] = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    assert verify_envelope(envelope, [GO_SIGNER.verifier()]).payload == payload


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: e.pop("payload"), "missing \\['payload'\\]"),
        (lambda e: e.update(extra=1), "unexpected \\['extra'\\]"),
        (lambda e: e.update(payload=5), "base64 string"),
        (lambda e: e.update(payload="a b="), "base64"),
        (lambda e: e.update(payload="ab+_"), "base64"),
        (lambda e: e.update(payloadType=""), "payloadType"),
        (lambda e: e.update(signatures=[]), "non-empty list"),
        (lambda e: e["signatures"][0].pop("keyid"), "keyid and sig"),
        (lambda e: e["signatures"][0].update(keyid=7), "keyid to be a string"),
        (lambda e: e["signatures"][0].update(sig="***"), r"signatures\[0\].sig"),
    ],
)
def test_malformed_envelopes_are_refused(change: Any, message: str) -> None:
    envelope = _envelope()
    change(envelope)
    with pytest.raises(EnvelopeError, match=message):
        verify_envelope(envelope, [GO_SIGNER.verifier()])


def test_malformed_is_not_a_failed_signature() -> None:
    assert issubclass(EnvelopeError, DsseError) and issubclass(SignatureError, DsseError)
    assert issubclass(DsseError, RtgovError)
    assert not issubclass(EnvelopeError, SignatureError)
    assert not issubclass(SignatureError, EnvelopeError)
    with pytest.raises(EnvelopeError):
        verify_envelope([], [])  # type: ignore[arg-type]
    with pytest.raises(EnvelopeError, match="at least one signer"):
        sign_envelope(b"x", "t", [])
