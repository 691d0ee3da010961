"""Folding ledger leaves into the delta index: one leaf at a time, a run complete at
its verdict leaf, baseline refreshes as events; a leaf that does not read is an
:class:`IndexLeafError` naming it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pytest_rtgov.core.delta_index import BaselineEvent, DeltaIndex
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.errors import ReadError, RtgovError
from pytest_rtgov.store.ledger import Frame

__all__ = ["IndexLeafError", "take_leaf"]

_GROUP_OF = {"test": "tests", "fixture": "fixtures", "gate": "gates"}


class IndexLeafError(ReadError):
    """A ledger leaf the index cannot read: not JSON, not an object, an unknown kind,
    or a field missing or of the wrong type. ``rtgov verify`` reports the same leaf."""

    def __init__(self, path: Path, frame: Frame, expected: str) -> None:
        self.path, self.leaf_index, self.expected = path, frame.index, expected
        super().__init__(
            f"{path}: ledger leaf {frame.index} (byte {frame.offset}): expected {expected}; "
            "the delta index cannot be built from this ledger (`rtgov verify` checks all of it)"
        )


def take_leaf(
    log: Path, index: DeltaIndex, group: dict[str, Any] | None, frame: Frame
) -> dict[str, Any] | None:
    """Fold one leaf of ``log`` into the index; the run being read (None between runs)."""
    try:
        leaf = json.loads(frame.payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise IndexLeafError(log, frame, f"a JSON object (not JSON: {exc})") from None
    if not isinstance(leaf, dict):
        raise IndexLeafError(log, frame, f"a JSON object, got {type(leaf).__name__}")
    from pytest_rtgov.core.ledger_records import LEAF_KINDS

    kind = leaf.pop("kind", None)
    if kind not in LEAF_KINDS:
        raise IndexLeafError(
            log, frame, f"a kind among {', '.join(LEAF_KINDS)}, got kind {kind!r}"
        )
    if kind == "run":
        return {"header": leaf, "tests": [], "fixtures": [], "gates": []}
    if kind in _GROUP_OF:
        if group is not None:
            leaf.pop("run_id", None)
            group[_GROUP_OF[kind]].append(leaf)
        return group
    if kind == "verdict":
        if group is None:
            return None  # a verdict without its run header: nothing to index
        for name, types in (("verdict", dict), ("exit_status", int)):
            if not isinstance(leaf.get(name), types) or isinstance(leaf.get(name), bool):
                raise IndexLeafError(log, frame, f"a verdict leaf with {name!r}")
        try:
            record = RunRecord.from_dict(
                {
                    **group["header"],
                    "tests": group["tests"],
                    "fixtures": group["fixtures"],
                    "gate_results": group["gates"],
                    "verdict": leaf["verdict"],
                    "exit_status": leaf["exit_status"],
                },
                source=f"{log} leaf {frame.index}",
            )
            if record.run_id not in index.run_pos:
                index.add_record(record, leaf_index=frame.index)
        except RtgovError as exc:
            raise IndexLeafError(
                log, frame, f"a run (header, tests, fixtures, gates, verdict) that reads: {exc}"
            ) from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise IndexLeafError(
                log, frame, f"a run whose leaves have the fields a run record needs ({exc!r})"
            ) from None
        return None
    if kind == "baseline_refresh":
        changes = leaf.get("changes", [])
        if not isinstance(changes, list):
            raise IndexLeafError(log, frame, "a baseline_refresh leaf whose changes are a list")
        index.add_baseline(
            BaselineEvent(
                sequence=len(index.baselines) + 1,
                leaf_index=frame.index,
                at=str(leaf.get("at", "")),
                who=str(leaf.get("who", "")),
                reason=str(leaf.get("reason", "")),
                run_id=str(leaf.get("run_id", "")),
                fingerprint=str(leaf.get("fingerprint", "")),
                changes=len(changes),
                seal_sha256=str(leaf.get("seal_sha256", "")),
            )
        )
    return group  # ledger, quarantine, recovery, baseline_refresh: no run of their own
