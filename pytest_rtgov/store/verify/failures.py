"""What ``rtgov verify`` reports: its exit codes, :class:`VerifyFailure` (the first
failure, naming the frame, leaf, checkpoint or file) and :class:`VerifyReport`."""

from __future__ import annotations

from dataclasses import dataclass, field

from pytest_rtgov.core.constants import ExitCode
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

# Exit codes of ``rtgov verify``: members of the one table, ExitCode (docs/usage.md);
# the names stay because the tests and the docs of each check use them.
EXIT_NO_STATE = ExitCode.NOT_FOUND  # --dir names no state directory
EXIT_NOT_A_DIR = ExitCode.BAD_INPUT  # --dir names something that is not a directory
EXIT_FRAME = ExitCode.LEDGER_FRAME  # a frame does not check (header CRC, leaf hash, not a ledger)
EXIT_LEAF = ExitCode.LEDGER_LEAF  # a leaf is not canonical JSON of a known kind; a run record
# edited, missing (its verdict leaf names it) or orphaned (no verdict leaf names it)
EXIT_ROOT = ExitCode.LEDGER_ROOT  # the log does not hash to a signed root
EXIT_CHECKPOINT = ExitCode.CHECKPOINT  # a checkpoint is malformed, unsigned, untrusted or
# out of order
EXIT_HISTORY = ExitCode.HISTORY  # a consistency proof fails, or the trusted checkpoint is
# no prefix
EXIT_SEAL = ExitCode.SEAL  # a baseline or artifact does not match its seal, or an artifact
# is missing, differs from the digest its ledger leaf holds, or no leaf names it; a stage
# cache entry's signature, objects, key or chain does not check


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
    # (leaf index, pruned_at, run ids) of each prune leaf whose records are gone
    pruned: list[tuple[int, str, list[str]]] = field(default_factory=list)
    stage_entries: int = 0  # stage cache entries checked (store/verify/stages.py)
    notes: list[str] = field(default_factory=list)  # facts, not failures (a gc'd upstream)
