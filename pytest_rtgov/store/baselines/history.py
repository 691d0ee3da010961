"""A baseline's history in the ledger: the ``baseline_refresh`` leaves that record its
seals, and the rollback check of a seal against them (versions never go back)."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_rtgov.store.baselines.directory import BaselineStore, RefreshEntry

__all__ = [
    "adoption_leaf",
    "baseline_ref",
    "ledger_record_of",
    "ledger_seals_of",
    "refresh_leaf",
    "seal_history",
    "seal_rollback",
]


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
