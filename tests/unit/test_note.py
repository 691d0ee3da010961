"""C2SP signed notes, keys and checkpoints against the Go and C2SP examples."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_rtgov.core.checkpoints import Checkpoint, format_checkpoint, parse_checkpoint
from pytest_rtgov.core.keys import (
    NoteError,
    NoteFormatError,
    Signer,
    Verifier,
    format_signer_key,
    format_verifier_key,
    generate_signer,
    key_id,
    parse_signer_key,
    parse_verifier_key,
)
from pytest_rtgov.core.notes import (
    NoteVerificationError,
    UnverifiedSignature,
    open_note,
    sign_note,
)
from pytest_rtgov.errors import RtgovError

SIGNING = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "signing.json").read_text("utf-8")
)
GO = SIGNING["signed_note"]["note_go_example"]
C2SP = SIGNING["signed_note"]["c2sp_example"]


def _flip_bit(text: str, index: int) -> str:
    return text[:index] + chr(ord(text[index]) ^ 1) + text[index + 1 :]


# -- the published examples -----------------------------------------------------------------


def test_go_example_signs_to_exactly_the_published_note() -> None:
    signer = parse_signer_key(GO["signer_key"])
    assert sign_note(GO["text"], [signer]) == GO["signed_note"]


def test_go_example_verifies_with_its_verifier_key() -> None:
    verifier = parse_verifier_key(GO["verifier_key"])
    opened = open_note(GO["signed_note"], [verifier])
    assert opened.text == GO["text"]
    assert opened.verified_by == (verifier,)
    assert opened.unverified == ()
    assert open_note(GO["signed_note"].encode("utf-8"), [verifier]).text == GO["text"]


def test_go_example_signer_and_verifier_keys_belong_together() -> None:
    signer = parse_signer_key(GO["signer_key"])
    verifier = parse_verifier_key(GO["verifier_key"])
    assert signer.verifier() == verifier
    assert signer.key_id == verifier.key_id == bytes.fromhex("c74f20a3")
    assert key_id("PeterNeumann", verifier.public_key_bytes) == verifier.key_id


def test_c2sp_example_verifies_with_its_verifier_key() -> None:
    verifier = parse_verifier_key(C2SP["verifier_key"])
    opened = open_note(C2SP["signed_note"], [verifier])
    assert opened.text == "This is an example message.\n"
    assert opened.verified_by == (verifier,)


def test_rfc8032_test_1_through_cryptography() -> None:
    vector = SIGNING["ed25519_rfc8032_test1"]
    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(vector["seed_hex"]))
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert public.hex() == vector["public_hex"]
    assert private.sign(b"").hex() == vector["sig_of_empty_message_hex"]
    signer = Signer("rfc8032", private)
    assert signer.sign(b"").hex() == vector["sig_of_empty_message_hex"]
    assert signer.verifier().verify(b"", bytes.fromhex(vector["sig_of_empty_message_hex"]))


# -- keys -----------------------------------------------------------------------------------


def test_published_keys_format_back_to_the_same_text() -> None:
    assert format_signer_key(parse_signer_key(GO["signer_key"])) == GO["signer_key"]
    assert format_verifier_key(parse_verifier_key(GO["verifier_key"])) == GO["verifier_key"]
    assert format_verifier_key(parse_verifier_key(C2SP["verifier_key"])) == C2SP["verifier_key"]


@settings(max_examples=25, deadline=None)
@given(st.from_regex(r"[A-Za-z0-9./_:-]{1,30}", fullmatch=True))
def test_generated_keys_round_trip(name: str) -> None:
    signer = generate_signer(name)
    assert parse_signer_key(format_signer_key(signer)) == signer
    verifier = signer.verifier()
    assert parse_verifier_key(format_verifier_key(verifier)) == verifier
    assert verifier.name == name and verifier.key_id == signer.key_id


def test_signer_repr_keeps_the_private_key_out() -> None:
    signer = parse_signer_key(GO["signer_key"])
    assert repr(signer) == "Signer(name='PeterNeumann', key_id='c74f20a3')"
    assert GO["signer_key"].rsplit("+", 1)[1] not in repr(signer)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "key id"),
        ("PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "lowercase hex"),
        ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "whitespace"),
        ("+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "non-empty"),
        ("PeterNeumann+c74f20a3", "fields"),
        ("PeterNeumann+c74f20a3+Ahpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "0x01"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10Q=", "got 32 bytes"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T", "base64"),
    ],
)
def test_bad_verifier_keys_are_refused(text: str, message: str) -> None:
    with pytest.raises(NoteFormatError, match=message):
        parse_verifier_key(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz", "PRIVATE"),
        ("PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz", "id"),
        ("PRIVATE+KEY+Peter+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz", "key id"),
    ],
)
def test_bad_signer_keys_are_refused(text: str, message: str) -> None:
    with pytest.raises(NoteFormatError, match=message):
        parse_signer_key(text)


def test_verifier_refuses_a_wrong_key_id() -> None:
    verifier = parse_verifier_key(GO["verifier_key"])
    with pytest.raises(NoteFormatError, match="key id for 'PeterNeumann' is c74f20a3"):
        Verifier("PeterNeumann", b"\x00\x00\x00\x00", verifier.public_key)


# -- signing and opening ---------------------------------------------------------------------


def test_flipped_bit_in_the_text_fails() -> None:
    verifier = parse_verifier_key(GO["verifier_key"])
    tampered = _flip_bit(GO["signed_note"], 3)
    with pytest.raises(NoteVerificationError, match="does not verify"):
        open_note(tampered, [verifier])


@pytest.mark.parametrize("offset", [0, 10, 40, 80])
def test_flipped_bit_in_the_signature_fails(offset: int) -> None:
    verifier = parse_verifier_key(GO["verifier_key"])
    note = GO["signed_note"]
    line_start = note.rindex("\n\n") + 2
    sig_start = note.index(" ", note.index(" ", line_start) + 1) + 1
    blob = bytearray(base64.b64decode(note[sig_start:-1]))
    blob[4 + offset % 64] ^= 0x01
    tampered = note[:sig_start] + base64.b64encode(bytes(blob)).decode() + "\n"
    with pytest.raises(NoteVerificationError):
        open_note(tampered, [verifier])


def test_note_signed_only_by_an_unknown_key_raises_and_reports_it() -> None:
    stranger = generate_signer("stranger")
    note = sign_note("hello\n", [stranger])
    with pytest.raises(NoteVerificationError, match="known keys, got only stranger\\+") as info:
        open_note(note, [parse_verifier_key(GO["verifier_key"])])
    assert [u.name for u in info.value.unverified] == ["stranger"]
    assert info.value.unverified[0].key_id == stranger.key_id


def test_unknown_signers_are_ignored_but_reported() -> None:
    known, stranger = generate_signer("known"), generate_signer("stranger")
    note = sign_note("a\nb\n", [stranger, known, known])
    opened = open_note(note, [known.verifier()])
    assert opened.text == "a\nb\n"
    assert opened.verified_by == (known.verifier(),)
    assert opened.unverified == (
        UnverifiedSignature("stranger", stranger.key_id, stranger.sign(b"a\nb\n")),
    )


def test_a_known_name_with_another_key_counts_as_unknown() -> None:
    impostor, real = generate_signer("log"), generate_signer("log")
    note = sign_note("x\n", [impostor])
    with pytest.raises(NoteVerificationError):
        open_note(note, [real.verifier()])


def test_several_signers_all_verify() -> None:
    first, second = generate_signer("first"), generate_signer("second")
    note = sign_note("body\n", [first, second])
    opened = open_note(note, [second.verifier(), first.verifier()])
    assert opened.verified_by == (first.verifier(), second.verifier())


def test_one_bad_signature_by_a_known_key_fails_the_note() -> None:
    good, bad = generate_signer("good"), generate_signer("bad")
    note = sign_note("body\n", [good])
    forged = note + sign_note("other\n", [bad]).split("\n\n", 1)[1]
    with pytest.raises(NoteVerificationError, match="line 2 by bad\\+"):
        open_note(forged, [good.verifier(), bad.verifier()])


@pytest.mark.parametrize(
    ("note", "message"),
    [
        ("no signatures\n", "blank line"),
        ("text\n\n— name AAAA", "ending with a newline"),
        ("text\n\n- name c2ln\n", "U\\+2014"),
        ("text\n\n— name\n", "'— <name> <signature>'"),
        ("text\n\n— name AAAAAA==\n", "key id and a signature"),
        ("te\txt\n\n— name AAAAAAAAAAAA\n", "control"),
        ("text\n\n— na+me AAAAAAAAAAAA\n", "'— <name> <signature>'"),
    ],
)
def test_malformed_notes_are_refused(note: str, message: str) -> None:
    with pytest.raises(NoteFormatError, match=message):
        open_note(note, [parse_verifier_key(GO["verifier_key"])])


def test_invalid_utf8_is_refused() -> None:
    with pytest.raises(NoteFormatError, match="UTF-8"):
        open_note(b"\xff\n\n\xe2\x80\x94 a AAAAAAAAAAAA\n", [])


@pytest.mark.parametrize(
    ("text", "signers", "message"),
    [
        ("no newline", None, "ending with a newline"),
        ("bell\a\n", None, "control"),
        ("fine\n", [], "at least one signer"),
    ],
)
def test_sign_refuses_bad_input(text: str, signers: Any, message: str) -> None:
    chosen = [parse_signer_key(GO["signer_key"])] if signers is None else signers
    with pytest.raises(NoteFormatError, match=message):
        sign_note(text, chosen)


@settings(max_examples=30, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs", "Cc")) | st.just("\n"), max_size=60))
def test_any_text_round_trips_through_sign_and_open(body: str) -> None:
    signer = parse_signer_key(GO["signer_key"])
    text = body + "\n"
    assert open_note(sign_note(text, [signer]), [signer.verifier()]).text == text


def test_errors_sit_in_the_tree() -> None:
    assert issubclass(NoteFormatError, NoteError) and issubclass(NoteError, RtgovError)
    assert issubclass(NoteVerificationError, NoteError)
    assert not issubclass(NoteVerificationError, NoteFormatError)


# -- checkpoints ----------------------------------------------------------------------------


line_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30)
checkpoints = st.builds(
    Checkpoint,
    origin=line_text,
    size=st.integers(0, 2**64 - 1),
    root_hash=st.binary(min_size=32, max_size=32),
    extensions=st.lists(line_text, max_size=3).map(tuple),
)


@settings(max_examples=200, deadline=None)
@given(checkpoints)
def test_checkpoint_round_trips(checkpoint: Checkpoint) -> None:
    text = format_checkpoint(checkpoint)
    assert parse_checkpoint(text) == checkpoint
    assert format_checkpoint(parse_checkpoint(text)) == text


def test_signed_checkpoint_opens_and_parses() -> None:
    signer = generate_signer("example.com/log")
    checkpoint = Checkpoint("example.com/log", 7, bytes(range(32)), ("ext one",))
    note = sign_note(format_checkpoint(checkpoint), [signer])
    assert note.startswith(
        "example.com/log\n7\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\next one\n\n— "
    )
    assert parse_checkpoint(open_note(note, [signer.verifier()]).text) == checkpoint


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("origin\n7\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "ending with a newline"),
        ("origin\n7\n", "at least 3"),
        ("\n7\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", "non-empty checkpoint origin"),
        ("origin\n07\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", "leading zeros"),
        ("origin\n+7\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", "decimal"),
        ("origin\n 7\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", "decimal"),
        (
            "origin\n18446744073709551616\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
            "2\\*\\*64",
        ),
        ("origin\n7\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==\n", "32-byte"),
        ("origin\n7\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n", "base64"),
        ("origin\n7\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=\n", "canonical"),
        ("origin\n7\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\n", "extension 0"),
    ],
)
def test_malformed_checkpoints_are_refused(text: str, message: str) -> None:
    with pytest.raises(NoteFormatError, match=message):
        parse_checkpoint(text)


def test_checkpoint_refuses_bad_fields() -> None:
    with pytest.raises(NoteFormatError, match="32-byte"):
        Checkpoint("o", 1, b"short")
    with pytest.raises(NoteFormatError, match="one line"):
        Checkpoint("o\nx", 1, bytes(32))
    with pytest.raises(NoteFormatError, match="integer tree size"):
        Checkpoint("o", True, bytes(32))  # type: ignore[arg-type]
    with pytest.raises(NoteFormatError, match="extension 1"):
        Checkpoint("o", 1, bytes(32), ("fine", ""))


def test_verifier_key_fields_name_the_key_without_cryptography() -> None:
    from pytest_rtgov.core.keys import verifier_key_fields

    signer = generate_signer("example.org/fields")
    text = format_verifier_key(signer.verifier())
    name, kid, raw = verifier_key_fields(text)
    assert (name, kid) == ("example.org/fields", signer.key_id)
    assert raw == signer.verifier().public_key_bytes
    with pytest.raises(NoteFormatError, match="verifier key"):
        verifier_key_fields("no-plus-signs")
