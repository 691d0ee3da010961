"""Run records on disk: ``<state dir>/runs/<run id>.json`` and a ``latest`` pointer.

Commands that act on a record (``baseline refresh --from``, ``merge``, ``report``,
``export``) use only records the ledger covers: :meth:`RunStore.read_covered` checks the
file's sha256 against the ``record_sha256`` of the run's ``verdict`` leaf. Commands that
only look (``runs``, ``show``, ``baseline diff``) label the others with
:meth:`RunStore.read_checked`'s standing.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.errors import RecordFormatError, RecordNotFoundError
from pytest_rtgov.store.files import (
    atomic_write,
    decode_json,
    read_bytes,
    read_json,
    read_json_and_bytes,
)

__all__ = [
    "COVERED",
    "EDITED",
    "NOT_IN_LEDGER",
    "RunStore",
    "UncoveredRecordError",
    "new_run_id",
    "standing_label",
]

# A record's standing against the ledger.
COVERED = "covered"  # a verdict leaf names the run and pins this file's digest
NOT_IN_LEDGER = "not-in-ledger"  # no verdict leaf names the run: forged, or orphaned
EDITED = "edited"  # a verdict leaf names the run, with another digest


_SHORT = {NOT_IN_LEDGER: "NOT IN LEDGER", EDITED: "EDITED"}


def standing_label(standing: str) -> str:
    """How ``rtgov runs`` flags a record ('' for a covered one)."""
    why = {NOT_IN_LEDGER: "no verdict leaf names it", EDITED: "differs from its verdict leaf"}
    return f"{_SHORT[standing]} ({why[standing]})" if standing in _SHORT else ""


class UncoveredRecordError(RecordFormatError):
    """A run record the ledger does not vouch for: no verdict leaf names it, or the file
    differs from the digest its verdict leaf holds. ``label``: NOT IN LEDGER or EDITED;
    ``why``: the sentence that says so."""

    def __init__(self, path: Path, standing: str, run_id: str, ledger: Path) -> None:
        super().__init__(str(path), "the ledger", f"a record covered by {ledger}")
        self.standing = standing
        self.label = _SHORT.get(standing, standing)
        if standing == EDITED:
            self.why = (
                f"was edited: its sha256 differs from the record_sha256 of run {run_id}'s "
                f"verdict leaf in {ledger}"
            )
        else:
            self.why = (
                f"no verdict leaf names run {run_id} in {ledger}: the file was forged, or "
                "written by a session that stopped before its ledger append"
            )
        hint = (
            "`rtgov verify` reports it"
            if standing == EDITED
            else "`rtgov ledger recover` moves such records to orphaned/"
        )
        self.args = (f"{path}: {self.why}; refusing to use it ({hint})",)


def record_file_digest(data: Any, path: Path) -> str:
    """``sha256:<hex>`` of a decoded record's canonical JSON, as its verdict leaf holds it."""
    from pytest_rtgov.core.canonical import canonical_json

    try:
        encoded = canonical_json(data)
    except ValueError as exc:
        raise RecordFormatError(str(path), "$", f"JSON without NaN or infinity ({exc})") from None
    return "sha256:" + hashlib.sha256(encoded).hexdigest()


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
        Python and costs ~100 us per test on a large run; ``rtgov show --format json``
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

    def resolve(self, ref: str, covered: Mapping[str, str] | None = None) -> str:
        """A run id from ``latest`` (the last run the ledger's verdict leaves name, else the
        ``latest`` pointer), a full id or a unique prefix of one. ``covered``: from
        :meth:`covered`, when the caller has read it already."""
        if ref == "latest":
            # The ledger decides which run is the latest; the pointer file is derived
            # (an older pointer put back must not change what "latest" means).
            if self.ledger_log.is_file():
                if covered is None:
                    covered = self.covered()
                for run_id in reversed(list(covered)):
                    if self.path_for(run_id).is_file():
                        return run_id
            pointed = self.latest_pointer()
            if pointed is not None and self.path_for(pointed).is_file():
                return pointed
            ids = self.run_ids()
            if not ids:
                raise RecordNotFoundError(f"no run records under {self.runs_dir}")
            return ids[-1]
        matches = [i for i in self.run_ids() if i.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            from pytest_rtgov.store.prune import pruned_message

            pruned = pruned_message(self.state_dir, ref) if ref else None
            raise RecordNotFoundError(
                pruned or f"no run record matches {ref!r} under {self.runs_dir}"
            )
        raise RecordNotFoundError(
            f"{ref!r} matches {len(matches)} runs under {self.runs_dir}: "
            f"{', '.join(matches[:5])}{', ...' if len(matches) > 5 else ''}; give more of the id"
        )

    def read(self, ref: str) -> RunRecord:
        """The record, whether or not the ledger covers it (see :meth:`read_checked`)."""
        run_id = self.resolve(ref)
        path = self.path_for(run_id)
        return RunRecord.from_dict(read_json(path), source=str(path))

    @property
    def ledger_log(self) -> Path:
        return self.state_dir / "ledger" / "log"

    def covered(self) -> dict[str, str]:
        """``{run_id: record_sha256}`` of the ledger's verdict leaves (one streaming pass).

        A frame that does not check is a RecordFormatError naming the log (exit 4 in
        the CLI; ``rtgov verify`` says more).
        """
        from pytest_rtgov.store.coverage import covered_runs
        from pytest_rtgov.store.ledger import LedgerError

        try:
            return covered_runs(self.state_dir)
        except LedgerError as exc:
            raise RecordFormatError(
                str(self.ledger_log),
                "a frame",
                f"a ledger whose frames check, to tell which run records it covers ({exc})",
            ) from None

    def standing(
        self, run_id: str, covered: Mapping[str, str], loaded: tuple[bytes, Any] | None = None
    ) -> str:
        """COVERED, EDITED or NOT_IN_LEDGER; ``loaded``: the file's bytes and JSON value,
        when read already.

        The plugin writes the canonical bytes and a newline, so those are hashed as
        they are; only a file in another layout is decoded and re-encoded (as ``rtgov
        verify`` does: an edit that keeps the content is no edit).
        """
        expected = covered.get(run_id)
        if expected is None:
            return NOT_IN_LEDGER
        path = self.path_for(run_id)
        raw = loaded[0] if loaded is not None else read_bytes(path)
        if "sha256:" + hashlib.sha256(raw.removesuffix(b"\n")).hexdigest() == expected:
            return COVERED
        data = loaded[1] if loaded is not None else decode_json(path, raw)
        return COVERED if record_file_digest(data, path) == expected else EDITED

    def read_checked(
        self, ref: str, covered: Mapping[str, str] | None = None
    ) -> tuple[RunRecord, str]:
        """The record and its standing against the ledger (``covered``: from
        :meth:`covered`, read here when not given)."""
        _, record, standing = self._read_checked(ref, covered)
        return record, standing

    def read_covered(self, ref: str) -> RunRecord:
        """The record, only if a verdict leaf names its run and pins this file's digest;
        else an UncoveredRecordError naming the file and why."""
        run_id, record, standing = self._read_checked(ref, None)
        if standing != COVERED:
            raise UncoveredRecordError(self.path_for(run_id), standing, run_id, self.ledger_log)
        return record

    def _read_checked(
        self, ref: str, covered: Mapping[str, str] | None
    ) -> tuple[str, RunRecord, str]:
        if covered is None:
            covered = self.covered()
        run_id = self.resolve(ref, covered)
        path = self.path_for(run_id)
        raw, data = read_json_and_bytes(path)
        record = RunRecord.from_dict(data, source=str(path))
        return run_id, record, self.standing(run_id, covered, (raw, data))
