"""Which run records the ledger vouches for: the ``verdict`` leaves, read in one pass.

A run record file (``runs/<id>.json``) is *covered* when a ``verdict`` leaf of the
ledger names its run id; the leaf's ``record_sha256`` pins the file's canonical JSON.
A file no verdict leaf names was forged, or written by a session that died before its
ledger append (an orphan). Commands that read run records use only covered ones.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from pytest_rtgov.core.ledger_records import LeafFormatError, parse_leaf
from pytest_rtgov.store.ledger import Ledger, LedgerError, scan_frames

__all__ = [
    "ORPHANED_DIR",
    "VERDICT_PREFIX",
    "SignedLeaf",
    "covered_runs",
    "move_orphans",
    "runs_with_leaves",
    "signed_leaves",
]

ORPHANED_DIR = "orphaned"  # <state>/orphaned/{runs,artifacts}: set aside by move_orphans

# Canonical JSON sorts keys: a verdict leaf, and only it, starts with "exit_status".
VERDICT_PREFIX = b'{"exit_status":'


class SignedLeaf(NamedTuple):
    """A parsed leaf the latest checkpoint covers: its leaf index, where it is (for
    messages) and its fields."""

    leaf_index: int
    where: str
    leaf: dict[str, Any]


def signed_leaves(state_dir: Path, prefix: bytes) -> Iterator[SignedLeaf]:
    """Every leaf of ``state_dir``'s ledger whose canonical JSON
    starts with ``prefix`` and that its latest checkpoint covers, in ledger order;
    ``where`` names the log, the leaf index and the byte offset. Every frame is checked
    (CRC, leaf hash) by the scan; a leaf appended after the last checkpoint (an
    interrupted session's, a killed gc's, or a forger's) vouches for nothing and is
    skipped. No ledger yields nothing; a torn tail is ignored. A frame that does not
    check, or a leaf that does not parse, raises
    :class:`~pytest_rtgov.store.ledger.LedgerError` naming where."""
    ledger = Ledger(state_dir / "ledger")
    if not ledger.exists():
        return
    latest = ledger.latest_checkpoint()
    signed = latest[1].size if latest is not None else 0
    for frame in scan_frames(ledger.log_path, on_torn=_ignore, select=prefix):
        if frame.index >= signed:
            continue
        where = f"{ledger.log_path}: leaf {frame.index} at byte {frame.offset}"
        try:
            leaf = parse_leaf(frame.payload)
        except LeafFormatError as exc:
            raise LedgerError(f"{where}: {exc}") from exc
        yield SignedLeaf(frame.index, where, leaf)


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
    covered: dict[str, str] = {}
    for _, where, leaf in signed_leaves(state_dir, VERDICT_PREFIX):
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
