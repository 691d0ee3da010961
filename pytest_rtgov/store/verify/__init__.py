"""``rtgov verify``: everything the ledger, its checkpoints and the sealed files claim.

One streaming pass over the log, memory independent of its length: each frame's
leaf hash is recomputed, the Merkle root is checked at every checkpoint's size, the
consistency proof between successive checkpoints is generated from the same pass
and verified, and a trusted earlier checkpoint must be a prefix of the log. Every leaf is parsed
(canonical JSON of a known kind, with its kind's fields). The run records are checked
against the verdict leaves both ways (each named one present and matching, none that
no leaf names), the artifacts against the digests the test and fixture leaves hold
(each present, matching and sealed, none unnamed), then the baseline seal. A run that a
later signed ``prune`` leaf names with the same digest (``rtgov gc``) may have lost its
record and artifacts: it is reported as pruned, not missing.

The first failure stops the check and names the frame, leaf, checkpoint or file.

A package; this module only re-exports the public names of its parts, one role each:

- :mod:`.failures`: the exit codes, :class:`VerifyFailure` and :class:`VerifyReport`;
- :mod:`.state`: :func:`verify_all`, the whole state directory in order;
- :mod:`.log`: the log and its leaves, checkpoints and consistency proofs;
- :mod:`.records`: run records and artifacts against the leaves that name them;
- :mod:`.seals`: the baselines' seals and who signed a seal.
- :mod:`.stages`: the stage cache's entries: signature, objects, key and chain.
"""

from __future__ import annotations

from pytest_rtgov.store.verify.failures import (
    EXIT_CHECKPOINT,
    EXIT_FRAME,
    EXIT_HISTORY,
    EXIT_LEAF,
    EXIT_NO_STATE,
    EXIT_NOT_A_DIR,
    EXIT_ROOT,
    EXIT_SEAL,
    VerifyFailure,
    VerifyReport,
)
from pytest_rtgov.store.verify.state import verify_all

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
    "verify_all",
]
