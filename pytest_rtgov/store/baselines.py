"""Baselines on disk, as reviewable canonical JSON, with an audit log of refreshes.

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

import functools
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

__all__ = [
    "BaselineStore",
    "RefreshEntry",
    "SealStatus",
    "adoption_leaf",
    "baseline_ref",
    "baseline_seal_notes",
    "baseline_seal_status",
    "ledger_record_of",
    "ledger_seals_of",
    "refresh_leaf",
    "seal_history",
    "seal_rollback",
    "who_am_i",
]

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
            shared[metric + CALIBRATED_SUFFIX] = calibrated
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
            line = data.count(b"\n", 0, exc.start) + 1
            raise RecordFormatError(
                str(self.log_path),
                f"line {line}, byte {exc.start}",
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


def _baseline_files(store: BaselineStore) -> list[str]:
    from pytest_rtgov.store.sealed import BASELINE_ENVELOPE

    return [
        p.name
        for p in sorted(store.directory.iterdir())
        if p.is_file() and p.name != BASELINE_ENVELOPE and not p.name.startswith(".")
    ]


def seal_baseline(store: BaselineStore, signer: Any, entry: RefreshEntry) -> str:
    """Sign every baseline file; returns ``sha256:<hex>`` of the envelope written."""
    from pytest_rtgov.store.sealed import BASELINE_ENVELOPE, BASELINE_PREDICATE, seal, sha256_file

    envelope = store.directory / BASELINE_ENVELOPE
    seal(
        store.directory,
        _baseline_files(store),
        envelope,
        [signer],
        predicate_type=BASELINE_PREDICATE,
        predicate={
            "run_id": entry.run_id,
            "at": entry.at,
            "who": entry.who,
            "reason": entry.reason,
        },
    )
    return "sha256:" + sha256_file(envelope)


def check_baseline_seal(store: BaselineStore, trust: Any) -> Any:
    """The baseline's seal, verified: raises SealError naming the first bad file."""
    from pytest_rtgov.store.sealed import BASELINE_ENVELOPE, BASELINE_PREDICATE, check_seal

    return check_seal(
        store.directory,
        store.directory / BASELINE_ENVELOPE,
        trust,
        predicate_type=BASELINE_PREDICATE,
        expect_all=_baseline_files(store),
    )


@dataclass(frozen=True)
class SealStatus:
    """The baseline's seal: notes to show, whether gating must stop, and, when the seal
    fails (an edited, added or removed file, a bad envelope), what failed."""

    notes: list[str]
    stop: bool
    failure: str | None = None
    # A valid seal the ledger has not recorded (made elsewhere): its signed predicate.
    unrecorded: dict[str, Any] | None = None


def baseline_seal_status(
    store: BaselineStore, trust: Any, *, what: str = "baseline", state_dir: Path | None = None
) -> SealStatus:
    """Check the baseline's seal.

    Locally a bad or untrusted signature is a loud warning and the baseline is used
    (never re-sealed by a session: see ``plugin/gating.py``); where signatures are
    required (CI) it stops gating (exit 7).
    """
    from pytest_rtgov.store.sealed import BASELINE_ENVELOPE, SealError

    # A directory left with only its envelope is checked too: its listed files are gone.
    if trust is None or not (store.exists() or (store.directory / BASELINE_ENVELOPE).is_file()):
        return SealStatus([], False)

    try:
        check = check_baseline_seal(store, trust)
    except SealError as exc:
        message = f"{what} signature: {exc}"
        if trust.required:
            return SealStatus([f"{message}; refusing to gate against it"], True, str(exc))
        return SealStatus(
            [
                f"WARNING: {message}; gating against it anyway (a failure in CI; a session "
                "never re-seals it)"
            ],
            False,
            str(exc),
        )
    rollback, recorded = (
        seal_history(store.directory, state_dir, check.predicate) if state_dir else (None, True)
    )
    if rollback is not None:
        # An integrity failure anywhere, as a vanished baseline is: never gated against.
        return SealStatus(
            [f"{what} signature: {rollback}; refusing to gate against it"], True, rollback
        )
    unrecorded = None if recorded else dict(check.predicate)
    if not check.trusted:
        who = ", ".join(check.signed_by)
        source = getattr(trust, "source", "") or f"keyring {trust.keyring_path}"
        if trust.required:
            return SealStatus(
                [
                    f"{what} signature: signed by {who}, which the {source} does not list; "
                    "refusing to gate against it"
                ],
                True,
            )
        return SealStatus(
            [f"WARNING: {what} signed by {who}, not by a key of the {source}; a failure in CI"],
            False,
            unrecorded=unrecorded,
        )
    return SealStatus([], False, unrecorded=unrecorded)


def baseline_seal_notes(store: BaselineStore, trust: Any) -> tuple[list[str], bool]:
    """Notes on the baseline's signature, and whether gating must stop (shared by the
    session's gatekeeper and ``rtgov merge --gate``)."""
    status = baseline_seal_status(store, trust)
    return status.notes, status.stop


def baseline_ref(directory: Path, state_dir: Path) -> str:
    """How ledger leaves name a baseline directory: relative to the project (the state
    directory's parent), in POSIX form, e.g. ``fixtures/baseline``."""
    try:
        return Path(os.path.relpath(directory.resolve(), state_dir.resolve().parent)).as_posix()
    except ValueError:  # another drive (Windows)
        return directory.resolve().as_posix()


def refresh_leaf(
    entry: RefreshEntry,
    seal_sha256: str,
    *,
    directory: Path,
    state_dir: Path,
    scope: str = "committed",
    failed_seal: str | None = None,
) -> bytes:
    """The ``baseline_refresh`` ledger leaf: the audit entry, the envelope's digest, which
    baseline (``baseline``), ``scope`` (``committed``, or ``local``: this machine's
    measurements in the state directory) and, when the seal it replaces had failed,
    ``failed_seal`` (what failed)."""
    from pytest_rtgov.core.ledger_records import baseline_refresh_leaf

    fields: dict[str, Any] = {
        **entry.to_dict(),
        "baseline": baseline_ref(directory, state_dir),
        "scope": scope,
    }
    if failed_seal is not None:
        fields["failed_seal"] = failed_seal
    return baseline_refresh_leaf(fields, seal_sha256=seal_sha256)


def ledger_seals_of(directory: Path, state_dir: Path) -> list[dict[str, Any]]:
    """Every ``baseline_refresh`` leaf of the ledger for this baseline, oldest first, each
    with its ``index`` (leaves written before they named their baseline count for any);
    empty when the ledger has none or cannot be read (its append then fails on its own).

    One pass over the log with a byte filter (the cost of the writer's own rescan),
    shared by every baseline asked about while the log is unchanged: a gated session
    asks for the committed and the local baseline, ``rtgov verify`` too.
    """
    log = state_dir / "ledger" / "log"
    try:
        stat = log.stat()
    except OSError:
        return []
    ref = baseline_ref(directory, state_dir)
    leaves = _seal_leaves(str(log.resolve()), stat.st_size, stat.st_mtime_ns)
    return [leaf for leaf in leaves if leaf.get("baseline", ref) == ref]


@functools.lru_cache(maxsize=4)
def _seal_leaves(log: str, _size: int, _mtime_ns: int) -> tuple[dict[str, Any], ...]:
    """The ``baseline_refresh`` leaves of ``log`` as it is at that size and time (the
    cache key), each with its ``index``; empty when the log cannot be read."""
    from pytest_rtgov.errors import RtgovError
    from pytest_rtgov.store.ledger import scan_frames

    needle = b'"kind":"baseline_refresh"'
    found = []
    try:
        for frame in scan_frames(Path(log)):
            if needle in frame.payload:
                leaf = json.loads(frame.payload)
                if isinstance(leaf, dict):
                    found.append({**leaf, "index": frame.index})
    except (RtgovError, OSError, ValueError):
        return ()
    return tuple(found)


def ledger_record_of(directory: Path, state_dir: Path) -> dict[str, Any] | None:
    """The last ``baseline_refresh`` leaf of the ledger for this baseline, with its
    ``index``; None when the ledger has none (see :func:`ledger_seals_of`)."""
    seals = ledger_seals_of(directory, state_dir)
    return seals[-1] if seals else None


def seal_history(
    directory: Path, state_dir: Path, predicate: Mapping[str, Any]
) -> tuple[str | None, bool]:
    """The baseline's (verified) seal against the seals the ledger recorded for it:
    why it is a rollback (or None), and whether it is the last one recorded.

    The ledger holds the digest and time of every seal it recorded for this baseline.
    The current envelope must be the last of them, or newer than it: a baseline sealed
    elsewhere later (a maintainer's refresh arriving through git) is accepted, and a
    gated session records it (:meth:`~pytest_rtgov.plugin.gating.Gatekeeper.decide`),
    so that putting back the one before it is caught too. One the ledger recorded
    before its last, or one signed before the last recorded seal, is an older baseline
    put back, which a valid signature alone cannot reveal (TUF's rollback attack:
    versions never go back).
    """
    from pytest_rtgov.store.sealed import BASELINE_ENVELOPE, sha256_file

    seals = ledger_seals_of(directory, state_dir)
    envelope = directory / BASELINE_ENVELOPE
    digest = "sha256:" + sha256_file(envelope)
    if not seals:
        return None, False
    last = seals[-1]
    log = state_dir / "ledger" / "log"
    if digest == last.get("seal_sha256"):
        return None, True
    for earlier in seals[:-1]:
        if digest == earlier.get("seal_sha256"):
            return (
                f"{envelope}: this is the seal the ledger {log} recorded at leaf "
                f"{earlier['index']} ({earlier.get('at', '?')}), replaced at leaf "
                f"{last['index']} ({last.get('at', '?')}): an older baseline was put back"
            ), False
    signed_at = str(predicate.get("at", ""))
    if signed_at < str(last.get("at", "")):
        return (
            f"{envelope}: signed at {signed_at or 'an unknown time'}, before the seal the "
            f"ledger {log} last recorded (leaf {last['index']}, {last.get('at', '?')}): "
            "an older baseline was put back or substituted"
        ), False
    return None, False


def seal_rollback(directory: Path, state_dir: Path, predicate: Mapping[str, Any]) -> str | None:
    """Why the baseline's (verified) seal is a rollback, or None (:func:`seal_history`)."""
    return seal_history(directory, state_dir, predicate)[0]


def adoption_leaf(store: BaselineStore, state_dir: Path, predicate: Mapping[str, Any]) -> bytes:
    """A ``baseline_refresh`` leaf recording a seal made elsewhere, as it is: the ledger
    then knows it, and a later rollback to the seal before it is caught."""
    from pytest_rtgov.store.sealed import BASELINE_ENVELOPE, sha256_file

    entry = RefreshEntry(
        at=str(predicate.get("at", "")),
        who=str(predicate.get("who", "")),
        reason=f"recorded a seal made elsewhere: {predicate.get('reason', '')}",
        run_id=str(predicate.get("run_id", "")),
        fingerprint="",
    )
    digest = "sha256:" + sha256_file(store.directory / BASELINE_ENVELOPE)
    return refresh_leaf(entry, digest, directory=store.directory, state_dir=state_dir)
