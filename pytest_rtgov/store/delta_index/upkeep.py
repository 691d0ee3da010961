"""Upkeep of the delta index: check it against the ledger before every use, catch up
from where it stopped (or from a session just appended, in memory), else rebuild it.

Before every use the index is checked:

- its content against the digest (edited values, flipped bytes, a truncated file or
  one that is no database are all caught here);
- its position against the ledger: the tree size and root must be the latest
  checkpoint's, when that checkpoint's signature verifies, or else the root recomputed
  from the whole log. An index behind the ledger reads only the frames it has not seen,
  on top of its compact range, and must then land on that root.

Anything that does not match is logged as a warning naming what mismatched, and the
index is rebuilt from the ledger.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from pytest_rtgov.core.delta_index import DeltaIndex, Observation, observations_of, run_info
from pytest_rtgov.core.merkle import MerkleAccumulator
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.errors import IntegrityError, RtgovError
from pytest_rtgov.logs import LOGGER_NAME, log_event
from pytest_rtgov.store.delta_index.codec import (
    _NO_INDEX,
    INDEX_FILE,
    _fresh_meta,
    _tree,
    _Unusable,
)
from pytest_rtgov.store.delta_index.leaves import take_leaf
from pytest_rtgov.store.delta_index.sqlite_file import IndexFile
from pytest_rtgov.store.ledger import (
    FRAME_HEADER_BYTES,
    Ledger,
    LedgerCorruptError,
    LedgerError,
    scan_frames,
)

if TYPE_CHECKING:
    from pytest_rtgov.core.keys import Verifier


__all__ = ["Appended", "DeltaIndexStore", "LedgerRootMismatchError", "LedgerState", "NoKeys"]


class Verifiers(Protocol):
    """What the index needs of :class:`~pytest_rtgov.store.keys.Trust`."""

    def verifiers(self) -> list[Verifier]: ...


class NoKeys:
    """Trust nobody: every checkpoint is ignored and the root recomputed from the log."""

    def verifiers(self) -> list[Verifier]:
        return []


class LedgerRootMismatchError(IntegrityError):
    """The log's leaves do not hash to the root of its signed checkpoint."""


class LedgerState(NamedTuple):
    """The ledger state an index must match: tree size, root, and where they come from."""

    size: int
    root: bytes
    source: str


@dataclass(frozen=True)
class Appended:
    """A session this process has just appended: its record, the leaves
    :func:`~pytest_rtgov.core.ledger_records.run_leaves` made of it (run header first,
    verdict last, nothing else), and the index of the first."""

    record: RunRecord
    leaves: Sequence[bytes]
    first_index: int
    observations: list[Observation] | None = None


def _warn(message: str, **fields: Any) -> None:
    """A warning whose text is a sentence (what the CLI prints) and whose event name
    is ``index.rebuilt`` in JSON lines."""
    logger = logging.getLogger(LOGGER_NAME)
    if logger.isEnabledFor(logging.WARNING):
        logger.warning(message, extra={"fields": {"event": "index.rebuilt", **fields}})


class DeltaIndexStore(IndexFile):
    """The index of ``state_dir``'s ledger. ``trust`` decides which checkpoint
    signatures count (default: this machine's local key)."""

    def __init__(self, state_dir: Path, *, trust: Verifiers | None = None) -> None:
        self.state_dir = state_dir
        self.directory = state_dir / "index"
        self.path = self.directory / INDEX_FILE
        self.ledger = Ledger(state_dir / "ledger")
        self._trust = trust
        self._state = LedgerState(0, b"", "")  # the state the current load follows

    # -- the ledger state the index must match ----------------------------------------

    def ledger_state(self) -> LedgerState:
        """Size and root of the latest checkpoint, when its signature verifies; else
        of the whole log, recomputed (an unsigned tail, an unknown key, no checkpoint).

        Raises :class:`~pytest_rtgov.store.ledger.LedgerCorruptError` for a frame that
        does not check.
        """
        try:
            latest = self.ledger.latest_checkpoint()
        except LedgerError:
            latest = None
        if latest is not None:
            path, body = latest
            if self._verifies(path):
                return LedgerState(body.size, body.root_hash, f"signed checkpoint {path}")
        log_event(
            "index.root_recomputed",
            level=logging.INFO,
            why="no checkpoint" if latest is None else f"{latest[0]} does not verify",
        )
        tree = MerkleAccumulator()
        for _ in scan_frames(self.ledger.log_path, select=(), tree=tree):
            pass
        return LedgerState(tree.size, tree.root(), f"{self.ledger.log_path} (recomputed)")

    def _verifies(self, path: Path) -> bool:
        from pytest_rtgov.core.notes import open_note

        if self._trust is None:
            from pytest_rtgov.store.keys import load_trust

            try:
                self._trust = load_trust(keyring=None, state_dir=self.state_dir, required=False)
            except RtgovError:
                return False
        try:
            open_note(path.read_bytes(), self._trust.verifiers())
        except (RtgovError, OSError):
            return False
        return True

    # -- loading ------------------------------------------------------------------------

    def load(self, *, update: bool = True, appended: Appended | None = None) -> DeltaIndex:
        """The index, checked against its content digest and the ledger, brought up
        to the ledger's state and saved.

        ``update`` is accepted for older callers and ignored: every load checks, and
        catches up or rebuilds when it must (there is one path to trust).

        ``appended`` is the session this process has just appended: when the index
        stood exactly where that session began, its record is added from memory
        instead of being read back from the ledger (the same rows: the leaves were
        made from this record, and their hashes must land on the ledger's root).

        With no ledger the index vouches for nothing: an empty index is returned and
        the saved one is left as it is.
        """
        del update  # every load checks, catches up and saves: one path to trust
        if not self.ledger.exists():
            return DeltaIndex()
        state = self.ledger_state()
        conn, why = self._connect()
        try:
            if conn is not None:
                try:
                    index, meta = self._read(conn)
                except _Unusable as exc:
                    why = why or str(exc)
                except sqlite3.Error as exc:
                    why = f"the index file is damaged ({exc})"
                except Exception as exc:  # a derived cache: anything unreadable is rebuilt
                    why = f"the index does not read ({exc!r})"
                else:
                    kept = self._follow(conn, index, meta, state, appended)
                    if isinstance(kept, DeltaIndex):
                        return kept
                    why = kept
            if why != _NO_INDEX:
                _warn(f"the delta index {self.path} is rebuilt from the ledger: {why}", why=why)
            return self._rebuild(state, conn)
        finally:
            if conn is not None:
                conn.close()

    def rebuild(self) -> DeltaIndex:
        """Recreate the index from the ledger alone."""
        if not self.ledger.exists():
            return DeltaIndex()
        state = self.ledger_state()
        conn, _ = self._connect()
        try:
            return self._rebuild(state, conn)
        finally:
            if conn is not None:
                conn.close()

    def _follow(
        self,
        conn: sqlite3.Connection,
        index: DeltaIndex,
        meta: dict[str, Any],
        state: LedgerState,
        appended: Appended | None,
    ) -> DeltaIndex | str:
        """The index, brought to ``state``; or why it cannot be (then it is rebuilt)."""
        size = int(meta["leaves"])
        if size > state.size:
            return f"the index stands at ledger size {size}, beyond {state.source} ({state.size})"
        if size == state.size:
            if meta["root"] == state.root.hex():
                return index
            return (
                f"ledger root mismatch at size {size}: the index was built at root "
                f"{meta['root'][:16]}…, {state.source} has {state.root.hex()[:16]}…"
            )
        self._state = state
        if appended is not None and self._add_appended(index, meta, appended):
            self._keep(conn, index, meta)
            return index
        try:
            caught_up = self._consume(index, meta, state)
        except (LedgerCorruptError, ValueError) as exc:
            return f"the ledger cannot be read on from where the index stopped ({exc})"
        if not caught_up:
            return (
                f"ledger root mismatch: the index's leaves and the frames after them do not "
                f"hash to the root of {state.source}"
            )
        self._keep(conn, index, meta)
        return index

    def _add_appended(self, index: DeltaIndex, meta: dict[str, Any], appended: Appended) -> bool:
        leaves = appended.leaves
        state = self._state
        if (
            not leaves
            or not meta.get("offset")
            or meta.get("leaves") != appended.first_index
            or appended.first_index + len(leaves) != state.size
            or appended.record.run_id in index.run_pos
        ):
            return False
        tree = _tree(meta)
        tree.extend(leaves)
        if tree.root() != state.root:
            return False
        index.add_run(
            run_info(appended.record),
            appended.observations
            if appended.observations is not None
            else observations_of(appended.record),
            leaf_index=state.size - 1,
        )
        # The frames follow each other from where the index stopped: header + payload.
        meta.update(
            offset=int(meta["offset"]) + sum(FRAME_HEADER_BYTES + len(leaf) for leaf in leaves),
            leaves=state.size,
            compact=[h.hex() for h in tree.compact_range()],
            root=state.root.hex(),
        )
        return True

    def _rebuild(self, state: LedgerState, conn: sqlite3.Connection | None) -> DeltaIndex:
        index = DeltaIndex()
        meta = _fresh_meta()
        if not self._consume(index, meta, state):
            raise LedgerRootMismatchError(
                f"{self.ledger.log_path}: its first {state.size} leaves do not hash to the root "
                f"of {state.source}: a leaf was changed, removed or added "
                "(`rtgov verify` says which)"
            )
        self._replace(index, meta, conn)
        return index

    # -- reading the ledger ---------------------------------------------------------------

    def _consume(self, index: DeltaIndex, meta: dict[str, Any], state: LedgerState) -> bool:
        """Add every finished run and baseline event after ``meta``'s position, up to
        ``state.size``; True when the leaves read land on ``state.root``. ``meta`` then
        stands at the last consistent point (nothing half-read)."""
        tree = _tree(meta)
        size = tree.size
        if size < state.size:
            start = (int(meta["offset"]), size) if meta.get("offset") else None
            group: dict[str, Any] | None = None
            log = self.ledger.log_path
            frames = scan_frames(log, start=start, tree=tree)
            for frame in frames:
                group = take_leaf(log, index, group, frame)
                if group is None:  # a consistent point: nothing half-read
                    meta.update(
                        offset=frame.end,
                        leaves=frame.index + 1,
                        compact=[h.hex() for h in tree.compact_range()],
                        root=tree.root().hex(),
                    )
                if frame.index + 1 >= state.size:
                    frames.close()
                    break
        return tree.size == state.size and tree.root() == state.root
