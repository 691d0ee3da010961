"""``scan_frames``, the one-pass scanner behind ``read_frames`` and ``rtgov verify``.

Random ledgers, randomly damaged or cut short, read in random chunk sizes: the scanner
must find exactly the frames, the error (offset, index, reason) and the torn tail that
a whole-file reference parser written from the format description finds, and the
roots it streams must be those of ``read_frames`` + ``MerkleAccumulator``.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pytest_rtgov.store.ledger.frames as ledger_module
from pytest_rtgov.core import merkle
from pytest_rtgov.store.ledger import (
    MAGIC,
    MAX_PAYLOAD,
    Frame,
    LedgerCorruptError,
    TornTail,
    encode_frame,
    read_frames,
    scan_frames,
)

VERDICT = b'{"exit_status":'

Outcome = tuple[list[Frame], tuple[int, int | None, str] | None, TornTail | None]


def reference(data: bytes) -> Outcome:
    """Frames, first error and torn tail of a whole log, straight from docs/ledger.md."""
    if not data.startswith(MAGIC):
        if len(data) < len(MAGIC) and MAGIC.startswith(data):
            return [], None, TornTail(0, len(data)) if data else None
        return [], (0, None, f"not a ledger (expected {MAGIC!r})"), None
    frames: list[Frame] = []
    pos = len(MAGIC)
    while pos < len(data):
        rest = len(data) - pos
        if rest < 40:
            return frames, None, TornTail(pos, rest)
        length = int.from_bytes(data[pos : pos + 4], "big")
        if zlib.crc32(data[pos : pos + 4]) != int.from_bytes(data[pos + 4 : pos + 8], "big"):
            return (
                frames,
                (pos, len(frames), "length field fails its CRC-32 (damaged header)"),
                None,
            )
        if not 1 <= length <= MAX_PAYLOAD:
            return frames, (pos, len(frames), f"length {length} outside 1..{MAX_PAYLOAD}"), None
        if pos + 40 + length > len(data):
            return frames, None, TornTail(pos, rest)
        stored, payload = data[pos + 8 : pos + 40], data[pos + 40 : pos + 40 + length]
        if merkle.leaf_hash(payload) != stored:
            return frames, (pos, len(frames), "payload does not match its leaf hash"), None
        frames.append(Frame(len(frames), pos, stored, payload))
        pos += 40 + length
    return frames, None, None


def run(frames_of, path: Path) -> Outcome:
    """Collect what an iterator of frames yields, the error it raises and the torn tail."""
    torn: list[TornTail] = []
    frames: list[Frame] = []
    error = None
    try:
        for frame in frames_of(path, on_torn=torn.append):
            frames.append(frame)
    except LedgerCorruptError as exc:
        assert exc.path == path
        error = (exc.offset, exc.index, exc.reason)
    assert len(torn) <= 1
    return frames, error, torn[0] if torn else None


payloads = st.lists(
    st.one_of(
        st.binary(min_size=1, max_size=120),
        st.binary(max_size=60).map(lambda b: VERDICT + b),
        st.sampled_from([b"{}", b'{"kind":"test"}']),  # repeated headers: the CRC cache
    ),
    max_size=25,
)


@st.composite
def ledgers(draw) -> bytes:
    """A log: MAGIC and frames, maybe damaged, maybe cut short."""
    data = bytearray(MAGIC + b"".join(encode_frame(p) for p in draw(payloads)))
    for _ in range(draw(st.integers(0, 3))):
        damage = draw(st.sampled_from(["flip", "length", "truncate"]))
        if damage == "flip" and data:
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= draw(st.integers(1, 255))
        elif damage == "length" and len(data) >= len(MAGIC) + 8:
            # A length out of range whose CRC checks: only the range test can catch it.
            at = draw(st.integers(len(MAGIC), len(data) - 8))
            length = draw(st.sampled_from([0, MAX_PAYLOAD + 1, 2**32 - 1])).to_bytes(4, "big")
            data[at : at + 8] = length + zlib.crc32(length).to_bytes(4, "big")
        elif damage == "truncate":
            del data[draw(st.integers(0, len(data))) :]
    return bytes(data)


settings_ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@settings_
@given(
    data=ledgers(),
    chunk=st.sampled_from([1, 7, 40, 64, 1 << 20]),
    cache=st.sampled_from([0, 1, 4096]),
)
def test_read_frames_matches_a_whole_file_reference(tmp_path: Path, data, chunk, cache):
    path = tmp_path / "log"
    path.write_bytes(data)
    with (
        mock.patch.object(ledger_module, "_CHUNK", chunk),
        mock.patch.object(ledger_module, "_CHECKED_HEADERS", cache),
    ):
        assert run(read_frames, path) == reference(data)


@settings_
@given(
    data=ledgers(),
    chunk=st.sampled_from([1, 40, 97, 1 << 20]),
    select=st.sampled_from([b"", VERDICT, (), (b"{", b"\x00")]),
    indices=st.lists(st.integers(0, 30), max_size=5),
    feed_below=st.integers(0, 30),
    resume=st.integers(0, 30),
)
def test_scan_frames_agrees_with_read_frames_and_the_accumulator(
    tmp_path: Path, data, chunk, select, indices, feed_below, resume
):
    path = tmp_path / "log"
    path.write_bytes(data)
    frames, error, torn = run(read_frames, path)
    hashes = [f.leaf_hash for f in frames]
    # Resume at a frame boundary read_frames reported, as the history index does.
    start = None
    first = 0
    if frames and resume:
        first = min(resume, len(frames))
        start = (frames[first - 1].end, first)
    tree = merkle.MerkleAccumulator()
    for h in hashes[:first]:
        tree.append_leaf_hash(h)
    fed: list[bytes] = []
    seen: list[tuple[Frame, int, bytes]] = []

    def scan(path: Path, *, on_torn):
        for frame in scan_frames(
            path,
            on_torn=on_torn,
            start=start,
            select=select,
            indices=indices,
            tree=tree,
            feed=fed.append,
            feed_below=feed_below,
        ):
            seen.append((frame, tree.size, tree.root()))
            yield frame

    with mock.patch.object(ledger_module, "_CHUNK", chunk):
        got = run(scan, path)
    assert got[1:] == (error, torn)
    assert got[0] == [
        f for f in frames[first:] if f.index in indices or f.payload.startswith(select)
    ]
    for frame, size, root in seen:  # the tree was up to date at each yield
        assert size == frame.index + 1
        assert root == merkle.root_of(hashes[: frame.index + 1])
    assert (tree.size, tree.root()) == (len(frames), merkle.root_of(hashes))  # and at the end
    assert fed == hashes[first:feed_below]


def test_a_tree_of_the_wrong_size_is_refused(tmp_path: Path):
    path = tmp_path / "log"
    path.write_bytes(MAGIC + encode_frame(b"a"))
    tree = merkle.MerkleAccumulator()
    tree.append(b"a")
    with pytest.raises(ValueError, match="scan starts at 0"):
        list(scan_frames(path, tree=tree))


def test_accumulator_state_round_trips():
    tree = merkle.MerkleAccumulator()
    for i in range(11):
        tree.append(bytes([i]))
    copy = merkle.MerkleAccumulator()
    copy.restore(tree.size, tree.compact_range())
    assert (copy.size, copy.root()) == (11, tree.root())
    with pytest.raises(merkle.TreeRangeError):
        copy.restore(12, tree.compact_range())
