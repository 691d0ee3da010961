"""The ledger's ``stage`` leaves, read back for the experiment graph, checked as the
delta index's leaves are.

The delta index keeps no stage rows (its columns are observations), so ``rtgov graph``
reads the stage leaves from the log itself, in one pass that checks every frame and
hashes the leaves up to the ledger's state (the latest signed checkpoint, or the whole
log recomputed): a log that does not land on that root is
:class:`~pytest_rtgov.store.delta_index.LedgerRootMismatchError` (exit 12), a frame that
does not check is exit 10, a stage leaf that does not read an
:class:`~pytest_rtgov.store.delta_index.IndexLeafError` (exit 11).
"""

from __future__ import annotations

import json
from typing import Any

from pytest_rtgov.core.merkle import MerkleAccumulator
from pytest_rtgov.store.delta_index import DeltaIndexStore, IndexLeafError, LedgerRootMismatchError
from pytest_rtgov.store.ledger import scan_frames

__all__ = ["ledger_stages"]

_MARK = b'"kind":"stage"'  # canonical JSON: no space after the colon
_TEXT_FIELDS = ("run_id", "stage", "key", "outcome")


def ledger_stages(store: DeltaIndexStore) -> list[dict[str, Any]]:
    """Every ``stage`` leaf of ``store``'s ledger up to its checked state, in order."""
    ledger = store.ledger
    if not ledger.exists():
        return []
    state = store.ledger_state()
    found: list[dict[str, Any]] = []
    tree = MerkleAccumulator()
    log = ledger.log_path
    if state.size:
        frames = scan_frames(log, tree=tree)
        for frame in frames:
            if _MARK in frame.payload:
                leaf = _read(log, frame)
                if leaf is not None:
                    found.append(leaf)
            if frame.index + 1 >= state.size:
                frames.close()
                break
    if tree.size != state.size or tree.root() != state.root:
        raise LedgerRootMismatchError(
            f"{log}: its first {state.size} leaves do not hash to the root of {state.source}: "
            "a leaf was changed, removed or added (`rtgov verify` says which)"
        )
    return found


def _read(log: Any, frame: Any) -> dict[str, Any] | None:
    try:
        leaf = json.loads(frame.payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise IndexLeafError(log, frame, f"a JSON object (not JSON: {exc})") from None
    if not isinstance(leaf, dict) or leaf.get("kind") != "stage":
        return None  # another leaf that quotes the marker (a reason, a name)
    for field in _TEXT_FIELDS:
        if not isinstance(leaf.get(field), str):
            raise IndexLeafError(log, frame, f"a stage leaf with {field!r} (a string)")
    upstream = leaf.get("upstream", [])
    if not isinstance(upstream, list) or not all(isinstance(u, str) for u in upstream):
        raise IndexLeafError(log, frame, "a stage leaf whose 'upstream' is a list of names")
    return leaf
