"""Ledger framing and scanning: the log file's frames, checked in one streaming pass.

The ledger file holds framed canonical-JSON records, the leaves of an RFC 9162 Merkle tree.

Layout of a ledger directory (format in ``docs/ledger.md``)::

    log               MAGIC, then frames:
                      u32 length | u32 crc32(length) | 32-byte leaf hash | payload
    log.lock          flock'ed by a writer for its whole append batch; holds
                      "<pid> <UTC time>" of the writer while it is held
    checkpoints/      0000000001.txt, ...: C2SP signed-note checkpoints, one per batch
    torn/             incomplete trailing frames set aside on open, never deleted
    invalid/          unsigned complete frames that are no valid leaf, set aside on
                      open (with everything after them), never deleted
    unsigned/         leaves no checkpoint signs, set aside where signatures are
                      required (``rtgov ledger recover`` signs them after review)

The frame checksum is the RFC 9162 leaf hash ``SHA-256(0x00 || payload)`` itself, so
checking a frame costs nothing beyond hashing the leaf. The length has a CRC of its
own: a damaged length is corruption, and only a frame cut short at the end of the
file (a writer killed mid-append) is a torn tail.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from pytest_rtgov.core.merkle import MerkleAccumulator
from pytest_rtgov.errors import IntegrityError, ReadError

__all__ = [
    "FRAME_HEADER_BYTES",
    "MAGIC",
    "MAX_PAYLOAD",
    "Frame",
    "LedgerCorruptError",
    "LedgerError",
    "TornTail",
    "encode_frame",
    "read_frames",
    "scan_frames",
]

MAGIC = b"RTGOV-LEDGER/1\n"
_HEADER = struct.Struct(">II")
_HASH = 32
_PREFIX = _HEADER.size + _HASH
FRAME_HEADER_BYTES = _PREFIX  # the bytes of a frame before its payload
MAX_PAYLOAD = 64 * 1024 * 1024
_CHUNK = 1 << 20
_CHECKED_HEADERS = 4096  # bounds scan_frames' cache of checked frame headers


class LedgerError(ReadError):
    """The ledger cannot be read or written."""


class LedgerCorruptError(LedgerError, IntegrityError):
    """The ledger's bytes do not verify: a verification failure, never repaired.

    ``index`` is the leaf index of the bad frame (or None), ``offset`` its byte offset.
    """

    def __init__(self, path: Path, offset: int, index: int | None, reason: str) -> None:
        self.path, self.offset, self.index, self.reason = path, offset, index, reason
        where = f"frame {index} at byte {offset}" if index is not None else f"byte {offset}"
        super().__init__(f"{path}: {where}: {reason}")


class Frame(NamedTuple):
    # A NamedTuple, not a dataclass: verify creates one per leaf, and this is ~10%
    # of its time at a million leaves (benches/ledger.py).
    index: int  # type: ignore[assignment]  # the field shadows tuple.index
    offset: int
    leaf_hash: bytes
    payload: bytes

    @property
    def end(self) -> int:
        """Byte offset just past this frame: where the next one starts."""
        return self.offset + _PREFIX + len(self.payload)


@dataclass(frozen=True, slots=True)
class TornTail:
    """Bytes after the last complete frame: the remains of an interrupted append."""

    offset: int
    length: int


def encode_frame(payload: bytes) -> bytes:
    """One frame: length, CRC-32 of the length bytes, leaf hash, payload."""
    if not payload or len(payload) > MAX_PAYLOAD:
        raise LedgerError(f"a ledger record must have 1 to {MAX_PAYLOAD} bytes, not {len(payload)}")
    length = len(payload).to_bytes(4, "big")
    leaf = hashlib.sha256(b"\x00" + payload).digest()
    return length + zlib.crc32(length).to_bytes(4, "big") + leaf + payload


def read_frames(
    path: Path,
    *,
    on_torn: Callable[[TornTail], None] | None = None,
    start: tuple[int, int] | None = None,
) -> Iterator[Frame]:
    """Yield every complete frame of ``path`` in order, checking each one.

    Raises :class:`LedgerCorruptError` at the first frame that does not check. An
    incomplete trailing frame is passed to ``on_torn`` (it is no error by itself);
    memory stays bounded by the chunk size and the largest record. ``start`` =
    ``(offset, index)`` resumes at a frame boundary (the ``end`` of an earlier frame).
    """
    return scan_frames(path, on_torn=on_torn, start=start)


def scan_frames(
    path: Path,
    *,
    on_torn: Callable[[TornTail], None] | None = None,
    start: tuple[int, int] | None = None,
    select: bytes | tuple[bytes, ...] = b"",
    indices: Iterable[int] = (),
    tree: MerkleAccumulator | None = None,
    feed: Callable[[bytes], None] | None = None,
    feed_from: int = 0,
    feed_below: int = 0,
) -> Generator[Frame, None, None]:
    """Check every complete frame of ``path`` in one pass; yield the frames asked for.

    Each frame is checked as by :func:`read_frames` (same errors, same ``on_torn``,
    same ``start``), but only the frames whose payload starts with ``select`` (or with
    one of several prefixes; ``()`` selects none) or whose leaf index is in
    ``indices`` are yielded. The default, ``b""``, yields them all: that is
    :func:`read_frames`. The other frames cost no Python call or generator step: this
    is ``rtgov verify``'s and the writer's pass (timings in ``docs/benchmarks.md``).

    - ``tree``: every checked leaf hash is appended to this accumulator (its size must
      be the first index read). It is up to date at each yield and when the scan ends;
    - ``feed``: called with the leaf hash of each index from ``feed_from`` to
      ``feed_below - 1``, in order.
    """
    sha256 = hashlib.sha256
    crc32 = zlib.crc32
    unpack = _HEADER.unpack_from
    new_frame = tuple.__new__
    checked: dict[bytes, int] = {}  # header bytes that checked -> their length
    prefix = _PREFIX  # a local: read several times per frame
    with open(path, "rb") as fh:
        head = fh.read(len(MAGIC))
        if head != MAGIC:
            if len(head) < len(MAGIC) and MAGIC.startswith(head):
                if head and on_torn is not None:
                    on_torn(TornTail(0, len(head)))
                return
            raise LedgerCorruptError(path, 0, None, f"not a ledger (expected {MAGIC!r})")
        base = len(MAGIC)  # file offset of buf[0]
        index = 0
        if start is not None:  # resume at a frame boundary a previous read reported
            base, index = start
        stops = sorted({i for i in indices if i >= index}, reverse=True)  # next one last
        next_stop = stops.pop() if stops else -1
        if feed is None:
            feed, feed_below = _ignore_leaf, 0
        pending: list[bytes] = []
        if tree is not None:
            if tree.size != index:
                raise ValueError(f"the tree has {tree.size} leaves, the scan starts at {index}")
            pending = tree.compact_range()
        pop, push = pending.pop, pending.append
        buf = b""  # the file from offset base on; frames are checked in place
        pos = 0
        size = 0  # len(buf)
        eof = False
        try:
            while True:
                if size - pos >= prefix:
                    # Few distinct headers recur: one that checked before needs no CRC.
                    header = buf[pos : pos + 8]
                    length = checked.get(header)
                    if length is None:
                        length, crc = unpack(buf, pos)
                        if crc32(buf[pos : pos + 4]) != crc:
                            raise LedgerCorruptError(
                                path,
                                base + pos,
                                index,
                                "length field fails its CRC-32 (damaged header)",
                            )
                        if length == 0 or length > MAX_PAYLOAD:
                            raise LedgerCorruptError(
                                path, base + pos, index, f"length {length} outside 1..{MAX_PAYLOAD}"
                            )
                        if len(checked) < _CHECKED_HEADERS:
                            checked[header] = length
                    end = pos + prefix + length
                    if end <= size:
                        stored = buf[pos + 8 : pos + prefix]
                        payload = buf[pos + prefix : end]
                        if sha256(b"\x00" + payload).digest() != stored:
                            raise LedgerCorruptError(
                                path, base + pos, index, "payload does not match its leaf hash"
                            )
                        if feed_from <= index < feed_below:
                            feed(stored)
                        if tree is not None:  # MerkleAccumulator.append_leaf_hash, inlined
                            h = stored
                            merges = index
                            while merges & 1:
                                h = sha256(b"\x01" + pop() + h).digest()
                                merges >>= 1
                            push(h)
                        if index == next_stop or payload.startswith(select):
                            if index == next_stop:
                                next_stop = stops.pop() if stops else -1
                            # tuple.__new__: Frame(...) would run NamedTuple's Python __new__.
                            frame = new_frame(Frame, (index, base + pos, stored, payload))
                            index += 1
                            pos = end
                            if tree is not None:
                                tree.restore(index, pending)
                            yield frame
                        else:
                            index += 1
                            pos = end
                        continue
                    want = prefix + length
                else:
                    want = prefix
                # The frame at pos is incomplete in buf: read on from its start, or stop.
                remaining = size - pos
                if eof:
                    if remaining and on_torn is not None:
                        on_torn(TornTail(base + pos, remaining))
                    return
                # Re-reading the partial frame's bytes with the next chunk costs far less
                # than concatenating them to it (a new 1 MiB object, its pages faulted in).
                base += pos
                fh.seek(base)
                buf = b""  # drop the old chunk first: one chunk in memory at a time
                buf = fh.read(max(_CHUNK, want))
                size = len(buf)
                pos = 0
                eof = size <= remaining  # nothing after the bytes already seen
        finally:
            if tree is not None:
                tree.restore(index, pending)


def _ignore_leaf(leaf_hash: bytes) -> None:
    pass


def _ignore_torn(tail: TornTail) -> None:
    pass
