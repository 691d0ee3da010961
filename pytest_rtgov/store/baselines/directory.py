"""A baseline directory: its files as reviewable canonical JSON, the views gates read,
refreshes and the audit log of refreshes.

Layout of a baseline directory (``fixtures/baseline/`` in this repository)::

    metrics.json                 recorded metrics (accuracy, loss, digests): any machine
    env-<fingerprint>.json       measurements (time, memory) for one environment fingerprint
    refreshes.jsonl              one line per refresh: who, when, why, run, old and new values

JSON files are sorted and indented (one value per line) so that a baseline change
reads well in review.

A machine whose fingerprint the committed baseline lacks keeps its own measurements in
the state directory (``.rtgov/baseline-local/env-<fingerprint>.json``, sealed by the
session's key): the committed files change only when someone asks
(``--rtgov-update-baseline``, ``--rtgov-bootstrap-baseline``, ``rtgov baseline``).
"""

from __future__ import annotations

import getpass
import json
import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_rtgov.core.canonical import canonical_json, pretty_json
from pytest_rtgov.core.fingerprint import describe_difference, fingerprint, fingerprint_fields
from pytest_rtgov.core.metrics import BUILTIN_METRICS, CALIBRATED_SUFFIX
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.core.subjects import BaselineView, Subject, subjects_of
from pytest_rtgov.errors import RecordFormatError
from pytest_rtgov.store.files import atomic_write, read_json

__all__ = ["SCHEMA", "BaselineStore", "RefreshEntry", "who_am_i"]

SCHEMA = "rtgov.baseline/1"


def who_am_i(cwd: Path | None = None) -> str:
    """``git config user.name <user.email>``, else the login name, for the audit log."""
    try:
        out = subprocess.run(
            ["git", "config", "--get-regexp", r"^user\.(name|email)$"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout
        values = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
        if values.get("user.name"):
            email = values.get("user.email")
            return f"{values['user.name']} <{email}>" if email else values["user.name"]
    except (OSError, subprocess.SubprocessError):
        pass
    for var in ("GITHUB_ACTOR", "GITLAB_USER_LOGIN", "USER"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


@dataclass(frozen=True, slots=True)
class RefreshEntry:
    at: str
    who: str
    reason: str
    run_id: str
    fingerprint: str
    changes: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "who": self.who,
            "reason": self.reason,
            "run_id": self.run_id,
            "fingerprint": self.fingerprint,
            "changes": self.changes,
        }


def _measurements(subject: Subject) -> dict[str, list[float]]:
    out = {}
    for metric in BUILTIN_METRICS:
        values = subject.measurement(metric)
        if values:
            out[metric] = values
    return out


def _recorded(subject: Subject) -> dict[str, list[float | str]]:
    """Recorded metrics, plus calibrated times: both are shared by every machine."""
    out: dict[str, list[float | str]] = {}
    for name, value, _ in subject.metrics:
        out.setdefault(name, []).append(value)
    shared = {k: sorted(set(v), key=str) for k, v in out.items()}
    for metric in ("wall_time", "cpu_time"):
        calibrated = subject.calibrated(metric)
        if calibrated:
            shared[metric + CALIBRATED_SUFFIX] = [*calibrated]
    return shared


class BaselineStore:
    def __init__(self, directory: Path, local_dir: Path | None = None) -> None:
        self.directory = directory
        # This machine's measurements when the committed baseline lacks its fingerprint.
        self.local_dir = local_dir

    @property
    def local(self) -> BaselineStore | None:
        return BaselineStore(self.local_dir) if self.local_dir is not None else None

    @property
    def metrics_path(self) -> Path:
        return self.directory / "metrics.json"

    def env_path(self, fp: str) -> Path:
        return self.directory / f"env-{fp}.json"

    @property
    def log_path(self) -> Path:
        return self.directory / "refreshes.jsonl"

    def _read(self, path: Path) -> dict[str, Any] | None:
        if not path.is_file():
            return None
        data = read_json(path)
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise RecordFormatError(str(path), "$.schema", repr(SCHEMA))
        if not isinstance(data.get("subjects"), dict):
            raise RecordFormatError(str(path), "$.subjects", "an object of subjects")
        return data

    def exists(self) -> bool:
        return self.metrics_path.is_file() or any(self.directory.glob("env-*.json"))

    def view(self, environment: Mapping[str, str], *, local: bool = True) -> BaselineView:
        """The baseline for a run on ``environment``; measurements only for its fingerprint,
        from the committed files, else (``local``) from this machine's local baseline."""
        fp = fingerprint(environment)
        metrics = (self._read(self.metrics_path) or {}).get("subjects", {})
        env = self._read(self.env_path(fp))
        note = ""
        if env is None and local and self.local is not None:
            env = self.local._read(self.local.env_path(fp))
            if env is not None:
                note = (
                    f"measurements compared with this machine's local baseline "
                    f"{self.local.env_path(fp)} (not committed)"
                )
        if env is None:
            others = sorted(self.directory.glob("env-*.json"))
            if others:
                other = self._read(others[0]) or {}
                note = (
                    f"no measurement baseline for fingerprint {fp}; {others[0].name} is not "
                    f"comparable ({describe_difference(other.get('environment', {}), environment)})"
                )
            else:
                note = f"no measurement baseline for fingerprint {fp} yet"
        return BaselineView(
            measurements=(env or {}).get("subjects", {}),
            metrics=metrics,
            fingerprint_note=note,
        )

    def view_sources(
        self, environment: Mapping[str, str], *, local: bool = True
    ) -> tuple[list[Path], list[Path]]:
        """The files :meth:`view` reads for ``environment`` (kept by a gated session for
        ``rtgov audit``): the committed ones, and this machine's local one. Another
        fingerprint's file, whose environment the note of a ``new`` result names, is
        among the committed ones when the view reads it."""
        fp = fingerprint(environment)
        committed = [p for p in (self.metrics_path, self.env_path(fp)) if p.is_file()]
        if self.env_path(fp).is_file():
            return committed, []
        own = self.local.env_path(fp) if local and self.local is not None else None
        if own is not None and own.is_file():
            return committed, [own]
        others = sorted(self.directory.glob("env-*.json"))
        return committed + others[:1], []

    def has_fingerprint(self, environment: Mapping[str, str]) -> bool:
        return self.env_path(fingerprint(environment)).is_file()

    def update(
        self,
        record: RunRecord,
        *,
        who: str,
        reason: str,
        only: Iterable[str] | None = None,
        only_new: bool = False,
        drop_stale: bool = False,
        measurements_only: bool = False,
    ) -> RefreshEntry:
        """Take this run's values for its passed subjects (or ``only`` those ids).

        ``only_new`` adds values the baseline lacks and changes none (the first run on
        a new fingerprint must not quietly move the shared ML metrics). Subjects in
        the baseline but absent from the run stay unless ``drop_stale``.
        ``measurements_only`` writes no ``metrics.json`` (a machine's local baseline).
        Returns the audit entry, also appended to ``refreshes.jsonl``.
        """
        fp = fingerprint(record.environment)
        wanted = set(only) if only is not None else None
        subjects = [s for s in subjects_of(record) if s.ran and (wanted is None or s.id in wanted)]
        metrics_doc = self._read(self.metrics_path) or {"schema": SCHEMA, "subjects": {}}
        env_doc = self._read(self.env_path(fp)) or {
            "schema": SCHEMA,
            "fingerprint": fp,
            "environment": fingerprint_fields(record.environment),
            "subjects": {},
        }
        changes: list[dict[str, Any]] = []
        docs: list[tuple[dict[str, Any], Any, str]] = [
            (metrics_doc, _recorded, "metrics"),
            (env_doc, _measurements, "measurements"),
        ]
        for doc, extract, kind in docs[1:] if measurements_only else docs:
            store = doc["subjects"]
            current_ids = {s.id for s in subjects_of(record)}
            for subject in subjects:
                new = extract(subject)
                if not new:
                    continue
                old = store.get(subject.id, {})
                if only_new:
                    new = {k: v for k, v in new.items() if k not in old}
                for metric, values in sorted(new.items()):
                    if old.get(metric) != values:
                        changes.append(
                            {
                                "kind": kind,
                                "subject": subject.id,
                                "metric": metric,
                                "old": _summary(old.get(metric)),
                                "new": _summary(values),
                            }
                        )
                store[subject.id] = {**old, **new}
            if drop_stale:
                for stale in sorted(set(store) - current_ids):
                    changes.append({"kind": kind, "subject": stale, "dropped": True})
                    del store[stale]
            doc["run_id"] = record.run_id
        entry = RefreshEntry(
            at=record.ended_at,
            who=who,
            reason=reason,
            run_id=record.run_id,
            fingerprint=fp,
            changes=changes,
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        if not measurements_only:
            atomic_write(self.metrics_path, pretty_json(metrics_doc).encode())
        atomic_write(self.env_path(fp), pretty_json(env_doc).encode())
        with open(self.log_path, "ab") as fh:
            fh.write(canonical_json(entry.to_dict()) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        return entry

    def stale(self, record: RunRecord) -> list[str]:
        """Baseline subjects that this run did not collect."""
        ids = {s.id for s in subjects_of(record)}
        fp = fingerprint(record.environment)
        known: set[str] = set()
        for path in (self.metrics_path, self.env_path(fp)):
            doc = self._read(path)
            if doc:
                known |= set(doc["subjects"])
        return sorted(known - ids)

    def history(self) -> list[dict[str, Any]]:
        if not self.log_path.is_file():
            return []
        entries = []
        data = self.log_path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = data.count(b"\n", 0, exc.start) + 1
            raise RecordFormatError(
                str(self.log_path),
                f"line {bad}, byte {exc.start}",
                f"UTF-8 text (found byte 0x{data[exc.start]:02x})",
            ) from exc
        for number, line in enumerate(text.splitlines(), 1):
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise RecordFormatError(
                    str(self.log_path), f"line {number}", "a JSON object"
                ) from exc
        return entries


def _summary(values: Any) -> Any:
    """Old/new values for the audit log: medians of sample lists, values otherwise."""
    if values is None:
        return None
    if (
        isinstance(values, list)
        and len(values) > 1
        and all(isinstance(v, (int, float)) for v in values)
    ):
        ordered = sorted(values)
        mid = len(ordered) // 2
        median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
        return {"median": median, "n": len(values)}
    return values[0] if isinstance(values, list) and len(values) == 1 else values
