"""The ledger writer: append a session's leaves and end with a signed checkpoint.

:class:`LedgerAppender` scans the log under the lock (checking it against the latest
checkpoint), recovers what an interrupted writer left (:mod:`.recovery`), appends frames
keeping the streaming Merkle root, and stores the next checkpoint. :func:`append_session`
is the whole batch of one session.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_rtgov.core.checkpoints import Checkpoint, format_checkpoint
from pytest_rtgov.core.keys import Signer
from pytest_rtgov.core.merkle import MerkleAccumulator
from pytest_rtgov.core.notes import sign_note
from pytest_rtgov.logs import log_event
from pytest_rtgov.store.files import atomic_write
from pytest_rtgov.store.ledger.directory import Ledger
from pytest_rtgov.store.ledger.frames import (
    _PREFIX,
    MAGIC,
    LedgerCorruptError,
    TornTail,
    encode_frame,
    scan_frames,
)
from pytest_rtgov.store.ledger.recovery import InvalidTail, TailRecovery, _fsync_dir

__all__ = ["AppendResult", "LedgerAppender", "append_session"]


class LedgerAppender(TailRecovery):
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

    def offset(self) -> int:
        """Where the next frame goes: the log's end."""
        return self._fh.tell()

    def cut(self, offset: int) -> None:
        """Remove this writer's own frames from ``offset`` on, which no checkpoint
        signs (an append that failed before its checkpoint), so that no later writer
        signs them: a session rewrites its record after such a failure."""
        self._fh.close()
        with open(self.ledger.log_path, "r+b") as fh:
            fh.truncate(offset)
            fh.flush()
            os.fsync(fh.fileno())

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
        first, start = appender.size, appender.offset()
        try:
            for leaf in leaves:
                appender.append(leaf, sync=fsync_each)
            if not fsync_each:
                appender.sync()  # group commit: durable before the checkpoint signs them
            checkpoint = Checkpoint(
                origin=origin, size=appender.size, root_hash=appender.root()
            )
            text = sign_note(format_checkpoint(checkpoint), [signer])
            path = appender.write_checkpoint(text)
        except Exception:
            # The caller's leaves never get signed: cut them (the genesis and recovery
            # leaves before them are valid and stay), still under the lock.
            try:
                appender.cut(start)
            except OSError as exc:
                log_event("ledger.cut_failed", level=logging.ERROR, error=str(exc))
            raise
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
