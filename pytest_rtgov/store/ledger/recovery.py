"""Ledger recovery: setting aside a torn tail, invalid frames and unsigned leaves.

The writer (:class:`~pytest_rtgov.store.ledger.writer.LedgerAppender`) inherits these steps
from :class:`TailRecovery`: each copies the bytes it removes to ``torn/``, ``invalid/`` or
``unsigned/`` (never deleted), then cuts the log and fsyncs it. Nothing a checkpoint
signed is ever touched.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_rtgov.logs import log_event
from pytest_rtgov.store.files import atomic_write
from pytest_rtgov.store.ledger.frames import MAGIC, TornTail, _ignore_torn, scan_frames

if TYPE_CHECKING:
    from pytest_rtgov.core.merkle import MerkleAccumulator
    from pytest_rtgov.store.ledger.directory import Ledger

__all__ = ["InvalidTail", "TailRecovery"]


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


class TailRecovery:
    """The set-aside steps of :class:`~pytest_rtgov.store.ledger.writer.LedgerAppender`."""

    ledger: Ledger
    tree: MerkleAccumulator
    torn: TornTail | None
    set_aside: Path | None
    invalid: InvalidTail | None
    signed_end: int

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


def _fsync_dir(directory: Path) -> None:
    if os.name == "nt":  # Windows opens no directory (NTFS journals renames)
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
