"""The delta index on disk: one sqlite file, tied to the ledger state it was built from.

``<state>/index/index.sqlite3`` holds the runs (their facts as canonical JSON, their
observation rows as one packed little-endian blob each), the string tables, the
baseline events and one ``meta`` row. ``meta`` says where in the ledger the index
stopped (leaf count, byte offset, the Merkle tree's compact range there and its root)
and carries a digest of the whole content.

The index is checked against its digest and the ledger before every use, caught up or
rebuilt when either disagrees. Nothing here is a source of truth: ``rtgov graph
rebuild`` recreates it, and sqlite's transactions and locks keep two processes that
update it at once from mixing their rows.

A package; this module only re-exports the public names of its parts, one role each:

- :mod:`.codec`: the stored form: sqlite schema, row layout, content digests;
- :mod:`.sqlite_file`: connecting, reading and checking, saving and replacing the file;
- :mod:`.leaves`: folding ledger leaves into the index;
- :mod:`.upkeep`: :class:`DeltaIndexStore`, the check against the ledger, catching up
  and rebuilding.
"""

from __future__ import annotations

from pytest_rtgov.store.delta_index.codec import INDEX_FILE, INDEX_SCHEMA, ROW_DTYPE
from pytest_rtgov.store.delta_index.leaves import IndexLeafError
from pytest_rtgov.store.delta_index.upkeep import (
    Appended,
    DeltaIndexStore,
    LedgerRootMismatchError,
    LedgerState,
    NoKeys,
)

__all__ = [
    "INDEX_FILE",
    "INDEX_SCHEMA",
    "ROW_DTYPE",
    "Appended",
    "DeltaIndexStore",
    "IndexLeafError",
    "LedgerRootMismatchError",
    "LedgerState",
    "NoKeys",
]
