"""The ledger file: framed canonical-JSON records, the leaves of an RFC 9162 Merkle tree.

Layout of a ledger directory (format in ``docs/ledger.md``)::

    log               MAGIC, then frames:
                      u32 length | u32 crc32(length) | 32-byte leaf hash | payload
    log.lock          flock'ed by a writer for its whole append batch; holds
                      "<pid> <UTC time>" of the writer while it is held
    checkpoints/      0000000001.txt, ...: C2SP signed-note checkpoints, one per batch
    torn/             incomplete trailing frames set aside on open, never deleted
    invalid/          unsigned complete frames that are no valid leaf, set aside on
                      open (with everything after them), never deleted

The frame checksum is the RFC 9162 leaf hash ``SHA-256(0x00 || payload)`` itself, so
checking a frame costs nothing beyond hashing the leaf. The length has a CRC of its
own: a damaged length is corruption, and only a frame cut short at the end of the
file (a writer killed mid-append) is a torn tail.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from pytest_rtgov.core.checkpoints import Checkpoint, format_checkpoint, parse_checkpoint
from pytest_rtgov.core.keys import Signer
from pytest_rtgov.core.merkle import MerkleAccumulator
from pytest_rtgov.core.notes import sign_note
from pytest_rtgov.errors import RtgovError
from pytest_rtgov.logs import log_event
from pytest_rtgov.store.files import atomic_write

__all__ = [
    "MAGIC",
    "AppendResult",
    "Frame",
    "InvalidTail",
    "Ledger",
    "LedgerAppender",
    "LedgerCorruptError",
    "LedgerError",
    "LedgerLockTimeout",
    "TornTail",
    "append_session",
    "encode_frame",
    "lock_timeout",
    "read_checkpoint_body",
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
DEFAULT_LOCK_TIMEOUT = 60.0  # seconds a writer waits for log.lock (RTGOV_LEDGER_TIMEOUT)
LOCK_TIMEOUT_ENV = "RTGOV_LEDGER_TIMEOUT"


class LedgerError(RtgovError):
    """The ledger cannot be read or written."""


class LedgerCorruptError(LedgerError):
    """The ledger's bytes do not verify: a verification failure, never repaired.

    ``index`` is the leaf index of the bad frame (or None), ``offset`` its byte offset.
    """

    def __init__(self, path: Path, offset: int, index: int | None, reason: str) -> None:
        self.path, self.offset, self.index, self.reason = path, offset, index, reason
        where = f"frame {index} at byte {offset}" if index is not None else f"byte {offset}"
        super().__init__(f"{path}: {where}: {reason}")


class LedgerLockTimeout(LedgerError):
    """Another writer held ``log.lock`` for longer than the writer's timeout."""


MAX_LOCK_TIMEOUT = 86400.0  # a day: a wait without end is a hang, not a timeout


def lock_timeout(option: float | None = None, environ: dict[str, str] | None = None) -> float:
    """Seconds a writer waits for ``log.lock``: ``option`` (``--rtgov-ledger-timeout``),
    else ``RTGOV_LEDGER_TIMEOUT``, else 60. 0 gives up at once if the lock is held."""
    if option is None:
        raw = (os.environ if environ is None else environ).get(LOCK_TIMEOUT_ENV, "").strip()
        if not raw:
            return DEFAULT_LOCK_TIMEOUT
        try:
            option = float(raw)
        except ValueError:
            option = -1.0
        if not 0 <= option <= MAX_LOCK_TIMEOUT:
            raise LedgerError(
                f"{LOCK_TIMEOUT_ENV}={raw!r}: expected a number of seconds from 0 to "
                f"{MAX_LOCK_TIMEOUT:g} (default {DEFAULT_LOCK_TIMEOUT:g})"
            )
    if not 0 <= option <= MAX_LOCK_TIMEOUT:  # NaN fails both comparisons
        raise LedgerError(
            f"--rtgov-ledger-timeout {option!r}: expected seconds from 0 to {MAX_LOCK_TIMEOUT:g}"
        )
    return float(option)


class Frame(NamedTuple):
    # A NamedTuple, not a dataclass: verify creates one per leaf, and this is ~10%
    # of its time at a million leaves (benches/ledger.py).
    index: int
    offset: int
    leaf_hash: bytes
    payload: bytes

    @property
    def end(self) -> int:
        """Byte offset just past this frame: where the next one starts."""
        return self.offset + _PREFIX + len(self.payload)


@dataclass(frozen=True, slots=True)
class InvalidTail:
    """Complete but unsigned frames set aside because the first of them is no valid
    leaf: from leaf ``index`` (byte ``offset``) to the end, ``length`` bytes in ``path``."""

    index: int
    offset: int
    length: int
    path: Path
    reason: str

    def describe(self) -> str:
        return (
            f"leaf {self.index} at byte {self.offset} is not a valid leaf ({self.reason}): "
            f"it and everything after it ({self.length} bytes, never signed) set aside "
            f"in {self.path}"
        )


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
) -> Iterator[Frame]:
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


class Ledger:
    """A ledger directory. Reading needs no lock; appending goes through :meth:`append`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.log_path = directory / "log"
        self.lock_path = directory / "log.lock"
        self.checkpoint_dir = directory / "checkpoints"
        self.torn_dir = directory / "torn"

    def exists(self) -> bool:
        return self.log_path.exists()

    def checkpoint_paths(self) -> list[Path]:
        """Checkpoint files in sequence order."""
        if not self.checkpoint_dir.is_dir():
            return []
        return sorted(p for p in self.checkpoint_dir.glob("*.txt") if p.stem.isdigit())

    def latest_checkpoint(self) -> tuple[Path, Checkpoint] | None:
        """The newest checkpoint file and its body (signatures are not checked here)."""
        paths = self.checkpoint_paths()
        if not paths:
            return None
        return paths[-1], read_checkpoint_body(paths[-1])

    def frames(
        self,
        *,
        on_torn: Callable[[TornTail], None] | None = None,
        start: tuple[int, int] | None = None,
    ) -> Iterator[Frame]:
        if not self.log_path.exists():
            return iter(())
        return read_frames(self.log_path, on_torn=on_torn, start=start)

    @contextmanager
    def append(
        self,
        *,
        timeout: float | None = None,
        on_wait: Callable[[str], None] | None = None,
        sign_uncovered: bool = True,
    ) -> Iterator[LedgerAppender]:
        """Lock, scan and recover the log, and hand out an appender for one batch.

        A lock another writer holds is waited for up to ``timeout`` seconds (see
        :func:`lock_timeout`), with one message naming the holder's pid and since when
        (logged, and passed to ``on_wait``); then :class:`LedgerLockTimeout`."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+b") as lock:
            self._lock(lock, lock_timeout(timeout), on_wait)
            try:
                lock.truncate(0)
                lock.write(f"{os.getpid()} {_utc_now()}\n".encode("ascii"))
                lock.flush()
                appender = LedgerAppender(self, sign_uncovered=sign_uncovered)
                try:
                    yield appender
                finally:
                    appender.close()
            finally:
                lock.truncate(0)
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _lock(
        self, lock: Any, timeout: float, on_wait: Callable[[str], None] | None
    ) -> None:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        holder = self.lock_holder()
        message = (
            f"{self.lock_path}: waiting for the ledger lock, held by {holder} "
            f"(giving up after {timeout:g} s)"
        )
        log_event(
            "ledger.lock_wait", level=logging.WARNING, path=str(self.lock_path), holder=holder
        )
        if on_wait is not None:
            on_wait(message)
        deadline = time.monotonic() + timeout
        pause = 0.01
        while True:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                time.sleep(min(pause, left))
                pause = min(pause * 2, 0.25)
        raise LedgerLockTimeout(
            f"{self.lock_path}: gave up after {timeout:g} s waiting for the ledger lock, held "
            f"by {self.lock_holder()}: a stopped or hung writer? Resume or end it; "
            f"--rtgov-ledger-timeout or {LOCK_TIMEOUT_ENV} set how long to wait"
        )

    def lock_holder(self) -> str:
        """``pid N since TIME`` as the holder wrote it into ``log.lock``, if it did."""
        try:
            fields = self.lock_path.read_text(encoding="ascii", errors="replace").split()
        except OSError:
            fields = []
        if len(fields) == 2 and fields[0].isdigit():
            return f"pid {fields[0]} since {fields[1]}"
        return "a process that did not say who it is"


class LedgerAppender:
    """Appends frames under the lock; keeps the streaming Merkle root up to date."""

    def __init__(self, ledger: Ledger, *, sign_uncovered: bool = True) -> None:
        """``sign_uncovered=False`` (where signatures are required): complete leaves no
        checkpoint signs are set aside in ``unsigned/`` instead of being signed by this
        writer's key; only ``rtgov ledger recover``, after review, signs such leaves."""
        self.ledger = ledger
        self.torn: TornTail | None = None
        self.set_aside: Path | None = None
        self.invalid: InvalidTail | None = None
        path = ledger.log_path
        if not path.exists() or path.stat().st_size == 0:
            with open(path, "wb") as fh:
                fh.write(MAGIC)
                fh.flush()
                os.fsync(fh.fileno())
            _fsync_dir(path.parent)
        # The latest checkpoint must still describe this log: a writer refuses to
        # extend a history that no longer matches what it signed.
        latest = ledger.latest_checkpoint()
        covered = latest[1].size if latest is not None else 0
        self._scan(latest)
        if self.tree.size > covered:
            # Complete leaves that no checkpoint signs: an interrupted session's (or
            # someone's unauthorised append). Only valid leaves are ever signed: the
            # first invalid one and all after it are set aside, and the log rescanned.
            invalid = self._first_invalid(covered)
            if invalid is not None:
                self._set_aside_invalid(*invalid)
                self._scan(latest)
            if not sign_uncovered and self.tree.size > covered:
                self._set_aside_unsigned(covered)
                self._scan(latest)
        # Just past the last complete frame: where a torn tail starts, else the file's end.
        end = max(len(MAGIC), self.torn.offset if self.torn else path.stat().st_size)
        # The next checkpoint names the uncovered leaves explicitly.
        self.uncovered = (covered, self.tree.size) if self.tree.size > covered else None
        if self.torn is not None:
            self._set_aside(end)
        self._fh = open(path, "ab")

    def _scan(self, latest: tuple[Path, Checkpoint] | None) -> None:
        """One pass: the tree, the genesis, the end of the signed prefix, a torn tail."""
        path = self.ledger.log_path
        self.tree = MerkleAccumulator()
        self.torn = None
        self.genesis: bytes | None = None
        self.signed_end = len(MAGIC)  # byte offset just past the latest checkpoint's leaves
        # Only the genesis and the leaf the latest checkpoint ends at come back.
        signed = latest[1].size if latest is not None else 0
        for frame in scan_frames(
            path, on_torn=self._torn, select=(), indices=(0, signed - 1), tree=self.tree
        ):
            if frame.index == 0:
                self.genesis = frame.payload
            if latest is not None and self.tree.size == latest[1].size:
                self.signed_end = frame.end
                if self.tree.root() != latest[1].root_hash:
                    raise LedgerCorruptError(
                        path,
                        frame.offset,
                        frame.index,
                        f"the log's first {latest[1].size} leaves do not hash to the root "
                        f"signed in {latest[0].name}: the history was changed",
                    )
        end = max(len(MAGIC), self.torn.offset if self.torn else path.stat().st_size)
        if latest is not None and self.tree.size < latest[1].size:
            raise LedgerCorruptError(
                path,
                end,
                None,
                f"{latest[0].name} covers {latest[1].size} leaves but the log has "
                f"{self.tree.size}: records were removed",
            )

    def _first_invalid(self, covered: int) -> tuple[int, int, str] | None:
        """(index, offset, reason) of the first uncovered frame that is no valid leaf."""
        from pytest_rtgov.core.ledger_records import LeafFormatError, parse_leaf

        start = (self.signed_end, covered) if covered else None
        for frame in scan_frames(self.ledger.log_path, start=start, on_torn=_ignore_torn):
            try:
                leaf = parse_leaf(frame.payload)
                if (leaf["kind"] == "ledger") != (frame.index == 0):
                    raise LeafFormatError("only leaf 0 is the ledger genesis, and it is")
            except LeafFormatError as exc:
                return frame.index, frame.offset, str(exc)
        return None

    def _set_aside_invalid(self, index: int, offset: int, reason: str) -> None:
        """Copy the bytes from an invalid frame to the end (a torn tail included) to
        ``invalid/``, and cut the log before it. Nothing before it is touched."""
        self._set_aside_leaves(index, offset, "invalid", reason, "ledger.invalid_set_aside")

    def _set_aside_unsigned(self, covered: int) -> None:
        """Where signatures are required, a writer signs only its own leaves: leaves
        after the last checkpoint (an interrupted session's, or someone's append) are
        moved to ``unsigned/`` for review, never signed unseen by a trusted key."""
        count = self.tree.size - covered
        reason = (
            f"{count} leaves after the last signed checkpoint: signatures are required here, "
            "so this writer does not sign leaves it did not write; review them, then "
            "`rtgov ledger recover` can sign them"
        )
        self._set_aside_leaves(
            covered, self.signed_end, "unsigned", reason, "ledger.unsigned_set_aside"
        )

    def _set_aside_leaves(
        self, index: int, offset: int, folder: str, reason: str, event: str
    ) -> None:
        """Move leaf ``index`` (at byte ``offset``) and all after it to ``folder/``, never
        to be signed by this writer, and say so (:attr:`invalid`, a log event)."""
        cut = 0 if index == 0 else offset  # leaf 0 goes too: back to the bare magic
        target, length = self._move_tail(offset, cut, self.ledger.directory / folder)
        self.invalid = InvalidTail(index, offset, length, target, reason)
        log_event(
            event, level=logging.WARNING, leaf=index, offset=offset, path=str(target), reason=reason
        )

    def _torn(self, tail: TornTail) -> None:
        self.torn = tail

    def _set_aside(self, end: int) -> None:
        """Move an interrupted append's bytes to ``torn/`` and cut the log after the last
        complete frame. Nothing complete is touched; the torn bytes are kept."""
        assert self.torn is not None
        if self.torn.offset == 0:  # a torn MAGIC: the file never held a frame
            end = 0
        self.set_aside, _ = self._move_tail(self.torn.offset, end, self.ledger.torn_dir)

    def _move_tail(self, offset: int, cut: int, directory: Path) -> tuple[Path, int]:
        """Copy the log's bytes from ``offset`` to its end to ``directory/OFFSET-LEN.bin``
        (atomically), then cut the log at ``cut`` (0: back to the bare magic) and fsync.
        Returns the file written and how many bytes it holds."""
        path = self.ledger.log_path
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
        target = directory / f"{offset:012d}-{len(data)}.bin"
        atomic_write(target, data)
        with open(path, "r+b") as fh:
            fh.truncate(cut)
            if cut == 0:
                fh.write(MAGIC)
            fh.flush()
            os.fsync(fh.fileno())
        return target, len(data)

    @property
    def size(self) -> int:
        return self.tree.size

    def root(self) -> bytes:
        return self.tree.root()

    def append(self, payload: bytes, *, sync: bool = True) -> int:
        """Append one record with one write, flushed and (unless ``sync`` is False)
        fsynced; returns its leaf index."""
        frame = encode_frame(payload)
        self._fh.write(frame)
        self._fh.flush()
        if sync:
            os.fsync(self._fh.fileno())
        self.tree.append_leaf_hash(frame[8:_PREFIX])
        return self.tree.size - 1

    def sync(self) -> None:
        os.fsync(self._fh.fileno())

    def write_checkpoint(self, note: str) -> Path:
        """Store a signed checkpoint as the next numbered file, atomically."""
        paths = self.ledger.checkpoint_paths()
        sequence = int(paths[-1].stem) + 1 if paths else 1
        path = self.ledger.checkpoint_dir / f"{sequence:010d}.txt"
        atomic_write(path, note.encode("utf-8"))
        return path

    def close(self) -> None:
        fh = getattr(self, "_fh", None)
        if fh is not None:
            fh.close()


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_checkpoint_body(path: Path) -> Checkpoint:
    """The checkpoint inside a signed note file (the text before the blank line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LedgerError(f"{path}: cannot read checkpoint ({exc})") from exc
    body, sep, _ = text.partition("\n\n")
    if not sep:
        raise LedgerError(f"{path}: expected a signed note (checkpoint, blank line, signatures)")
    try:
        return parse_checkpoint(body + "\n")
    except RtgovError as exc:
        raise LedgerError(f"{path}: {exc}") from exc


def append_session(
    ledger: Ledger,
    leaves: Sequence[bytes] | Callable[[], Sequence[bytes]],
    *,
    signer: Signer,
    origin: str,
    created_at: str,
    fsync_each: bool = True,
    lock_timeout: float | None = None,
    on_wait: Callable[[str], None] | None = None,
    sign_uncovered: bool = True,
) -> AppendResult | None:
    """Append a session's leaves and end with a signed checkpoint, all under the lock.

    Leaves left uncovered by an interrupted session, a torn tail set aside, or unsigned
    frames set aside as invalid, are first acknowledged by a ``recovery`` leaf. With no
    leaves and nothing to recover, nothing is written and None is returned.

    A new ledger starts with its genesis leaf naming ``origin``; an existing one keeps
    the origin it was created with. ``fsync_each`` (the default) fsyncs every record as
    it is written; False fsyncs the batch once, before the checkpoint (group commit: a
    crash of the machine, not of the process, can then lose the whole unsigned batch).
    ``lock_timeout`` and ``on_wait``: see :meth:`Ledger.append`. ``sign_uncovered=False``
    (signatures required): leaves no checkpoint covers are set aside, not signed
    (:class:`LedgerAppender`).

    ``leaves`` may be a function: it is called under the lock, once the log was scanned
    and recovered and before anything is appended, so that a caller learns the ledger
    can take its leaves before it commits to them (a session writes its run record
    there); what it raises propagates with nothing appended.
    """
    from pytest_rtgov.core.ledger_records import genesis_leaf, parse_leaf, recovery_leaf

    with ledger.append(
        timeout=lock_timeout, on_wait=on_wait, sign_uncovered=sign_uncovered
    ) as appender:
        if callable(leaves):
            leaves = leaves()
        if appender.genesis is None:
            appender.append(genesis_leaf(origin, created_at=created_at))
        else:
            origin = str(parse_leaf(appender.genesis)["origin"])
        bad = appender.invalid
        if appender.uncovered is not None or appender.set_aside is not None or bad is not None:
            appender.append(
                recovery_leaf(
                    uncovered=appender.uncovered,
                    set_aside=str(appender.set_aside) if appender.set_aside else None,
                    torn_bytes=appender.torn.length if appender.torn else 0,
                    at=created_at,
                    invalid=None
                    if bad is None
                    else {
                        "leaf": bad.index,
                        "offset": bad.offset,
                        "bytes": bad.length,
                        "set_aside": str(bad.path),
                        "reason": bad.reason,
                    },
                )
            )
        elif not leaves:
            return None
        first = appender.size
        for leaf in leaves:
            appender.append(leaf, sync=fsync_each)
        if not fsync_each:
            appender.sync()  # group commit: durable before the checkpoint signs them
        checkpoint = Checkpoint(origin=origin, size=appender.size, root_hash=appender.root())
        text = sign_note(format_checkpoint(checkpoint), [signer])
        path = appender.write_checkpoint(text)
        return AppendResult(
            first_index=first,
            size=appender.size,
            root=appender.root(),
            checkpoint_path=path,
            set_aside=appender.set_aside,
            invalid=bad,
        )


@dataclass(frozen=True, slots=True)
class AppendResult:
    first_index: int
    size: int
    root: bytes
    checkpoint_path: Path
    set_aside: Path | None
    invalid: InvalidTail | None = None
