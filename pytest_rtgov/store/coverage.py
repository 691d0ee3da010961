"""Which run records the ledger vouches for: the ``verdict`` leaves, read in one pass.

A run record file (``runs/<id>.json``) is *covered* when a ``verdict`` leaf of the
ledger names its run id; the leaf's ``record_sha256`` pins the file's canonical JSON.
A file no verdict leaf names was forged, or written by a session that died before its
ledger append (an orphan). Commands that read run records use only covered ones.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pytest_rtgov.core.ledger_records import LeafFormatError, parse_leaf
from pytest_rtgov.store.ledger import Ledger, LedgerError, scan_frames

__all__ = [
    "ORPHANED_DIR",
    "VERDICT_PREFIX",
    "covered_runs",
    "move_orphans",
    "runs_with_leaves",
]

ORPHANED_DIR = "orphaned"  # <state>/orphaned/{runs,artifacts}: set aside by move_orphans

# Canonical JSON sorts keys: a verdict leaf, and only it, starts with "exit_status".
VERDICT_PREFIX = b'{"exit_status":'


def covered_runs(state_dir: Path) -> dict[str, str]:
    """``{run_id: "sha256:<hex>"}`` from every verdict leaf of ``state_dir``'s ledger
    that its latest checkpoint covers.

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
    # Only what a checkpoint signs vouches for a record: a verdict leaf appended after
    # the last checkpoint (an interrupted session's, or a forger's) does not.
    latest = ledger.latest_checkpoint()
    signed = latest[1].size if latest is not None else 0
    for frame in scan_frames(ledger.log_path, on_torn=_ignore, select=VERDICT_PREFIX):
        if frame.index >= signed:
            continue  # every frame is still checked (CRC, leaf hash) by the scan
        where = f"{ledger.log_path}: leaf {frame.index} at byte {frame.offset}"
        try:
            leaf = parse_leaf(frame.payload)
        except LeafFormatError as exc:
            raise LedgerError(f"{where}: {exc}") from exc
        if leaf["kind"] != "verdict":  # parse_leaf checked a verdict's fields
            raise LedgerError(f"{where}: starts as a verdict leaf but is a {leaf['kind']} leaf")
        covered[leaf["run_id"]] = leaf["record_sha256"]
    return covered


def runs_with_leaves(state_dir: Path) -> set[str]:
    """Run ids of the ledger's ``run`` leaves (a session's first leaf), verdict or not.

    One pass; only leaves containing ``"kind":"run"`` are decoded. A frame that does
    not check raises :class:`~pytest_rtgov.store.ledger.LedgerError`.
    """
    ledger = Ledger(state_dir / "ledger")
    named: set[str] = set()
    if not ledger.exists():
        return named
    for frame in scan_frames(ledger.log_path, on_torn=_ignore):
        if b'"kind":"run"' in frame.payload:
            try:
                leaf = parse_leaf(frame.payload)
            except LeafFormatError:
                continue  # verify names it; this only decides what stays in place
            if leaf["kind"] == "run":
                named.add(str(leaf["run_id"]))
    return named


def _ignore(_tail: object) -> None:
    pass


def move_orphans(state_dir: Path) -> list[tuple[Path, Path]]:
    """Move what no verdict leaf covers to ``<state>/orphaned/``: run records
    (``runs/<id>.json``) and artifact directories (``artifacts/<id>/``).

    They are what a session killed before its ledger append leaves behind (or a
    forgery); ``rtgov verify`` fails on them where they were. Nothing is deleted.
    Returns ``(from, to)`` for each move. Run it when no session is writing: a live
    session's record is an orphan until its ledger append.
    """
    covered = covered_runs(state_dir)
    moves: list[tuple[Path, Path]] = []
    target = state_dir / ORPHANED_DIR
    runs = state_dir / "runs"
    for path in sorted(runs.glob("*.json")) if runs.is_dir() else []:
        if path.stem not in covered:
            moves.append((path, target / "runs" / path.name))
    artifacts = state_dir / "artifacts"
    # A session killed during its append leaves leaves without a verdict: once recovered
    # they are signed, and the artifact digests they name must stay checkable.
    named = runs_with_leaves(state_dir) if artifacts.is_dir() else set()
    for path in sorted(artifacts.iterdir()) if artifacts.is_dir() else []:
        if path.name not in covered and path.name not in named:
            moves.append((path, target / "artifacts" / path.name))
    for source, destination in moves:
        if destination.exists():  # moved before: keep both, never overwrite
            destination = destination.with_name(f"{destination.name}.{time.time_ns()}")
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, destination)
    return moves
