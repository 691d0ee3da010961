"""Governance inputs on disk: what a gated session keeps for ``rtgov audit``, and the
audit's reading of the ledger and the object store.

A gated session keeps the exact bytes of its gates file and of the baseline files its
view read in the object store (``objects/``, :class:`~pytest_rtgov.store.objects.ObjectStore`)
and records their digests in the run record's ``inputs``: ``gates`` (the file's
sha256), ``baseline`` (the sha256 of a canonical-JSON manifest ``{file name: sha256}``
of the committed baseline files) and, when this machine's local baseline was read,
``baseline_local`` (the same for ``baseline-local/``).

``rtgov audit`` reads the ledger's leaves up to its latest signed checkpoint (the
signature checked against the keyring, every frame checked, the leaves hashed to the
checkpoint's root, as ``rtgov verify`` does), groups them by run, fetches each gated
run's inputs (a missing or corrupt object is a finding, not a traceback), puts the
baseline files back in a temporary directory for :meth:`BaselineStore.view`, and
hands the values to :mod:`pytest_rtgov.core.audit`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pytest_rtgov.core.audit import RUN_KINDS, Finding, RunAudit, RunLeaves, audit_run
from pytest_rtgov.core.audit import rebuild_record as rebuild
from pytest_rtgov.core.canonical import canonical_json
from pytest_rtgov.core.gates_config import GatesConfig, GatesConfigError
from pytest_rtgov.core.ledger_records import LeafFormatError, parse_leaf
from pytest_rtgov.core.merkle import MerkleAccumulator
from pytest_rtgov.core.subjects import BaselineView
from pytest_rtgov.errors import NotFoundError, RecordFormatError, RtgovError
from pytest_rtgov.logs import log_event
from pytest_rtgov.store.baselines import BaselineStore
from pytest_rtgov.store.ledger import Ledger, scan_frames
from pytest_rtgov.store.objects import ObjectCorruptError, ObjectMissingError, ObjectStore
from pytest_rtgov.store.verify.failures import (
    EXIT_CHECKPOINT,
    EXIT_LEAF,
    EXIT_ROOT,
    VerifyFailure,
)

__all__ = [
    "BASELINE",
    "BASELINE_LOCAL",
    "GATES",
    "audit_ledger",
    "keep_baseline",
    "keep_gates",
    "machine_note",
    "signed_runs",
]

GATES, BASELINE, BASELINE_LOCAL = "gates", "baseline", "baseline_local"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")  # a baseline file's name: flat, no ..
# BaselineStore.view's note when it read this machine's local baseline (a path in it)
_LOCAL_NOTE, _UNCOMMITTED = "measurements compared with this machine's local baseline ", (
    " (not committed)"
)


# -- the session's side: keep the inputs -----------------------------------------------


def _keep(objects: ObjectStore, data: bytes, what: str) -> str:
    """Keep ``data``; its digest, recorded even when the disk refuses the object (the
    audit then names it missing)."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    try:
        objects.put(data)
    except OSError as exc:
        log_event("audit.input_not_kept", level=logging.WARNING, input=what, error=str(exc))
    return digest


def keep_gates(state_dir: Path, data: bytes) -> dict[str, str]:
    """The gates file's exact bytes kept: ``{"gates": "sha256:.."}``."""
    return {GATES: _keep(ObjectStore.of_state_dir(state_dir), data, GATES)}


def keep_baseline(
    state_dir: Path, store: BaselineStore, environment: Mapping[str, str], *, local: bool
) -> dict[str, str]:
    """The baseline files the view read for ``environment`` kept, with their manifests:
    ``{"baseline": .., "baseline_local": ..}`` (the second only when it was read)."""
    objects = ObjectStore.of_state_dir(state_dir)
    committed, own = store.view_sources(environment, local=local)
    inputs = {BASELINE: _manifest(objects, committed, BASELINE)}
    if own:
        inputs[BASELINE_LOCAL] = _manifest(objects, own, BASELINE_LOCAL)
    return inputs


def _manifest(objects: ObjectStore, files: list[Path], what: str) -> str:
    manifest = {}
    for path in files:
        try:
            manifest[path.name] = _keep(objects, path.read_bytes(), f"{what}/{path.name}")
        except OSError as exc:  # gone since the view read it: the audit says so
            log_event("audit.input_not_kept", level=logging.WARNING, input=str(path),
                      error=str(exc))
    return _keep(objects, canonical_json(manifest), what)


# -- the audit's side: the signed leaves, grouped by run ---------------------------------


def signed_runs(state_dir: Path, trust: Any, *, since: int = 0) -> tuple[list[RunLeaves], int]:
    """The gated runs whose verdict leaf is at ``since`` or later, among the leaves the
    latest signed checkpoint covers; and that checkpoint's size.

    Raises :class:`VerifyFailure` (13: no checkpoint that verifies; 11: a leaf that does
    not read; 12: the log does not hash to the root) or ``LedgerCorruptError`` (10).
    """
    ledger = Ledger(state_dir / "ledger")
    if not ledger.exists():
        raise NotFoundError(f"no ledger in {state_dir}: nothing to audit")
    latest = ledger.latest_checkpoint()
    if latest is None:
        raise VerifyFailure(EXIT_CHECKPOINT, str(ledger.checkpoint_dir), "no signed checkpoint")
    path, body = latest
    _check_signature(path, trust)
    if since > body.size:
        from pytest_rtgov.errors import InvalidOptionError

        raise InvalidOptionError(
            f"--since {since}: the ledger's latest signed checkpoint {path} covers "
            f"{body.size} leaves"
        )
    tree = MerkleAccumulator()
    runs: list[RunLeaves] = []
    open_runs: dict[str, list[dict[str, Any]]] = {}
    if body.size:
        frames = scan_frames(ledger.log_path, tree=tree)
        for frame in frames:
            _take(frame, ledger.log_path, open_runs, runs, since)
            if frame.index + 1 >= body.size:
                frames.close()
                break
    if tree.size != body.size or tree.root() != body.root_hash:
        raise VerifyFailure(
            EXIT_ROOT,
            str(ledger.log_path),
            f"its first {body.size} leaves do not hash to the root of {path}: a leaf was "
            "changed, removed or added (`rtgov verify` says which)",
        )
    return runs, body.size


def _check_signature(path: Path, trust: Any) -> None:
    from pytest_rtgov.core.notes import open_note

    try:
        opened = open_note(path.read_bytes(), trust.verifiers())
    except RtgovError as exc:
        raise VerifyFailure(EXIT_CHECKPOINT, str(path), str(exc)) from None
    if trust.required and not any(trust.is_trusted(v) for v in opened.verified_by):
        raise VerifyFailure(EXIT_CHECKPOINT, str(path), "not signed by a keyring key")


def _take(
    frame: Any,
    log: Path,
    open_runs: dict[str, list[dict[str, Any]]],
    runs: list[RunLeaves],
    since: int,
) -> None:
    """Fold one leaf: a gated run's leaves are kept until its verdict leaf closes it."""
    try:
        leaf = parse_leaf(frame.payload)
    except LeafFormatError as exc:
        raise VerifyFailure(EXIT_LEAF, f"{log} leaf {frame.index}", str(exc)) from None
    kind, run_id = leaf["kind"], leaf.get("run_id")
    if kind not in RUN_KINDS or not isinstance(run_id, str):
        return
    if kind == "run":
        if leaf.get("mode") == "gate":
            open_runs[run_id] = [leaf]
        return
    leaves = open_runs.get(run_id)
    if leaves is None:
        return
    leaves.append(leaf)
    if kind == "verdict":
        del open_runs[run_id]
        if frame.index >= since:
            runs.append(RunLeaves(run_id, tuple(leaves), frame.index))


# -- one run: its inputs fetched, then the pure audit ----------------------------------


def audit_ledger(state_dir: Path, trust: Any, *, since: int = 0) -> Iterator[RunAudit]:
    """Every gated run from ``since`` on, audited, in the ledger's order."""
    runs, _ = signed_runs(state_dir, trust, since=since)
    objects = ObjectStore.of_state_dir(state_dir)
    for run in runs:
        yield _audit_one(run, objects)


def _audit_one(run: RunLeaves, objects: ObjectStore) -> RunAudit:
    record, problems = rebuild(run)
    if record is None:
        return RunAudit(run.run_id, run.verdict_index, "differs", tuple(problems))
    inputs = dict(record.inputs)
    if GATES not in inputs:
        return RunAudit(
            run.run_id, run.verdict_index, "not auditable",
            reason="no inputs recorded (a session before rtgov audit, or `rtgov merge`)",
        )
    findings: list[Finding] = []
    with tempfile.TemporaryDirectory(prefix="rtgov-audit-") as tmp:
        root = Path(tmp)
        gates = _gates(run.run_id, inputs[GATES], objects, root, findings)
        view = None
        if BASELINE in inputs:
            view = _view(run.run_id, inputs, objects, root, record.environment, findings)
    return audit_run(run, record, gates, machine_note(view, record), findings=findings)


def machine_note(view: BaselineView | None, record: Any) -> BaselineView | None:
    """The view with the session machine's path of its local baseline in its note (the
    reason of a ``new`` result): the one the record says, where it says it; the audit
    put the file elsewhere."""
    if view is None or not view.fingerprint_note.startswith(_LOCAL_NOTE):
        return view
    name = Path(view.fingerprint_note.removeprefix(_LOCAL_NOTE).removesuffix(_UNCOMMITTED)).name
    said = [str(g.get("reason", "")) for g in record.gate_results]
    said += [str(n) for n in record.verdict.get("notes", [])]
    for text in said:
        if text.startswith(_LOCAL_NOTE) and text.endswith(f"{name}{_UNCOMMITTED}"):
            return dataclasses.replace(view, fingerprint_note=text)
    return view


def _fetch(run_id: str, digest: str, objects: ObjectStore, what: str,
           findings: list[Finding]) -> bytes | None:
    try:
        return objects.get(digest)
    except ObjectMissingError as exc:
        findings.append(Finding(run_id, "inputs", what, f"missing from the object store ({exc})"))
    except ObjectCorruptError as exc:
        findings.append(Finding(run_id, "inputs", what, f"corrupt ({exc})"))
    except ValueError as exc:  # not sha256:<hex>
        findings.append(Finding(run_id, "inputs", what, f"not a digest ({exc})"))
    return None


def _gates(run_id: str, digest: str, objects: ObjectStore, root: Path,
           findings: list[Finding]) -> GatesConfig | None:
    from pytest_rtgov.store.gates_file import load_gates

    data = _fetch(run_id, digest, objects, GATES, findings)
    if data is None:
        return None
    path = root / "gates.toml"  # the session's file, parsed as the session parsed it
    path.write_bytes(data)
    try:
        return load_gates(path)
    except GatesConfigError as exc:
        findings.append(Finding(run_id, "inputs", GATES, f"does not parse ({exc})"))
        return None


def _view(run_id: str, inputs: Mapping[str, str], objects: ObjectStore, root: Path,
          environment: Mapping[str, str], findings: list[Finding]) -> BaselineView | None:
    """The baseline view the session built, from the kept files in ``root``."""
    committed, local = root / "baseline", root / "baseline-local"
    for key, folder in ((BASELINE, committed), (BASELINE_LOCAL, local)):
        folder.mkdir()
        if key in inputs and not _materialise(run_id, key, inputs[key], objects, folder,
                                              findings):
            return None
    try:
        return BaselineStore(committed, local_dir=local).view(environment)
    except RecordFormatError as exc:
        findings.append(Finding(run_id, "inputs", BASELINE, f"does not parse ({exc})"))
        return None


def _materialise(run_id: str, key: str, digest: str, objects: ObjectStore, folder: Path,
                 findings: list[Finding]) -> bool:
    data = _fetch(run_id, digest, objects, key, findings)
    if data is None:
        return False
    try:
        manifest = json.loads(data)
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict) or not all(
        isinstance(k, str) and _NAME.fullmatch(k) and isinstance(v, str)
        for k, v in manifest.items()
    ):
        findings.append(Finding(run_id, "inputs", key, "the manifest is not {file name: digest}"))
        return False
    for name, file_digest in sorted(manifest.items()):
        content = _fetch(run_id, file_digest, objects, f"{key}/{name}", findings)
        if content is None:
            return False
        (folder / name).write_bytes(content)
    return True
