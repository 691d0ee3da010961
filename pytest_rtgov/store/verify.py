"""``rtgov verify``: everything the ledger, its checkpoints and the sealed files claim.

One streaming pass over the log, memory independent of its length: each frame's
leaf hash is recomputed, the Merkle root is checked at every checkpoint's size, the
consistency proof between successive checkpoints is generated from the same pass
and verified, and a trusted earlier checkpoint must be a prefix of the log. Every leaf is parsed
(canonical JSON of a known kind, with its kind's fields). The run records are checked
against the verdict leaves both ways (each named one present and matching, none that
no leaf names), the artifacts against the digests the test and fixture leaves hold
(each present, matching and sealed, none unnamed), then the baseline seal.

The first failure stops the check and names the frame, leaf, checkpoint or file.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_rtgov.core import merkle
from pytest_rtgov.core.checkpoints import Checkpoint, parse_checkpoint
from pytest_rtgov.core.ledger_records import LeafFormatError, parse_leaf
from pytest_rtgov.core.notes import open_note
from pytest_rtgov.errors import RtgovError
from pytest_rtgov.store.baselines import seal_rollback
from pytest_rtgov.store.coverage import ORPHANED_DIR
from pytest_rtgov.store.keys import Trust
from pytest_rtgov.store.ledger import (
    Ledger,
    LedgerCorruptError,
    LedgerError,
    TornTail,
    scan_frames,
)
from pytest_rtgov.store.sealed import (
    ARTIFACT_PREDICATE,
    BASELINE_ENVELOPE,
    BASELINE_PREDICATE,
    ENVELOPE_SUFFIX,
    SealError,
    check_seal,
)

__all__ = ["VerifyFailure", "VerifyReport", "verify_all"]

# Exit codes of ``rtgov verify`` (also in the CLI's docstring and docs/ledger.md).
EXIT_NO_STATE = 3  # --dir names no state directory (the CLI's "not found")
EXIT_NOT_A_DIR = 4  # --dir names something that is not a directory (the CLI's "unreadable")
EXIT_FRAME = 10  # a frame does not check (header CRC, leaf hash, not a ledger)
EXIT_LEAF = 11  # a leaf is not canonical JSON of a known kind; a run record edited,
# missing (its verdict leaf names it) or orphaned (no verdict leaf names it)
EXIT_ROOT = 12  # the log does not hash to a signed root: leaves edited, removed, reordered
EXIT_CHECKPOINT = 13  # a checkpoint is malformed, unsigned, untrusted or out of order
EXIT_HISTORY = 14  # a consistency proof fails, or the trusted checkpoint is no prefix
EXIT_SEAL = 15  # a baseline or artifact does not match its seal, or an artifact is
# missing, differs from the digest its ledger leaf holds, or no leaf names it

_CHECKPOINT_NAME = re.compile(r"[0-9]{10}\.txt")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")  # a run id, worker or artifact
_ARTIFACT_MARK = b'"artifact:'
_TEMP_SUFFIX = ".rtgov-tmp"  # store.files.atomic_write's temporaries


class VerifyFailure(RtgovError):
    def __init__(self, exit_code: int, where: str, reason: str) -> None:
        self.exit_code, self.where, self.reason = exit_code, where, reason
        super().__init__(f"{where}: {reason}")


@dataclass
class VerifyReport:
    leaves: int = 0
    checkpoints: int = 0
    root: bytes = b""
    signed_by: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)
    records_checked: int = 0
    seals_checked: int = 0
    trusted_prefix: int | None = None


@dataclass(frozen=True)
class _Checkpoint:
    path: Path
    body: Checkpoint


_MAX_CHECKPOINT_BYTES = 64 * 1024  # a checkpoint is a few hundred bytes


def _open_checkpoint(path: Path, trust: Trust, report: VerifyReport) -> Checkpoint:
    try:
        if not path.is_file():
            raise VerifyFailure(EXIT_CHECKPOINT, str(path), "not a regular file")
        with open(path, "rb") as fh:
            data = fh.read(_MAX_CHECKPOINT_BYTES + 1)
        if len(data) > _MAX_CHECKPOINT_BYTES:
            raise VerifyFailure(
                EXIT_CHECKPOINT,
                str(path),
                f"larger than {_MAX_CHECKPOINT_BYTES} bytes: not a signed checkpoint",
            )
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise VerifyFailure(EXIT_CHECKPOINT, str(path), f"unreadable ({exc})") from exc
    try:
        opened = open_note(text, trust.verifiers())
        body = parse_checkpoint(opened.text)
    except RtgovError as exc:
        raise VerifyFailure(EXIT_CHECKPOINT, str(path), str(exc)) from exc
    names = {v.name for v in opened.verified_by}
    if trust.required and not any(trust.is_trusted(v) for v in opened.verified_by):
        raise VerifyFailure(
            EXIT_CHECKPOINT,
            str(path),
            f"signed only by {', '.join(sorted(names))}, which the keyring "
            f"{trust.keyring_path} does not list (signatures are required)",
        )
    report.signed_by |= names
    return body


@dataclass
class _Coverage:
    """What the ledger vouches for, gathered during the pass: run record files still
    waiting for their verdict leaf, and the artifacts the test and fixture leaves name."""

    runs_dir: Path
    artifacts_dir: Path
    unclaimed: set[str]  # stems of runs/*.json no verdict leaf has named yet
    # artifacts/RUN/WORKER/NAME.npz -> [(sha256 hex, leaf index), ...]
    artifacts: dict[Path, list[tuple[str, int]]] = field(default_factory=dict)


def verify_all(
    state_dir: Path,
    trust: Trust,
    *,
    since: Path | None = None,
    baseline_dir: Path | None = None,
) -> VerifyReport:
    if not state_dir.exists():
        raise VerifyFailure(
            EXIT_NO_STATE,
            str(state_dir),
            "no state directory here (give the one the sessions wrote with --dir)",
        )
    if not state_dir.is_dir():
        raise VerifyFailure(
            EXIT_NOT_A_DIR, str(state_dir), "not a directory: --dir names the state directory"
        )
    report = VerifyReport()
    ledger = Ledger(state_dir / "ledger")
    runs_dir = state_dir / "runs"
    coverage = _Coverage(
        runs_dir,
        state_dir / "artifacts",
        {p.stem for p in runs_dir.glob("*.json")} if runs_dir.is_dir() else set(),
    )
    if ledger.exists():
        _verify_ledger(ledger, trust, since, coverage, report)
    elif _any_checkpoint(ledger):
        newest = sorted(ledger.checkpoint_dir.glob("*.txt"))[-1]
        raise VerifyFailure(
            EXIT_ROOT,
            str(ledger.log_path),
            f"missing, but the checkpoint {newest} remains: the log was removed or cut",
        )
    elif since is not None:
        raise VerifyFailure(EXIT_HISTORY, str(ledger.log_path), "no ledger, but --since was given")
    else:
        report.warnings.append(f"{ledger.log_path}: no ledger yet")
    for stem in sorted(coverage.unclaimed):
        raise VerifyFailure(
            EXIT_LEAF,
            str(runs_dir / f"{stem}.json"),
            "orphaned run record: no verdict leaf covers it; forged, or written by a session "
            "that crashed before its ledger append (`rtgov ledger recover` moves it to "
            f"{state_dir / ORPHANED_DIR}, or delete it)",
        )
    if baseline_dir is not None and not (baseline_dir.is_dir() and any(baseline_dir.iterdir())):
        from pytest_rtgov.store.baselines import ledger_record_of

        known = ledger_record_of(baseline_dir, state_dir)
        if known is not None:
            raise VerifyFailure(
                EXIT_SEAL,
                str(baseline_dir),
                f"missing, but the ledger recorded it (leaf {known['index']}, "
                f"{known.get('at', '?')}, by {known.get('who', '?')}): a baseline may not vanish",
            )
    if baseline_dir is not None and baseline_dir.is_dir() and any(baseline_dir.iterdir()):
        predicate = _verify_baseline(baseline_dir, trust, report)
        rollback = seal_rollback(baseline_dir, state_dir, predicate)
        if rollback is not None:
            raise VerifyFailure(EXIT_SEAL, str(baseline_dir / BASELINE_ENVELOPE), rollback)
    # This machine's own measurements (docs/gates.md); signed by its local key, so not
    # checked where only keyring keys count (CI never reads them either).
    local_baseline = state_dir / "baseline-local"
    if not trust.required and local_baseline.is_dir() and any(local_baseline.iterdir()):
        rollback = seal_rollback(
            local_baseline, state_dir, _verify_baseline(local_baseline, trust, report)
        )
        if rollback is not None:
            raise VerifyFailure(EXIT_SEAL, str(local_baseline / BASELINE_ENVELOPE), rollback)
    _verify_artifacts(coverage.artifacts_dir, coverage.artifacts, trust, report)
    # Temporaries of interrupted atomic writes: reported (the next writer in that folder
    # removes them), never part of what is verified.
    from pytest_rtgov.store.files import stale_temporaries

    leftovers = stale_temporaries(state_dir, recursive=True)
    if baseline_dir is not None and baseline_dir.is_dir():
        leftovers += stale_temporaries(baseline_dir, recursive=False)
    report.warnings += [
        f"{path}: left by an interrupted write (its writer is gone); the next write in "
        "that folder removes it"
        for path in leftovers
        if not path.is_relative_to(coverage.artifacts_dir)  # reported with the artifacts
    ]
    return report


def _any_checkpoint(ledger: Ledger) -> bool:
    return ledger.checkpoint_dir.is_dir() and any(ledger.checkpoint_dir.glob("*.txt"))


def _verify_artifacts(
    directory: Path,
    named: dict[Path, list[tuple[str, int]]],
    trust: Trust,
    report: VerifyReport,
) -> None:
    """Each artifact a leaf names: present, sealed, matching the leaf's digest; and no
    file under ``artifacts/`` that is neither a named artifact nor its seal."""
    for path, claims in sorted(named.items()):
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
        _warn_untrusted(check.trusted, check.signed_by, envelope, trust, report)
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
            raise VerifyFailure(
                EXIT_SEAL,
                str(path),
                "no ledger leaf names it: not saved by a session whose ledger append "
                "succeeded (forged, or left by a session that crashed; `rtgov ledger "
                "recover` moves a crashed run's artifacts aside)",
            )


def _warn_untrusted(
    trusted: bool, signed_by: Iterable[str], where: Path, trust: Trust, report: VerifyReport
) -> None:
    if trusted:
        return
    who = ", ".join(signed_by)
    if trust.required:
        raise VerifyFailure(
            EXIT_SEAL, str(where), f"signed by {who}, not by a key of {trust.keyring_path}"
        )
    report.warnings.append(f"{where}: signed by the untrusted local key {who}")


def _verify_baseline(directory: Path, trust: Trust, report: VerifyReport) -> dict[str, Any]:
    """Check a baseline's seal; returns the signed predicate (who, when, why)."""
    files = [
        p.name
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != BASELINE_ENVELOPE and not p.name.startswith(".")
    ]
    try:
        check = check_seal(
            directory,
            directory / BASELINE_ENVELOPE,
            trust,
            predicate_type=BASELINE_PREDICATE,
            expect_all=files,
        )
    except SealError as exc:
        raise VerifyFailure(EXIT_SEAL, str(exc.path), exc.reason) from exc
    _warn_untrusted(check.trusted, check.signed_by, directory / BASELINE_ENVELOPE, trust, report)
    report.seals_checked += 1
    return check.predicate


def _verify_ledger(
    ledger: Ledger, trust: Trust, since: Path | None, coverage: _Coverage, report: VerifyReport
) -> None:
    checkpoints: list[_Checkpoint] = []
    _check_numbering(ledger)
    for path in ledger.checkpoint_paths():
        body = _open_checkpoint(path, trust, report)
        if checkpoints and body.size < checkpoints[-1].body.size:
            raise VerifyFailure(
                EXIT_CHECKPOINT,
                str(path),
                f"tree size {body.size} is smaller than {checkpoints[-1].path.name}'s "
                f"{checkpoints[-1].body.size}: checkpoints are out of order",
            )
        if checkpoints and body.origin != checkpoints[0].body.origin:
            raise VerifyFailure(
                EXIT_CHECKPOINT,
                str(path),
                f"origin {body.origin!r} differs from {checkpoints[0].body.origin!r}",
            )
        if checkpoints and body == checkpoints[-1].body:
            raise VerifyFailure(
                EXIT_CHECKPOINT,
                str(path),
                f"the same checkpoint as {checkpoints[-1].path.name} (size {body.size}): "
                "a copy under a second number",
            )
        checkpoints.append(_Checkpoint(path, body))
    report.checkpoints = len(checkpoints)
    trusted: _Checkpoint | None = None
    if since is not None:
        trusted = _Checkpoint(since, _open_checkpoint(since, trust, report))

    # Roots wanted at each checkpoint size, and the consistency proofs to generate.
    wanted: dict[int, list[_Checkpoint]] = {}
    for cp in [*checkpoints, *([trusted] if trusted else [])]:
        wanted.setdefault(cp.body.size, []).append(cp)
    # Every checkpoint's root is recomputed from the log at its size (below), which is
    # stronger than a consistency proof between two of them: both roots come from the
    # same bytes. RFC 9162 consistency proofs are generated and verified for the pairs
    # an outside auditor holds: the last two checkpoints, and the trusted one to the
    # latest. Proofs for every successive pair would cost O(leaves x checkpoints).
    pairs = [
        (a, b) for a, b in itertools.pairwise(checkpoints[-2:]) if 0 < a.body.size < b.body.size
    ]
    if trusted is not None and checkpoints and 0 < trusted.body.size < checkpoints[-1].body.size:
        pairs.append((trusted, checkpoints[-1]))
    # Each proof takes the tree's compact range at its first size from the pass below
    # and re-hashes only the leaves after it (merkle.ConsistencyProver).
    provers = [merkle.ConsistencyProver(a.body.size, b.body.size) for a, b in pairs]

    torn: list[TornTail] = []
    tree = merkle.MerkleAccumulator()
    origin: str | None = None
    log = ledger.log_path
    # One pass checks every frame, parses every leaf and streams the tree and the proof
    # hashes. Run records are checked when their verdict leaf comes by (memory must not
    # grow with the sessions); artifact digests are collected (one per artifact).
    frames = scan_frames(
        log,
        on_torn=torn.append,
        tree=tree,
        feed=_feeder(provers),
        feed_from=min((p.size1 for p in provers), default=0),
        feed_below=max((p.size1 + p.needed for p in provers), default=0),
    )
    parse = parse_leaf
    try:
        for index, offset, _leaf_hash, payload in frames:
            try:
                leaf = parse(payload)
                kind = leaf["kind"]
                if kind == "ledger" or index == 0:
                    if (kind == "ledger") != (index == 0):
                        raise LeafFormatError(
                            "only leaf 0 is the ledger genesis (kind 'ledger'), and it is"
                        )
                    origin = leaf["origin"]
                elif kind == "verdict":
                    report.records_checked += _check_record(coverage, leaf, index)
                elif _ARTIFACT_MARK in payload and kind in ("test", "fixture"):
                    _claim_artifacts(coverage, leaf, index)
            except LeafFormatError as exc:
                raise VerifyFailure(
                    EXIT_LEAF, f"{log}: leaf {index} at byte {offset}", str(exc)
                ) from exc
            at = wanted.get(index + 1)
            if at is not None:
                for prover in provers:
                    if prover.size1 == index + 1:
                        prover.take_compact_range(tree.compact_range())
                root = tree.root()
                for cp in at:
                    if cp.body.root_hash != root:
                        raise VerifyFailure(
                            EXIT_ROOT if cp is not trusted else EXIT_HISTORY,
                            f"{log}: leaves 0..{tree.size - 1}",
                            f"hash to {root.hex()[:16]}..., but {cp.path} signed "
                            f"{cp.body.root_hash.hex()[:16]}...: "
                            + (
                                "a leaf was changed, removed, added or reordered"
                                if cp is not trusted
                                else "the log is not an extension of the trusted checkpoint "
                                "(history rewritten)"
                            ),
                        )
    except LedgerCorruptError as exc:
        raise VerifyFailure(
            EXIT_FRAME,
            f"{exc.path}: frame {exc.index} at byte {exc.offset}"
            if exc.index is not None
            else f"{exc.path}: byte {exc.offset}",
            exc.reason,
        ) from exc
    except LedgerError as exc:
        raise VerifyFailure(EXIT_FRAME, str(ledger.log_path), str(exc)) from exc
    report.leaves = tree.size
    report.root = tree.root()

    for cp in [*checkpoints, *([trusted] if trusted else [])]:
        if cp.body.size > tree.size:
            code = EXIT_HISTORY if cp is trusted else EXIT_ROOT
            raise VerifyFailure(
                code,
                str(cp.path),
                f"covers {cp.body.size} leaves but the log has only {tree.size}: "
                "records were removed or the log was cut",
            )
        if origin is not None and cp.body.origin != origin:
            raise VerifyFailure(
                EXIT_CHECKPOINT if cp is not trusted else EXIT_HISTORY,
                str(cp.path),
                f"origin {cp.body.origin!r} is not this ledger's {origin!r}",
            )
    for (a, b), prover in zip(pairs, provers, strict=True):
        try:
            merkle.verify_consistency(
                size1=a.body.size,
                size2=b.body.size,
                proof=prover.proof(),
                root1=a.body.root_hash,
                root2=b.body.root_hash,
            )
        except merkle.MerkleError as exc:
            raise VerifyFailure(
                EXIT_HISTORY, f"{a.path} -> {b.path}", f"consistency proof fails: {exc}"
            ) from exc
    if trusted is not None:
        report.trusted_prefix = trusted.body.size
    if torn:
        t = torn[0]
        report.warnings.append(
            f"{ledger.log_path}: incomplete trailing frame at byte {t.offset} ({t.length} bytes): "
            "an interrupted append; the next session sets it aside"
        )
    covered = checkpoints[-1].body.size if checkpoints else 0
    if tree.size > covered:
        raise VerifyFailure(
            EXIT_ROOT,
            f"{ledger.log_path}: leaves {covered}..{tree.size - 1}",
            "appended after the last signed checkpoint: an interrupted session or an "
            "unauthorised append; review them, then `rtgov ledger recover` signs them",
        )


def _feeder(provers: list[merkle.ConsistencyProver]) -> Callable[[bytes], None] | None:
    """One callable that feeds each leaf hash (of consecutive indices from the smallest
    ``size1`` on) to the provers that need it."""
    if len(provers) <= 1:
        return provers[0].feed if provers else None
    index = min(p.size1 for p in provers)

    def feed(leaf_hash: bytes) -> None:
        nonlocal index
        for prover in provers:
            if prover.size1 <= index < prover.size1 + prover.needed:
                prover.feed(leaf_hash)
        index += 1

    return feed


def _check_numbering(ledger: Ledger) -> None:
    """Checkpoint files are 0000000001.txt, 0000000002.txt, ...: no gap, no other name."""
    if not ledger.checkpoint_dir.is_dir():
        return
    names = sorted(p.name for p in ledger.checkpoint_dir.glob("*.txt"))
    for expected, name in enumerate(names, start=1):
        path = ledger.checkpoint_dir / name
        if not _CHECKPOINT_NAME.fullmatch(name):
            raise VerifyFailure(
                EXIT_CHECKPOINT,
                str(path),
                "not a checkpoint name: expected NNNNNNNNNN.txt (10 digits, from 1)",
            )
        if int(name[:10]) != expected:
            raise VerifyFailure(
                EXIT_CHECKPOINT,
                str(path),
                f"checkpoint {expected:010d}.txt is missing: checkpoints are numbered 1, 2, 3, "
                "... without gaps (one was deleted or renumbered)",
            )


def _check_record(coverage: _Coverage, leaf: dict, index: int) -> int:  # type: ignore[type-arg]
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
        raise VerifyFailure(
            EXIT_LEAF, str(path), f"run record missing: the ledger's verdict leaf {index} names it"
        ) from None
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


def _claim_artifacts(coverage: _Coverage, leaf: dict, index: int) -> None:  # type: ignore[type-arg]
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
            coverage.artifacts.setdefault(path, []).append((value[len("sha256:") :], index))
