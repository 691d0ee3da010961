"""The ledger: framed canonical-JSON records, the leaves of an RFC 9162 Merkle tree.

A package; this module only re-exports the public names of its parts, one role each:

- :mod:`.frames`: the log file's format, framing and the one-pass checking scan;
- :mod:`.directory`: the ledger directory, its checkpoint files and the writer's lock;
- :mod:`.recovery`: setting aside torn tails, invalid frames and unsigned leaves;
- :mod:`.writer`: appending a session's leaves and signing the next checkpoint.
"""

from __future__ import annotations

from pytest_rtgov.store.ledger.directory import (
    DEFAULT_LOCK_TIMEOUT,
    LOCK_TIMEOUT_ENV,
    MAX_LOCK_TIMEOUT,
    Ledger,
    LedgerLockTimeout,
    lock_timeout,
    read_checkpoint_body,
)
from pytest_rtgov.store.ledger.frames import (
    FRAME_HEADER_BYTES,
    MAGIC,
    MAX_PAYLOAD,
    Frame,
    LedgerCorruptError,
    LedgerError,
    TornTail,
    encode_frame,
    read_frames,
    scan_frames,
)
from pytest_rtgov.store.ledger.recovery import InvalidTail
from pytest_rtgov.store.ledger.writer import AppendResult, LedgerAppender, append_session

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "FRAME_HEADER_BYTES",
    "LOCK_TIMEOUT_ENV",
    "MAGIC",
    "MAX_LOCK_TIMEOUT",
    "MAX_PAYLOAD",
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
