"""The ledger file, its checkpoints and ``verify_all``: format, recovery and tampering."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_rtgov.core import merkle
from pytest_rtgov.core.canonical import canonical_json
from pytest_rtgov.core.checkpoints import parse_checkpoint
from pytest_rtgov.core.keys import Signer, format_verifier_key, generate_signer
from pytest_rtgov.core.notes import open_note, sign_note
from pytest_rtgov.store.keys import Trust
from pytest_rtgov.store.ledger import (
    MAGIC,
    Ledger,
    LedgerCorruptError,
    append_session,
    encode_frame,
    read_frames,
)
from pytest_rtgov.store.verify import (
    EXIT_CHECKPOINT,
    EXIT_FRAME,
    EXIT_HISTORY,
    EXIT_LEAF,
    EXIT_ROOT,
    VerifyFailure,
    verify_all,
)

SIGNER = generate_signer("test.example/ledger")


def trust_for(*signers: Signer, required: bool = False) -> Trust:
    return Trust(
        keyring=tuple(s.verifier() for s in signers),
        local=(),
        keyring_path=Path("rtgov.keyring"),
        required=required,
    )


def leaf(i: int, session: int = 0) -> bytes:
    return canonical_json({"kind": "test", "run_id": f"run{session}", "nodeid": f"t::{i}"})


def build(state: Path, sessions: int = 3, per: int = 4, signer: Signer = SIGNER) -> Ledger:
    ledger = Ledger(state / "ledger")
    for s in range(sessions):
        append_session(
            ledger,
            [leaf(i, s) for i in range(per)],
            signer=signer,
            origin="test.example/log",
            created_at=f"2026-11-22T00:00:0{s}Z",
        )
    return ledger


def frame_spans(ledger: Ledger) -> list[tuple[int, int]]:
    return [(f.offset, f.offset + 40 + len(f.payload)) for f in ledger.frames()]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    state = tmp_path_factory.mktemp("pristine")
    build(state)
    return state


@pytest.fixture
def state(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "state"
    shutil.copytree(pristine, copy)
    return copy


def failure(state: Path, **kwargs) -> VerifyFailure:
    with pytest.raises(VerifyFailure) as info:
        verify_all(state, trust_for(SIGNER), **kwargs)
    return info.value


def test_intact_ledger_verifies_and_roots_match_an_independent_computation(state: Path):
    report = verify_all(state, trust_for(SIGNER))
    payloads = [f.payload for f in Ledger(state / "ledger").frames()]
    assert report.leaves == len(payloads) == 1 + 3 * 4  # genesis + 3 sessions
    assert report.checkpoints == 3
    assert report.root == merkle.root_of([merkle.leaf_hash(p) for p in payloads])
    assert report.warnings == []


def test_frame_layout_is_length_crc_leaf_hash_payload():
    frame = encode_frame(b'{"kind":"ledger"}')
    assert frame[:4] == (17).to_bytes(4, "big")
    assert frame[8:40] == merkle.leaf_hash(b'{"kind":"ledger"}')
    assert frame[40:] == b'{"kind":"ledger"}'


def test_checkpoints_are_signed_c2sp_notes_of_the_log(state: Path):
    ledger = Ledger(state / "ledger")
    text = ledger.checkpoint_paths()[-1].read_text()
    opened = open_note(text, [SIGNER.verifier()])
    checkpoint = parse_checkpoint(opened.text)
    assert checkpoint.origin == "test.example/log"
    assert checkpoint.size == 13
    assert text.splitlines()[2] == opened.text.splitlines()[2]  # base64 root line


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_flipping_any_bit_of_the_log_is_detected(pristine: Path, tmp_path: Path, data):
    state = Path(tempfile.mkdtemp(dir=tmp_path)) / "state"
    shutil.copytree(pristine, state)
    log = state / "ledger" / "log"
    raw = bytearray(log.read_bytes())
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    log.write_bytes(bytes(raw))
    assert failure(state).exit_code in (EXIT_FRAME, EXIT_ROOT, EXIT_CHECKPOINT)


@pytest.mark.parametrize("edit", ["delete", "duplicate", "swap", "truncate"])
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_deleting_duplicating_reordering_or_truncating_records_is_detected(
    pristine: Path, tmp_path: Path, edit: str, data
):
    state = Path(tempfile.mkdtemp(dir=tmp_path)) / "state"
    shutil.copytree(pristine, state)
    ledger = Ledger(state / "ledger")
    spans = frame_spans(ledger)
    raw = ledger.log_path.read_bytes()
    k = data.draw(st.integers(0, len(spans) - 1))
    a, b = spans[k]
    if edit == "delete":
        raw = raw[:a] + raw[b:]
    elif edit == "duplicate":
        raw = raw[:b] + raw[a:b] + raw[b:]
    elif edit == "swap":
        j = data.draw(st.integers(0, len(spans) - 1).filter(lambda j: j != k))
        (a, b), (c, d) = sorted([spans[k], spans[j]])
        raw = raw[:a] + raw[c:d] + raw[b:c] + raw[a:b] + raw[d:]
    else:
        raw = raw[: data.draw(st.integers(a + 1, b - 1))]
    ledger.log_path.write_bytes(raw)
    assert failure(state).exit_code in (EXIT_ROOT, EXIT_FRAME, EXIT_LEAF)


def test_swapped_checkpoints_are_detected(state: Path):
    first, second = Ledger(state / "ledger").checkpoint_paths()[:2]
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)
    assert failure(state).exit_code == EXIT_CHECKPOINT


def test_a_forged_signature_is_detected(state: Path):
    path = Ledger(state / "ledger").checkpoint_paths()[-1]
    body, _, _ = path.read_text().partition("\n\n")
    forger = generate_signer(SIGNER.name)  # same name, another key
    path.write_text(sign_note(body + "\n", [forger]))
    assert failure(state).exit_code == EXIT_CHECKPOINT


def test_an_edited_checkpoint_root_is_detected(state: Path):
    path = Ledger(state / "ledger").checkpoint_paths()[-1]
    lines = path.read_text().split("\n")
    lines[1] = str(int(lines[1]) - 1)
    path.write_text("\n".join(lines))
    assert failure(state).exit_code == EXIT_CHECKPOINT


def test_a_history_rewritten_and_resigned_with_the_same_key_fails_against_a_trusted_checkpoint(
    state: Path, tmp_path: Path
):
    ledger = Ledger(state / "ledger")
    trusted = tmp_path / "trusted-checkpoint.txt"
    shutil.copy(ledger.checkpoint_paths()[1], trusted)
    # The key holder rewrites everything: a different second session, re-signed.
    shutil.rmtree(state / "ledger")
    rebuilt = Ledger(state / "ledger")
    for s in range(3):
        records = [leaf(i, s) for i in range(4)]
        if s == 1:
            records[2] = leaf(99, s)
        append_session(rebuilt, records, signer=SIGNER, origin="test.example/log", created_at="x")
    verify_all(state, trust_for(SIGNER))  # self-consistent on its own...
    assert failure(state, since=trusted).exit_code == EXIT_HISTORY  # ...but not a prefix


def test_a_trusted_checkpoint_of_the_real_history_is_a_prefix(state: Path, tmp_path: Path):
    trusted = tmp_path / "trusted.txt"
    shutil.copy(Ledger(state / "ledger").checkpoint_paths()[0], trusted)
    report = verify_all(state, trust_for(SIGNER), since=trusted)
    assert report.trusted_prefix == 5


def test_required_signatures_refuse_keys_outside_the_keyring(state: Path):
    other = generate_signer("someone.else/key")
    with pytest.raises(VerifyFailure) as info:
        verify_all(state, trust_for(other, required=True))
    assert info.value.exit_code == EXIT_CHECKPOINT


def test_a_torn_tail_is_reported_then_set_aside_without_losing_complete_records(state: Path):
    ledger = Ledger(state / "ledger")
    before = [f.payload for f in ledger.frames()]
    torn = encode_frame(leaf(1000))[:25]
    with open(ledger.log_path, "ab") as fh:
        fh.write(torn)
    report = verify_all(state, trust_for(SIGNER))
    assert any("incomplete trailing frame" in w for w in report.warnings)
    with ledger.append() as appender:
        assert appender.set_aside is not None
        assert appender.set_aside.read_bytes() == torn
        assert appender.size == len(before)
    assert [f.payload for f in ledger.frames()] == before
    assert verify_all(state, trust_for(SIGNER)).warnings == []


def test_a_damaged_middle_header_is_corruption_not_a_torn_tail(state: Path):
    ledger = Ledger(state / "ledger")
    offset = frame_spans(ledger)[3][0]
    raw = bytearray(ledger.log_path.read_bytes())
    raw[offset] ^= 0x80  # a huge length: would look like a torn tail without the CRC
    ledger.log_path.write_bytes(bytes(raw))
    with pytest.raises(LedgerCorruptError, match="CRC"):
        list(read_frames(ledger.log_path))
    with pytest.raises(LedgerCorruptError):
        with ledger.append():
            pass
    assert ledger.log_path.read_bytes() == bytes(raw)  # never repaired


def test_a_writer_refuses_to_extend_a_rewritten_history(state: Path):
    ledger = Ledger(state / "ledger")
    spans = frame_spans(ledger)
    raw = ledger.log_path.read_bytes()
    a, b = spans[2]
    forged = encode_frame(leaf(42))  # valid frame, different content
    ledger.log_path.write_bytes(raw[:a] + forged + raw[b:])
    with pytest.raises(LedgerCorruptError, match="history was changed"):
        append_session(ledger, [leaf(7)], signer=SIGNER, origin="o/x", created_at="x")


def test_not_a_ledger_is_refused(tmp_path: Path):
    path = tmp_path / "log"
    path.write_bytes(b"hello world, not a ledger at all\n")
    with pytest.raises(LedgerCorruptError, match="not a ledger"):
        list(read_frames(path))


def test_the_genesis_leaf_fixes_the_origin(tmp_path: Path):
    ledger = Ledger(tmp_path / "ledger")
    append_session(ledger, [leaf(0)], signer=SIGNER, origin="first/origin", created_at="x")
    result = append_session(
        ledger, [leaf(1)], signer=SIGNER, origin="second/origin", created_at="x"
    )
    text = result.checkpoint_path.read_text()
    assert text.startswith("first/origin\n3\n")
    assert ledger.log_path.read_bytes().startswith(MAGIC)


def _load_local_key(state_dir: str, start: float) -> str:
    import time

    from pytest_rtgov.store.keys import load_signing_key

    time.sleep(max(0.0, start - time.time()))  # all processes race for the first key
    key = load_signing_key(key_file=None, state_dir=Path(state_dir), environ={})
    return format_verifier_key(key.verifier)


def test_processes_racing_to_create_the_local_key_all_read_one_whole_key(tmp_path):
    """xdist workers load the key when an artifact is first signed: with no local key
    yet, several may create one at once. Each must read a whole key, and the same one."""
    import multiprocessing
    import time

    with multiprocessing.get_context("spawn").Pool(6) as pool:
        pool.starmap(time.sleep, [(0,)] * 6)  # the workers are up before the races
        for round_ in range(5):
            state = tmp_path / str(round_)
            start = time.time() + 0.2
            keys = pool.starmap(_load_local_key, [(str(state), start)] * 12)
            assert len(set(keys)) == 1
            # the key, and its public half (keys/local.pub); no temporary file left
            assert sorted(p.name for p in (state / "keys").iterdir()) == [
                "local.key",
                "local.pub",
            ]
            assert oct((state / "keys" / "local.key").stat().st_mode & 0o777) == "0o600"
