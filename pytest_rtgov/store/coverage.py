"""Which run records the ledger vouches for: the ``verdict`` leaves, read in one pass.

A run record file (``runs/<id>.json``) is *covered* when a ``verdict`` leaf of the
ledger names its run id; the leaf's ``record_sha256`` pins the file's canonical JSON.
A file no verdict leaf names was forged, or written by a session that died before its
ledger append (an orphan). Commands that read run records use only covered ones.
"""

from __future__ import annotations

from pathlib import Path

from pytest_rtgov.core.ledger_records import LeafFormatError, parse_leaf
from pytest_rtgov.store.ledger import Ledger, LedgerError, scan_frames

__all__ = ["VERDICT_PREFIX", "covered_runs"]

# Canonical JSON sorts keys: a verdict leaf, and only it, starts with "exit_status".
VERDICT_PREFIX = b'{"exit_status":'


def covered_runs(state_dir: Path) -> dict[str, str]:
    """``{run_id: "sha256:<hex>"}`` from every verdict leaf of ``state_dir``'s ledger.

    Streams the log, checking every frame (CRC, leaf hash) as ``rtgov verify`` does;
    signatures and checkpoints are not checked here (that is ``rtgov verify``'s job).
    No ledger gives an empty dict; a torn tail is ignored. Raises
    :class:`~pytest_rtgov.store.ledger.LedgerError` (an ``RtgovError``) for a frame
    that does not check or a verdict leaf that is not a valid leaf, naming the leaf
    index and byte offset. A run id named twice keeps its last digest.
    """
    ledger = Ledger(state_dir / "ledger")
    covered: dict[str, str] = {}
    if not ledger.exists():
        return covered
    for frame in scan_frames(ledger.log_path, on_torn=_ignore, select=VERDICT_PREFIX):
        where = f"{ledger.log_path}: leaf {frame.index} at byte {frame.offset}"
        try:
            leaf = parse_leaf(frame.payload)
        except LeafFormatError as exc:
            raise LedgerError(f"{where}: {exc}") from exc
        if leaf["kind"] != "verdict":  # parse_leaf checked a verdict's fields
            raise LedgerError(f"{where}: starts as a verdict leaf but is a {leaf['kind']} leaf")
        covered[leaf["run_id"]] = leaf["record_sha256"]
    return covered


def _ignore(_tail: object) -> None:
    pass
