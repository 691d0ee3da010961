"""Run records on disk: ``<state dir>/runs/<run id>.json`` and a ``latest`` pointer."""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path

from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.errors import RecordFormatError, RecordNotFoundError
from pytest_rtgov.store.files import atomic_write, read_json

__all__ = ["RunStore", "new_run_id"]

_RUN_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$")


def new_run_id(epoch_seconds: float | None = None, suffix: str | None = None) -> str:
    """``YYYYMMDDTHHMMSSZ-xxxxxx``: sorts by start time, unique within a second."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(epoch_seconds))
    return f"{stamp}-{suffix or secrets.token_hex(3)}"


class RunStore:
    """The run records of one state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.runs_dir = state_dir / "runs"

    def path_for(self, run_id: str) -> Path:
        return self.runs_dir / f"{run_id}.json"

    def write(self, record: RunRecord, *, encoded: bytes | None = None) -> Path:
        """Write the record as canonical JSON, then move ``latest`` to it (both atomic).

        Compact canonical bytes, not indented JSON: the indenting encoder is pure
        Python and costs ~100 us per test on a large run; ``rtgov show --json``
        pretty-prints for people. ``encoded``: ``record.canonical_json()``, when the
        caller already has it.
        """
        path = self.path_for(record.run_id)
        atomic_write(path, (encoded or record.canonical_json()) + b"\n")
        atomic_write(self.state_dir / "latest", (record.run_id + "\n").encode("ascii"))
        return path

    def latest_pointer(self) -> str | None:
        """The run id ``latest`` names, None without a ``latest`` file.

        Only a run id is followed: anything else (a path such as ``../../etc/passwd``, an
        absolute path, bytes that are not ASCII) is a RecordFormatError naming the file,
        so the pointer can never lead a reader out of ``runs/``.
        """
        pointer = self.state_dir / "latest"
        if not pointer.is_file():
            return None
        data = pointer.read_bytes()
        text = data.decode("ascii", errors="replace").strip()
        if not _RUN_ID.match(text) or not data.isascii():
            raise RecordFormatError(
                str(pointer),
                "line 1",
                f"a run id like 20260101T120000Z-0a1b2c, the name of a record in "
                f"{self.runs_dir} (got {text[:80]!r})",
            )
        return text

    def run_ids(self) -> list[str]:
        if not self.runs_dir.is_dir():
            return []
        return sorted(p.stem for p in self.runs_dir.glob("*.json") if _RUN_ID.match(p.stem))

    def resolve(self, ref: str) -> str:
        """A run id from ``latest``, a full id or a unique prefix of one."""
        if ref == "latest":
            run_id = self.latest_pointer()
            if run_id is not None and self.path_for(run_id).is_file():
                return run_id
            ids = self.run_ids()
            if not ids:
                raise RecordNotFoundError(f"no run records under {self.runs_dir}")
            return ids[-1]
        matches = [i for i in self.run_ids() if i.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise RecordNotFoundError(f"no run record matches {ref!r} under {self.runs_dir}")
        raise RecordNotFoundError(
            f"{ref!r} matches {len(matches)} runs under {self.runs_dir}: "
            f"{', '.join(matches[:5])}{', ...' if len(matches) > 5 else ''}; give more of the id"
        )

    def read(self, ref: str) -> RunRecord:
        run_id = self.resolve(ref)
        path = self.path_for(run_id)
        return RunRecord.from_dict(read_json(path), source=str(path))
