"""``rtgov verify``, run records and artifacts: each present, matching its ledger leaf,
and none that no leaf names (artifacts also sealed); a run a later ``prune`` leaf names
(``rtgov gc``) may be gone, and is reported as pruned."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_rtgov.core.ledger_records import LeafFormatError
from pytest_rtgov.errors import RtgovError
from pytest_rtgov.store.keys import Trust
from pytest_rtgov.store.sealed import ARTIFACT_PREDICATE, ENVELOPE_SUFFIX, SealError, check_seal
from pytest_rtgov.store.verify.failures import EXIT_LEAF, EXIT_SEAL, VerifyFailure, VerifyReport
from pytest_rtgov.store.verify.seals import warn_untrusted

__all__ = [
    "Coverage",
    "check_record",
    "claim_artifacts",
    "note_prune",
    "settle_pruned",
    "verify_artifacts",
]

_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")  # a run id, worker or artifact
_TEMP_SUFFIX = ".rtgov-tmp"  # store.files.atomic_write's temporaries


@dataclass
class Coverage:
    """What the ledger vouches for, gathered during the pass: run record files still
    waiting for their verdict leaf, and the artifacts the test and fixture leaves name."""

    runs_dir: Path
    artifacts_dir: Path
    unclaimed: set[str]  # stems of runs/*.json no verdict leaf has named yet
    # artifacts/RUN/WORKER/NAME.npz -> [(sha256 hex, leaf index), ...]
    artifacts: dict[Path, list[tuple[str, int]]] = field(default_factory=dict)
    # run id -> (verdict leaf index, record_sha256) of records missing when their verdict
    # leaf came by: a prune leaf later in the log must name them, else verify fails
    missing: dict[str, tuple[int, str]] = field(default_factory=dict)
    # run id -> (prune leaf index, pruned_at, record_sha256)
    pruned: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    # leaves below this index came from a shared ledger (`rtgov ledger pull`): their
    # records and artifacts may be where their sessions ran; those here are checked
    pulled_below: int = 0
    elsewhere: list[str] = field(default_factory=list)  # run ids of records not here


def verify_artifacts(
    directory: Path,
    named: dict[Path, list[tuple[str, int]]],
    trust: Trust,
    report: VerifyReport,
    pruned: Collection[str] = (),
) -> None:
    """Each artifact a leaf names: present, sealed, matching the leaf's digest; and no
    file under ``artifacts/`` that is neither a named artifact nor its seal. The runs in
    ``pruned`` (``rtgov gc``) may have lost theirs: what is left of them is checked, and
    a file of theirs no leaf names is a warning (an interrupted gc), not a failure."""
    for path, claims in sorted(named.items()):
        if path.parent.parent.name in pruned and not path.is_file():
            continue
        leaves = " and ".join(f"leaf {index}" for _, index in claims)
        where = f"{path} (named by ledger {leaves})"
        if not path.is_file():
            raise VerifyFailure(EXIT_SEAL, where, "missing: the ledger holds its digest")
        envelope = path.with_name(path.name + ENVELOPE_SUFFIX)
        try:
            check = check_seal(
                path.parent,
                envelope,
                trust,
                predicate_type=ARTIFACT_PREDICATE,
                expect_all=[path.name],
            )
        except SealError as exc:
            raise VerifyFailure(
                EXIT_SEAL, f"{exc.path} (named by ledger {leaves})", exc.reason
            ) from exc
        actual = check.subjects.get(path.name, "")
        if actual not in {digest for digest, _ in claims}:
            raise VerifyFailure(
                EXIT_SEAL,
                where,
                f"sha256 {actual[:16]}... is not the {claims[-1][0][:16]}... the ledger holds: "
                "the file was replaced and sealed again",
            )
        warn_untrusted(check.trusted, check.signed_by, envelope, trust, report)
        report.seals_checked += 1
    if not directory.is_dir():
        return
    expected = set(named) | {p.with_name(p.name + ENVELOPE_SUFFIX) for p in named}
    for path in sorted(directory.rglob("*")):
        if path.name.endswith(_TEMP_SUFFIX) and path.name.startswith("."):
            report.warnings.append(
                f"{path}: a temporary file an interrupted write left behind (not an "
                "artifact); the next write in its directory removes it once stale"
            )
            continue
        if path not in expected and not path.is_dir():
            if path.relative_to(directory).parts[0] in pruned:
                report.warnings.append(
                    f"{path}: left by an interrupted `rtgov gc` (its run was pruned); "
                    "`rtgov gc` removes it"
                )
                continue
            raise VerifyFailure(
                EXIT_SEAL,
                str(path),
                "no ledger leaf names it: not saved by a session whose ledger append "
                "succeeded (forged, or left by a session that crashed; `rtgov ledger "
                "recover` moves a crashed run's artifacts aside)",
            )


def check_record(coverage: Coverage, leaf: dict[str, Any], index: int) -> int:
    """1 when the run record file of a verdict leaf exists and matches it."""
    from pytest_rtgov.store.files import decode_json
    from pytest_rtgov.store.runs import record_file_digest

    run_id = leaf["run_id"]
    if not _PLAIN_NAME.fullmatch(run_id):
        raise LeafFormatError(f"run_id {run_id!r} is not a plain name")
    path = coverage.runs_dir / f"{run_id}.json"
    coverage.unclaimed.discard(run_id)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if index < coverage.pulled_below:  # pulled: the record stayed where it was made
            coverage.elsewhere.append(run_id)
            return 0
        # Missing is fine only if a prune leaf later in the log names it (settle_pruned).
        coverage.missing[run_id] = (index, leaf["record_sha256"])
        return 0
    except OSError as exc:
        raise VerifyFailure(EXIT_LEAF, str(path), f"unreadable run record ({exc})") from exc
    # The plugin writes the canonical bytes and a newline: hash them as they are, and
    # re-encode only a file in another layout (an edit that keeps the content passes).
    digest = "sha256:" + hashlib.sha256(data.removesuffix(b"\n")).hexdigest()
    if digest != leaf["record_sha256"]:
        try:
            digest = record_file_digest(decode_json(path, data), path)
        except (RtgovError, ValueError) as exc:
            raise VerifyFailure(EXIT_LEAF, str(path), f"unreadable run record ({exc})") from exc
    if digest != leaf["record_sha256"]:
        raise VerifyFailure(
            EXIT_LEAF,
            str(path),
            f"differs from the run record the ledger holds (leaf {index}): the file was edited",
        )
    return 1


def note_prune(coverage: Coverage, leaf: dict[str, Any], index: int) -> None:
    """Remember the runs a prune leaf names (parse_leaf checked their fields)."""
    for run in leaf["runs"]:
        if not _PLAIN_NAME.fullmatch(run["run_id"]):
            raise LeafFormatError(f"run_id {run['run_id']!r} is not a plain name")
        coverage.pruned[run["run_id"]] = (index, leaf["pruned_at"], run["record_sha256"])


def settle_pruned(coverage: Coverage, report: VerifyReport) -> None:
    """After the pass: every record missing at its verdict leaf must be pruned by a later
    prune leaf naming the same digest (else the failure verify always gave); reports
    the pruned runs, and warns about pruned records still present (an interrupted gc)."""
    by_leaf: dict[tuple[int, str], list[str]] = {}
    for run_id, (index, digest) in sorted(coverage.missing.items(), key=lambda kv: kv[1][0]):
        path = coverage.runs_dir / f"{run_id}.json"
        mark = coverage.pruned.get(run_id)
        if mark is None or mark[0] < index:
            raise VerifyFailure(
                EXIT_LEAF,
                str(path),
                f"run record missing: the ledger's verdict leaf {index} names it",
            )
        if mark[2] != digest:
            raise VerifyFailure(
                EXIT_LEAF,
                str(path),
                f"run record missing: the ledger's verdict leaf {index} names it, and prune "
                f"leaf {mark[0]} pruned another record of that run ({mark[2][:23]}...)",
            )
        by_leaf.setdefault(mark[:2], []).append(run_id)
    report.pruned = [(leaf, at, runs) for (leaf, at), runs in sorted(by_leaf.items())]
    for run_id, (leaf, at, _) in sorted(coverage.pruned.items()):
        path = coverage.runs_dir / f"{run_id}.json"
        if run_id not in coverage.missing and path.is_file():
            report.warnings.append(
                f"{path}: pruned by ledger leaf {leaf} ({at}) but still present: an "
                "interrupted `rtgov gc`; `rtgov gc` removes it"
            )


def claim_artifacts(coverage: Coverage, leaf: dict[str, Any], index: int) -> None:
    """Collect the ``artifact:NAME`` digests of a test leaf or of a fixture's setups.

    A merged run (``rtgov merge``) names its workers ``SHARD_RUN/WORKER``: its artifacts
    are the shards', which the shards' own leaves claim where the shards ran."""
    if leaf["kind"] == "test":
        places = [leaf]
    elif type(leaf.get("setups", [])) is list:
        places = leaf.get("setups", [])
    else:
        raise LeafFormatError("a fixture leaf's 'setups' must be a list")
    for place in places:
        if type(place) is not dict or type(place.get("metrics", [])) is not list:
            raise LeafFormatError(f"a {leaf['kind']} leaf's 'metrics' must be a list")
    run_id = leaf["run_id"]
    for place in places:
        worker = place.get("worker")
        for metric in place.get("metrics", []):
            name = metric.get("name") if type(metric) is dict else None
            if type(name) is not str or not name.startswith("artifact:"):
                continue
            value, artifact = metric.get("value"), name[len("artifact:") :]
            if (
                type(value) is not str
                or not value.startswith("sha256:")
                or type(worker) is not str
                or not all(
                    _PLAIN_NAME.fullmatch(part)
                    for part in (run_id, *worker.split("/", 1), artifact)
                )
            ):
                raise LeafFormatError(
                    f"metric {name!r}: expected 'sha256:<hex>' and plain run, worker and "
                    "artifact names"
                )
            if "/" in worker:
                continue  # merged run: the shard's own leaves claim the file (checked)
            path = coverage.artifacts_dir / run_id / worker / f"{artifact}.npz"
            if index < coverage.pulled_below and not path.exists():
                continue  # pulled: the artifact stayed where its session ran
            coverage.artifacts.setdefault(path, []).append((value[len("sha256:") :], index))
