"""The delta index's stored form: the sqlite schema, the row layout and the digests.

``meta`` says where in the ledger the index stopped (leaf count, byte offset, the
Merkle tree's compact range there and its root) and carries a digest of the whole
content: a chain over the runs' stored bytes and a digest of the string tables.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from pytest_rtgov.core.canonical import canonical_json
from pytest_rtgov.core.delta_index import COLUMNS, DeltaIndex
from pytest_rtgov.core.merkle import MerkleAccumulator

__all__ = ["INDEX_FILE", "INDEX_SCHEMA", "ROW_DTYPE"]

INDEX_SCHEMA = "rtgov.index/2"
INDEX_FILE = "index.sqlite3"
# One observation row as stored: every column but ``run`` (a run's rows are one blob).
ROW_DTYPE = np.dtype(
    [(name, np.dtype(dtype).newbyteorder("<")) for name, dtype in COLUMNS.items() if name != "run"]
)
_TIMEOUT_S = 300.0  # waiting for another process's update of the index
_CHUNK_BYTES = 8 << 20  # rows decoded into the columns at a time
_TABLES = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (pos INTEGER PRIMARY KEY, info TEXT NOT NULL, rows BLOB NOT NULL);
CREATE TABLE keys (id INTEGER PRIMARY KEY, subject TEXT NOT NULL, metric TEXT NOT NULL);
CREATE TABLE texts (id INTEGER PRIMARY KEY, text TEXT NOT NULL);
CREATE TABLE gates (key INTEGER PRIMARY KEY, gate TEXT NOT NULL);
CREATE TABLE artifacts (id INTEGER PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE baselines (id INTEGER PRIMARY KEY, doc TEXT NOT NULL);
"""
_EMPTY_CHAIN = "0" * 64
_LEGACY_FILES = ("meta.json", "runs.jsonl", "tables.json", "lock")  # rtgov.index/1
_NO_INDEX = "no index yet"


class _Unusable(Exception):
    """The index file cannot be used as it is (the reason is the message)."""


def _link(previous: bytes, info: bytes, rows: bytes) -> bytes:
    """One link of the runs' digest chain, over a run's stored bytes."""
    link = hashlib.sha256(info)
    link.update(b"\n")
    link.update(rows)
    return hashlib.sha256(previous + link.digest()).digest()


def _chain(previous: str, info: bytes, rows: bytes) -> str:
    """The runs' digest chain (hex) after one more run."""
    return _link(bytes.fromhex(previous), info, rows).hex()


def _tables_digest(index: DeltaIndex) -> str:
    return hashlib.sha256(
        canonical_json(
            {
                "keys": index.keys,
                "texts": index.texts,
                "gate_of": {str(k): v for k, v in sorted(index.gate_of.items())},
                "artifacts": index.artifacts,
                "baselines": [b.to_dict() for b in index.baselines],
            }
        )
    ).hexdigest()


def _content_digest(meta: dict[str, Any]) -> str:
    return hashlib.sha256(
        canonical_json({k: v for k, v in meta.items() if k != "content_sha256"})
    ).hexdigest()


def _run_bytes(index: DeltaIndex, r: int) -> tuple[bytes, bytes]:
    """A run's stored form: its facts as canonical JSON, its rows as one blob."""
    info = index.runs[r]
    doc = info.to_dict()
    doc["leaf"] = index.run_leaf.get(info.run_id)
    start = index.run_start[r]
    end = index.run_start[r + 1] if r + 1 < len(index.runs) else index.rows
    rows = np.empty(end - start, dtype=ROW_DTYPE)
    for name in ROW_DTYPE.names or ():
        rows[name] = index.column(name)[start:end]
    return canonical_json(doc), rows.tobytes()


def _tree(meta: dict[str, Any]) -> MerkleAccumulator:
    tree = MerkleAccumulator()
    tree.restore(int(meta["leaves"]), [bytes.fromhex(h) for h in meta["compact"]])
    return tree


def _fresh_meta() -> dict[str, Any]:
    return {
        "schema": INDEX_SCHEMA,
        "leaves": 0,
        "offset": None,
        "compact": [],
        "root": MerkleAccumulator().root().hex(),
        "rows": 0,
        "runs": 0,
        "keys": 0,
        "texts": 0,
        "artifacts": 0,
        "baselines": 0,
        "runs_chain": _EMPTY_CHAIN,
    }
