"""The delta index on disk, kept in step with the ledger.

``<state>/index/`` holds the index's string tables as JSON and its columns as raw
little-endian arrays; ``meta.json`` (written last) says how many rows and runs are
valid and where in the ledger the index stopped. An update reads only the frames
after that point, after checking that the last frame it consumed is still there with
the same leaf hash; a ledger that changed underneath, or files that disagree with
``meta.json``, make the index rebuild itself from the ledger. Nothing here is a
source of truth: ``rtgov graph rebuild`` can always recreate it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pytest_rtgov.core.canonical import canonical_json
from pytest_rtgov.core.history import (
    COLUMNS,
    BaselineEvent,
    DeltaIndex,
    Observation,
    RunInfo,
    observations_of,
    run_info,
)
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.store.files import atomic_write
from pytest_rtgov.store.ledger import FRAME_HEADER_BYTES, Ledger, read_frames

__all__ = ["INDEX_SCHEMA", "Appended", "HistoryStore"]

INDEX_SCHEMA = "rtgov.index/1"


def _write(path: Path, data: bytes) -> None:
    atomic_write(path, data, durable=False)  # derived data: rebuilt, not fsynced


@dataclass(frozen=True)
class Appended:
    """A session this process has just appended: its record, the leaves
    :func:`~pytest_rtgov.core.ledger_records.run_leaves` made of it (run header first,
    verdict last, nothing else), and the index of the first."""

    record: RunRecord
    leaves: Sequence[bytes]
    first_index: int
    observations: list[Observation] | None = None


class HistoryStore:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.directory = state_dir / "index"
        self.ledger = Ledger(state_dir / "ledger")

    # -- persistence ---------------------------------------------------------------

    def _load(self) -> tuple[DeltaIndex, dict[str, Any]] | None:
        meta_path = self.directory / "meta.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("schema") != INDEX_SCHEMA:
                return None
            index = DeltaIndex()
            runs = [
                json.loads(line)
                for line in (self.directory / "runs.jsonl").read_text().splitlines()
            ]
            runs = runs[: meta["runs"]]
            for doc in runs:
                leaf = doc.pop("leaf", None)
                start = doc.pop("start")
                info = RunInfo.from_dict(doc)
                index.run_pos[info.run_id] = len(index.runs)
                index.runs.append(info)
                index.run_start.append(start)
                if leaf is not None:
                    index.run_leaf[info.run_id] = leaf
            tables = json.loads((self.directory / "tables.json").read_text(encoding="utf-8"))
            index.keys = [tuple(k) for k in tables["keys"]]  # type: ignore[misc]
            index.key_pos = {k: i for i, k in enumerate(index.keys)}
            index.texts = tables["texts"]
            index.text_pos = {t: i for i, t in enumerate(index.texts)}
            index.gate_of = {int(k): v for k, v in tables["gate_of"].items()}
            index.artifacts = tables["artifacts"]
            index.baselines = [BaselineEvent(**b) for b in tables["baselines"]]
            columns = {}
            for name, dtype in COLUMNS.items():
                data = np.fromfile(
                    self.directory / f"{name}.bin", dtype=np.dtype(dtype).newbyteorder("<")
                )
                if len(data) < meta["rows"]:
                    return None
                columns[name] = data[: meta["rows"]]
            index.set_columns(columns)
            if len(index.runs) != meta["runs"]:
                return None
            return index, meta
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, index: DeltaIndex, meta: dict[str, Any]) -> None:
        """Write the index; ``meta.json`` last, so readers never see rows it does not
        count. Columns the loaded ``meta`` already counts on disk are only appended to:
        a session's save costs its own rows, not the whole history's. No fsync: the
        index is derived, and a damaged one is rebuilt from the ledger."""
        self.directory.mkdir(parents=True, exist_ok=True)
        lines = []
        for r, info in enumerate(index.runs):
            doc = info.to_dict()
            doc["start"] = index.run_start[r]
            doc["leaf"] = index.run_leaf.get(info.run_id)
            lines.append(canonical_json(doc))
        _write(self.directory / "runs.jsonl", b"\n".join(lines) + b"\n")
        tables = {
            "keys": index.keys,  # tuples encode as JSON arrays
            "texts": index.texts,
            "gate_of": {str(k): v for k, v in sorted(index.gate_of.items())},
            "artifacts": index.artifacts,
            "baselines": [b.to_dict() for b in index.baselines],
        }
        _write(self.directory / "tables.json", canonical_json(tables))
        on_disk = meta.get("rows")
        for name, dtype in COLUMNS.items():
            column = index.column(name).astype(np.dtype(dtype).newbyteorder("<"), copy=False)
            path = self.directory / f"{name}.bin"
            if isinstance(on_disk, int) and 0 < on_disk <= len(column) and path.is_file():
                with open(path, "r+b") as fh:
                    fh.truncate(on_disk * column.itemsize)  # drop rows no meta counted
                    fh.seek(0, os.SEEK_END)
                    fh.write(column[on_disk:].tobytes())
            else:
                _write(path, column.tobytes())
        meta = {**meta, "schema": INDEX_SCHEMA, "rows": index.rows, "runs": len(index.runs)}
        _write(self.directory / "meta.json", canonical_json(meta))

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One process at a time updates the index (two sessions may end together)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "lock", "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    # -- keeping up with the ledger ----------------------------------------------

    def load(self, *, update: bool = True, appended: Appended | None = None) -> DeltaIndex:
        """The index, brought up to date with the ledger (and saved) when ``update``.

        ``appended`` is the session this process has just appended: when the index
        stood exactly where that session began, its record is added from memory
        instead of being read back from the ledger (the same rows: the leaves were
        made from this record). Anything else is read from the ledger as usual.
        """
        if not update:
            loaded = self._load()
            if loaded is not None:
                return loaded[0]
            with self._locked():
                return self._rebuild()
        with self._locked():
            return self._update(appended)

    def _update(self, appended: Appended | None) -> DeltaIndex:
        loaded = self._load()
        if loaded is None:
            return self._rebuild()
        index, meta = loaded
        if appended is not None and self._add_appended(index, meta, appended):
            self.save(index, meta)
            return index
        if not self.ledger.exists():
            # No ledger to follow (moved away, or the index was copied on its own): keep
            # what the index holds rather than "rebuild" it from nothing.
            return index
        if not self._still_there(meta):
            return self._rebuild()
        if self._consume(index, meta):
            self.save(index, meta)
        return index

    def _add_appended(self, index: DeltaIndex, meta: dict[str, Any], appended: Appended) -> bool:
        leaves = appended.leaves
        if (
            not leaves
            or not meta.get("offset")
            or meta.get("leaves") != appended.first_index
            or appended.record.run_id in index.run_pos
            or not self._still_there(meta)
        ):
            return False
        # The frames follow each other from where the index stopped: header + payload.
        last_offset = int(meta["offset"]) + sum(
            FRAME_HEADER_BYTES + len(leaf) for leaf in leaves[:-1]
        )
        last = leaves[-1]
        verdict_index = appended.first_index + len(leaves) - 1
        index.add_run(
            run_info(appended.record),
            appended.observations
            if appended.observations is not None
            else observations_of(appended.record),
            leaf_index=verdict_index,
        )
        meta.update(
            offset=last_offset + FRAME_HEADER_BYTES + len(last),
            leaves=verdict_index + 1,
            last_offset=last_offset,
            last_leaf_hash=hashlib.sha256(b"\x00" + last).hexdigest(),
        )
        return True

    def rebuild(self) -> DeltaIndex:
        """Recreate the index from the ledger alone."""
        with self._locked():
            return self._rebuild()

    def _rebuild(self) -> DeltaIndex:
        index = DeltaIndex()
        meta: dict[str, Any] = {"offset": None, "leaves": 0, "last_leaf_hash": ""}
        self._consume(index, meta)
        self.save(index, meta)
        return index

    def _still_there(self, meta: dict[str, Any]) -> bool:
        """Is the last frame the index consumed still in the ledger, unchanged?"""
        if not meta.get("leaves"):
            return True
        if not self.ledger.exists():
            return False
        try:
            frame = next(
                read_frames(self.ledger.log_path, start=(meta["last_offset"], meta["leaves"] - 1))
            )
        except Exception:  # a damaged or shortened ledger: rebuild
            return False
        return frame.leaf_hash.hex() == meta["last_leaf_hash"]

    def _consume(self, index: DeltaIndex, meta: dict[str, Any]) -> bool:
        """Add every finished run and baseline event after ``meta``'s position."""
        if not self.ledger.exists():
            return False
        start = (meta["offset"], meta["leaves"]) if meta.get("offset") else None
        changed = False
        group: dict[str, Any] | None = None
        for frame in self.ledger.frames(start=start):
            # Plain json.loads: the frame's leaf hash was checked on reading, and the
            # canonical-bytes check belongs to `rtgov verify`, not to a derived index.
            leaf = json.loads(frame.payload)
            kind = leaf.pop("kind")
            if kind == "run":
                group = {"header": leaf, "tests": [], "fixtures": [], "gates": []}
            elif group is not None and kind in ("test", "fixture", "gate"):
                leaf.pop("run_id", None)
                group[{"test": "tests", "fixture": "fixtures", "gate": "gates"}[kind]].append(leaf)
            elif kind == "verdict" and group is not None:
                record = RunRecord.from_dict(
                    {
                        **group["header"],
                        "tests": group["tests"],
                        "fixtures": group["fixtures"],
                        "gate_results": group["gates"],
                        "verdict": leaf["verdict"],
                        "exit_status": leaf["exit_status"],
                    },
                    source=f"{self.ledger.log_path} leaf {frame.index}",
                )
                if record.run_id not in index.run_pos:
                    index.add_record(record, leaf_index=frame.index)
                group = None
            elif kind == "baseline_refresh":
                index.add_baseline(
                    BaselineEvent(
                        sequence=len(index.baselines) + 1,
                        leaf_index=frame.index,
                        at=str(leaf.get("at", "")),
                        who=str(leaf.get("who", "")),
                        reason=str(leaf.get("reason", "")),
                        run_id=str(leaf.get("run_id", "")),
                        fingerprint=str(leaf.get("fingerprint", "")),
                        changes=len(leaf.get("changes", [])),
                        seal_sha256=str(leaf.get("seal_sha256", "")),
                    )
                )
            if group is None:  # a consistent point: nothing half-read
                meta.update(
                    offset=frame.end,
                    leaves=frame.index + 1,
                    last_offset=frame.offset,
                    last_leaf_hash=frame.leaf_hash.hex(),
                )
                changed = True
        return changed
