"""What goes into the ledger: one canonical-JSON leaf per fact, in canonical order.

A session contributes, in this order: its run header (id, times, arguments,
environment: the provenance), one leaf per test (node id order) and per fixture
(name order), one per gate result (subject, metric order), and a closing ``verdict``
leaf carrying the sha256 of the canonical run record, which ties the record file
to the log. The order comes from the record, which is canonical whatever xdist did.

>>> leaf = genesis_leaf("rtgov.local/demo", created_at="2026-11-22T00:00:00Z")
>>> leaf
b'{"created_at":"2026-11-22T00:00:00Z","format":1,"kind":"ledger","origin":"rtgov.local/demo"}'
>>> parse_leaf(leaf)["kind"]
'ledger'
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pytest_rtgov.core.canonical import PRESORTED_ENCODER, canonical_json
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.errors import RtgovError

__all__ = [
    "LEAF_KINDS",
    "LeafFormatError",
    "baseline_refresh_leaf",
    "genesis_leaf",
    "parse_leaf",
    "record_digest",
    "recovery_leaf",
    "run_leaves",
]

FORMAT = 1
LEAF_KINDS = (
    "ledger",
    "run",
    "test",
    "fixture",
    "gate",
    "verdict",
    "baseline_refresh",
    "quarantine",
    "recovery",
)


class LeafFormatError(RtgovError):
    """A leaf is not a canonical JSON object with a known ``kind``."""


def record_digest(record: RunRecord, *, encoded: bytes | None = None) -> str:
    """``sha256:<hex>`` of the run record's canonical JSON (``encoded``, when the
    caller already has those bytes)."""
    if encoded is None:
        encoded = record.canonical_json()
    return "sha256:" + hashlib.sha256(encoded).hexdigest()


def genesis_leaf(origin: str, *, created_at: str) -> bytes:
    """Leaf 0 of every ledger: names the log (the checkpoints' origin line)."""
    return canonical_json(
        {"kind": "ledger", "format": FORMAT, "origin": origin, "created_at": created_at}
    )


def _test_leaf(test: dict[str, Any], run_id: str) -> bytes:
    """``canonical_json({"kind": "test", "run_id": run_id, **test})``, the same bytes,
    ~2x faster: ``TestEntry.to_dict`` (and the dicts in it) come with sorted keys, so
    the two keys are put in their sorted places and the encoder need not sort."""
    leaf: dict[str, Any] = {"kind": "test"}
    for key, value in test.items():
        if key > "run_id" and "run_id" not in leaf:
            leaf["run_id"] = run_id
        leaf[key] = value
    if "run_id" not in leaf:
        leaf["run_id"] = run_id
    return PRESORTED_ENCODER.encode(leaf).encode("utf-8")


def run_leaves(record: RunRecord, *, encoded: bytes | None = None) -> list[bytes]:
    """Every leaf a finished session appends, in canonical order (``encoded``: the
    record's canonical JSON, when the caller already has it)."""
    data = record.to_dict()
    run_id = record.run_id
    header = {
        key: value
        for key, value in data.items()
        if key not in ("tests", "fixtures", "gate_results", "verdict", "exit_status")
    }
    leaves = [canonical_json({"kind": "run", **header})]
    leaves += [_test_leaf(t, run_id) for t in data["tests"]]
    leaves += [canonical_json({"kind": "fixture", "run_id": run_id, **f}) for f in data["fixtures"]]
    leaves += [
        canonical_json({"kind": "gate", "run_id": run_id, **g}) for g in data["gate_results"]
    ]
    leaves.append(
        canonical_json(
            {
                "kind": "verdict",
                "run_id": run_id,
                "exit_status": record.exit_status,
                "verdict": data["verdict"],
                "record_sha256": record_digest(record, encoded=encoded),
            }
        )
    )
    return leaves


def baseline_refresh_leaf(entry: Mapping[str, Any], *, seal_sha256: str) -> bytes:
    """An audited baseline change, with the digest of the envelope that signs the result."""
    return canonical_json({"kind": "baseline_refresh", **entry, "seal_sha256": seal_sha256})


def recovery_leaf(
    *, uncovered: tuple[int, int] | None, set_aside: str | None, torn_bytes: int, at: str
) -> bytes:
    """A writer's acknowledgement of an interrupted append: leaves ``[a, b)`` that no
    checkpoint signed, and torn bytes it moved to ``set_aside``."""
    return canonical_json(
        {
            "kind": "recovery",
            "uncovered": list(uncovered) if uncovered else None,
            "set_aside": set_aside,
            "torn_bytes": torn_bytes,
            "at": at,
        }
    )


def parse_leaf(payload: bytes) -> dict[str, Any]:
    """Decode a leaf, insisting on canonical bytes: re-encoding must give them back."""
    try:
        value = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise LeafFormatError(f"not UTF-8 JSON ({exc})") from exc
    if not isinstance(value, dict) or value.get("kind") not in LEAF_KINDS:
        raise LeafFormatError(f"expected an object whose kind is one of {', '.join(LEAF_KINDS)}")
    if canonical_json(value) != payload:
        raise LeafFormatError("not canonical JSON (keys sorted, compact, UTF-8)")
    return value
