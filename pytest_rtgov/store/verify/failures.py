"""What ``rtgov verify`` reports: its exit codes, :class:`VerifyFailure` (the first
failure, naming the frame, leaf, checkpoint or file) and :class:`VerifyReport`."""

from __future__ import annotations

from dataclasses import dataclass, field

from pytest_rtgov.errors import IntegrityError

__all__ = [
    "EXIT_CHECKPOINT",
    "EXIT_FRAME",
    "EXIT_HISTORY",
    "EXIT_LEAF",
    "EXIT_NOT_A_DIR",
    "EXIT_NO_STATE",
    "EXIT_ROOT",
    "EXIT_SEAL",
    "VerifyFailure",
    "VerifyReport",
]

# Exit codes of ``rtgov verify`` (also in the CLI's docstring and docs/ledger.md).
EXIT_NO_STATE = 3  # --dir names no state directory (the CLI's "not found")
EXIT_NOT_A_DIR = 4  # --dir names something that is not a directory (the CLI's "unreadable")
EXIT_FRAME = 10  # a frame does not check (header CRC, leaf hash, not a ledger)
EXIT_LEAF = 11  # a leaf is not canonical JSON of a known kind; a run record edited,
# missing (its verdict leaf names it) or orphaned (no verdict leaf names it)
EXIT_ROOT = 12  # the log does not hash to a signed root: leaves edited, removed, reordered
EXIT_CHECKPOINT = 13  # a checkpoint is malformed, unsigned, untrusted or out of order
EXIT_HISTORY = 14  # a consistency proof fails, or the trusted checkpoint is no prefix
EXIT_SEAL = 15  # a baseline or artifact does not match its seal, or an artifact is
# missing, differs from the digest its ledger leaf holds, or no leaf names it


class VerifyFailure(IntegrityError):
    def __init__(self, exit_code: int, where: str, reason: str) -> None:
        self.exit_code, self.where, self.reason = exit_code, where, reason
        super().__init__(f"{where}: {reason}")


@dataclass
class VerifyReport:
    leaves: int = 0
    checkpoints: int = 0
    root: bytes = b""
    signed_by: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)
    records_checked: int = 0
    seals_checked: int = 0
    trusted_prefix: int | None = None
