"""The delta index's sqlite file: connect under its write lock, read and check it
against its content digest, save a session's rows, or write it anew and move it in."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from pytest_rtgov.core.canonical import canonical_json
from pytest_rtgov.core.delta_index import COLUMNS, VERDICTS, BaselineEvent, DeltaIndex, RunInfo
from pytest_rtgov.logs import log_event
from pytest_rtgov.store.delta_index.codec import (
    _CHUNK_BYTES,
    _EMPTY_CHAIN,
    _LEGACY_FILES,
    _NO_INDEX,
    _TABLES,
    _TIMEOUT_S,
    INDEX_FILE,
    INDEX_SCHEMA,
    ROW_DTYPE,
    _chain,
    _content_digest,
    _link,
    _run_bytes,
    _tables_digest,
    _tree,
    _Unusable,
)

__all__ = ["IndexFile"]


class IndexFile:
    """The sqlite file of an index (a base of
    :class:`~pytest_rtgov.store.delta_index.upkeep.DeltaIndexStore`)."""

    directory: Path
    path: Path

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
