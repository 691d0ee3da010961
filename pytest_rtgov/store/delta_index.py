"""The delta index on disk: one sqlite file, tied to the ledger state it was built from.

``<state>/index/index.sqlite3`` holds the runs (their facts as canonical JSON, their
observation rows as one packed little-endian blob each), the string tables, the
baseline events and one ``meta`` row. ``meta`` says where in the ledger the index
stopped (leaf count, byte offset, the Merkle tree's compact range there and its root)
and carries a digest of the whole content.

Before every use the index is checked:

- its content against the digest (edited values, flipped bytes, a truncated file or
  one that is no database are all caught here);
- its position against the ledger: the tree size and root must be the latest
  checkpoint's, when that checkpoint's signature verifies, or else the root recomputed
  from the whole log. An index behind the ledger reads only the frames it has not seen,
  on top of its compact range, and must then land on that root.

Anything that does not match is logged as a warning naming what mismatched, and the
index is rebuilt from the ledger. Nothing here is a source of truth: ``rtgov graph
rebuild`` recreates it, and sqlite's transactions and locks keep two processes that
update it at once from mixing their rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from pytest_rtgov.core.canonical import canonical_json
from pytest_rtgov.core.delta_index import (
    COLUMNS,
    VERDICTS,
    BaselineEvent,
    DeltaIndex,
    Observation,
    RunInfo,
    observations_of,
    run_info,
)
from pytest_rtgov.core.merkle import MerkleAccumulator
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.errors import RtgovError
from pytest_rtgov.logs import LOGGER_NAME, log_event
from pytest_rtgov.store.ledger import (
    FRAME_HEADER_BYTES,
    Frame,
    Ledger,
    LedgerCorruptError,
    LedgerError,
    scan_frames,
)

if TYPE_CHECKING:
    from pytest_rtgov.core.keys import Verifier


class Verifiers(Protocol):
    """What the index needs of :class:`~pytest_rtgov.store.keys.Trust`."""

    def verifiers(self) -> list[Verifier]: ...


class NoKeys:
    """Trust nobody: every checkpoint is ignored and the root recomputed from the log."""

    def verifiers(self) -> list[Verifier]:
        return []

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
_GROUP_OF = {"test": "tests", "fixture": "fixtures", "gate": "gates"}


class IndexLeafError(RtgovError):
    """A ledger leaf the index cannot read: not JSON, not an object, an unknown kind,
    or a field missing or of the wrong type. ``rtgov verify`` reports the same leaf."""

    def __init__(self, path: Path, frame: Frame, expected: str) -> None:
        self.path, self.leaf_index, self.expected = path, frame.index, expected
        super().__init__(
            f"{path}: ledger leaf {frame.index} (byte {frame.offset}): expected {expected}; "
            "the delta index cannot be built from this ledger (`rtgov verify` checks all of it)"
        )


class LedgerRootMismatchError(RtgovError):
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


_NO_INDEX = "no index yet"


def _warn(message: str, **fields: Any) -> None:
    """A warning whose text is a sentence (what the CLI prints) and whose event name
    is ``index.rebuilt`` in JSON lines."""
    logger = logging.getLogger(LOGGER_NAME)
    if logger.isEnabledFor(logging.WARNING):
        logger.warning(message, extra={"fields": {"event": "index.rebuilt", **fields}})


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


class DeltaIndexStore:
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
                group = self._take(index, group, frame)
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

    def _take(
        self, index: DeltaIndex, group: dict[str, Any] | None, frame: Frame
    ) -> dict[str, Any] | None:
        """Fold one leaf into the index; the run being read (None between runs)."""
        log = self.ledger.log_path
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

    # -- the sqlite file --------------------------------------------------------------------

    def _connect(self) -> tuple[sqlite3.Connection | None, str]:
        """A connection holding the write lock (``BEGIN IMMEDIATE``): one process at a
        time checks and updates the index. A file that is no database is removed (it is
        rebuilt); the connection is None when none can be had at all. The second value
        says what was wrong with the file, if anything."""
        why = ""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return None, f"the index folder cannot be created ({exc})"
        for attempt in (1, 2):
            conn = None
            try:
                conn = sqlite3.connect(self.path, timeout=_TIMEOUT_S, isolation_level=None)
                conn.execute("PRAGMA synchronous=OFF")  # derived data: rebuilt, not fsynced
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                return conn, why
            except sqlite3.Error as exc:
                if conn is not None:
                    conn.close()
                why = f"the index file is not a usable sqlite database ({exc})"
                if attempt == 2 or "locked" in str(exc):
                    return None, why
                self._remove()
        return None, why

    def _remove(self) -> None:
        """Remove the index file, its sqlite side files and the files of the format
        before sqlite (column files, ``meta.json``...)."""
        names = [f"{INDEX_FILE}{suffix}" for suffix in ("", "-journal", "-wal", "-shm")]
        names += [*_LEGACY_FILES, *(f"{name}.bin" for name in COLUMNS)]
        for name in names:
            try:
                os.unlink(self.directory / name)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log_event("index.not_removed", level=logging.WARNING, path=name, error=str(exc))

    def _read(self, conn: sqlite3.Connection) -> tuple[DeltaIndex, dict[str, Any]]:
        """The saved index and its meta, checked against the content digest."""
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" not in tables:
            raise _Unusable(_NO_INDEX if not tables else "the index file has no meta table")
        row = conn.execute("SELECT value FROM meta WHERE key = 'meta'").fetchone()
        try:
            meta = json.loads(row[0]) if row else None
        except (TypeError, ValueError):
            meta = None
        if not isinstance(meta, dict):
            raise _Unusable("the index's meta row is missing or not JSON")
        if meta.get("schema") != INDEX_SCHEMA:
            raise _Unusable(f"index schema {meta.get('schema')!r}, expected {INDEX_SCHEMA!r}")
        if meta.get("content_sha256") != _content_digest(meta):
            raise _Unusable("content digest mismatch in the index's meta row")
        try:
            index = self._decode(conn, meta)
        except _Unusable:
            raise
        except (KeyError, TypeError, ValueError, IndexError, OverflowError, AttributeError) as exc:
            raise _Unusable(f"the index content does not decode ({exc!r})") from None
        return index, meta

    def _decode(self, conn: sqlite3.Connection, meta: dict[str, Any]) -> DeltaIndex:
        index = DeltaIndex()
        chain = bytes.fromhex(_EMPTY_CHAIN)
        counts: list[int] = []
        size = ROW_DTYPE.itemsize
        # Rows go into the columns a few MiB at a time: no copy of them all in between.
        total = int(meta["rows"])
        columns = {name: np.empty(total, COLUMNS[name]) for name in ROW_DTYPE.names or ()}
        chunk: list[bytes] = []
        chunk_bytes = 0
        done = 0

        def flush() -> None:
            nonlocal chunk, chunk_bytes, done
            rows = np.frombuffer(b"".join(chunk), dtype=ROW_DTYPE)
            for name, column in columns.items():
                column[done : done + len(rows)] = rows[name]
            done += len(rows)
            chunk, chunk_bytes = [], 0

        start = 0
        for pos, info_text, blob in conn.execute("SELECT pos, info, rows FROM runs ORDER BY pos"):
            if pos != len(index.runs) or not isinstance(blob, bytes) or len(blob) % size:
                raise _Unusable(f"content digest mismatch: run row {pos} is not as saved")
            info_bytes = info_text.encode("utf-8")
            chain = _link(chain, info_bytes, blob)
            doc = json.loads(info_bytes)
            leaf = doc.pop("leaf", None)
            run = RunInfo.from_dict(doc)
            index.run_pos[run.run_id] = len(index.runs)
            index.runs.append(run)
            index.run_start.append(start)
            if leaf is not None:
                index.run_leaf[run.run_id] = int(leaf)
            counts.append(len(blob) // size)
            start += counts[-1]
            if start > total:
                raise _Unusable("content digest mismatch: more rows than the meta row counts")
            chunk.append(blob)
            chunk_bytes += len(blob)
            if chunk_bytes >= _CHUNK_BYTES:
                flush()
        flush()
        if chain.hex() != meta["runs_chain"] or len(index.runs) != meta["runs"] or done != total:
            raise _Unusable("content digest mismatch in the index's runs")
        keys = conn.execute("SELECT * FROM keys ORDER BY id")
        index.keys = [(str(subject), str(metric)) for _, subject, metric in keys]
        index.key_pos = {k: i for i, k in enumerate(index.keys)}
        index.texts = [str(t) for _, t in conn.execute("SELECT * FROM texts ORDER BY id")]
        index.text_pos = {t: i for i, t in enumerate(index.texts)}
        index.gate_of = {int(k): str(g) for k, g in conn.execute("SELECT * FROM gates")}
        index.artifacts = [json.loads(d) for _, d in conn.execute("SELECT * FROM artifacts")]
        index.baselines = [
            BaselineEvent(**json.loads(d))
            for _, d in conn.execute("SELECT * FROM baselines ORDER BY id")
        ]
        if _tables_digest(index) != meta["tables_sha256"]:
            raise _Unusable("content digest mismatch in the index's tables")
        columns["run"] = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
        index.set_columns(columns)
        # Ids must point into the tables even in an index whose digest was forged along
        # with its values: a query must never index out of range.
        if index.rows and (
            int(index.column("key").max()) >= len(index.keys)
            or int(index.column("key").min()) < 0
            or int(index.column("text").max()) >= len(index.texts)
            or int(index.column("text").min()) < -1
            or int(index.column("verdict").max()) >= len(VERDICTS)
            or int(index.column("verdict").min()) < 0
        ):
            raise _Unusable("the index's rows point outside its tables")
        if any(k >= len(index.keys) or k < 0 for k in index.gate_of) or any(
            a.get("run_id") not in index.run_pos for a in index.artifacts
        ):
            raise _Unusable("the index's tables point outside its runs")
        if int(meta["leaves"]) != _tree(meta).size or _tree(meta).root().hex() != meta["root"]:
            raise _Unusable("the index's compact range does not give its root")
        return index

    def _keep(self, conn: sqlite3.Connection, index: DeltaIndex, meta: dict[str, Any]) -> None:
        """Save an update; one that cannot be saved is still the right index."""
        try:
            self._save(conn, index, meta)
        except sqlite3.Error as exc:
            log_event("index.not_saved", level=logging.WARNING, path=str(self.path), error=str(exc))

    def _save(self, conn: sqlite3.Connection, index: DeltaIndex, meta: dict[str, Any]) -> None:
        """Append what ``meta`` (as loaded) does not count yet, and the new meta, in the
        transaction ``conn`` holds: a session's save costs its own rows."""
        chain = str(meta["runs_chain"])
        runs = []
        for r in range(int(meta["runs"]), len(index.runs)):
            info, rows = _run_bytes(index, r)
            chain = _chain(chain, info, rows)
            runs.append((r, info.decode("utf-8"), rows))
        conn.executemany("INSERT INTO runs VALUES (?, ?, ?)", runs)
        conn.executemany(
            "INSERT INTO keys VALUES (?, ?, ?)",
            [(i, *index.keys[i]) for i in range(int(meta["keys"]), len(index.keys))],
        )
        conn.executemany(
            "INSERT INTO texts VALUES (?, ?)",
            [(i, index.texts[i]) for i in range(int(meta["texts"]), len(index.texts))],
        )
        conn.execute("DELETE FROM gates")
        conn.executemany("INSERT INTO gates VALUES (?, ?)", sorted(index.gate_of.items()))
        conn.executemany(
            "INSERT INTO artifacts VALUES (?, ?)",
            [
                (i, canonical_json(index.artifacts[i]).decode("utf-8"))
                for i in range(int(meta["artifacts"]), len(index.artifacts))
            ],
        )
        conn.executemany(
            "INSERT INTO baselines VALUES (?, ?)",
            [
                (i, canonical_json(index.baselines[i].to_dict()).decode("utf-8"))
                for i in range(int(meta["baselines"]), len(index.baselines))
            ],
        )
        meta.update(
            schema=INDEX_SCHEMA,
            rows=index.rows,
            runs=len(index.runs),
            keys=len(index.keys),
            texts=len(index.texts),
            artifacts=len(index.artifacts),
            baselines=len(index.baselines),
            runs_chain=chain,
            tables_sha256=_tables_digest(index),
        )
        meta["content_sha256"] = _content_digest(meta)
        conn.execute(
            "INSERT OR REPLACE INTO meta VALUES ('meta', ?)", (canonical_json(meta).decode(),)
        )
        conn.execute("COMMIT")
        conn.execute("BEGIN IMMEDIATE")  # hold the lock until the connection closes

    def _replace(
        self, index: DeltaIndex, meta: dict[str, Any], conn: sqlite3.Connection | None
    ) -> None:
        """Write the whole index to a new file and move it into place. A failure to
        write leaves the index rebuilt in memory only: it is derived data."""
        tmp = self.path.with_name(f".{INDEX_FILE}.{os.getpid()}.tmp")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp.unlink(missing_ok=True)
            fresh = sqlite3.connect(tmp, isolation_level=None)
            try:
                fresh.execute("PRAGMA synchronous=OFF")
                fresh.execute("PRAGMA journal_mode=OFF")  # a new file: nothing to roll back
                fresh.execute("BEGIN")
                for statement in _TABLES.strip().split(";"):
                    if statement.strip():
                        fresh.execute(statement)
                self._save(fresh, index, meta)
                fresh.execute("COMMIT")
            finally:
                fresh.close()
            self._remove()  # a stale journal must not roll back the new file
            os.replace(tmp, self.path)
        except (OSError, sqlite3.Error) as exc:
            tmp.unlink(missing_ok=True)
            log_event("index.not_saved", level=logging.WARNING, path=str(self.path), error=str(exc))
