"""``rtgov verify``: everything the ledger, its checkpoints and the sealed files claim.

One streaming pass over the log, memory independent of its length: each frame's
leaf hash is recomputed, the Merkle root is checked at every checkpoint's size, the
consistency proof between successive checkpoints is generated from the same pass
and verified, and a trusted earlier checkpoint must be a prefix of the log. Then the
run records named by verdict leaves, the baseline seal and every artifact seal.

The first failure stops the check and names the frame, leaf, checkpoint or file.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pytest_rtgov.core import merkle, note
from pytest_rtgov.core.ledger_records import LeafFormatError, parse_leaf
from pytest_rtgov.errors import RtgovError
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
EXIT_FRAME = 10  # a frame does not check (header CRC, leaf hash, not a ledger)
EXIT_LEAF = 11  # a leaf is not canonical JSON of a known kind, or a record file differs
EXIT_ROOT = 12  # the log does not hash to a signed root: leaves edited, removed, reordered
EXIT_CHECKPOINT = 13  # a checkpoint is malformed, unsigned, untrusted or out of order
EXIT_HISTORY = 14  # a consistency proof fails, or the trusted checkpoint is no prefix
EXIT_SEAL = 15  # a baseline or artifact file does not match its signed seal

_VERDICT_PREFIX = b'{"exit_status":'


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
    body: note.Checkpoint


def _open_checkpoint(path: Path, trust: Trust, report: VerifyReport) -> note.Checkpoint:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise VerifyFailure(EXIT_CHECKPOINT, str(path), f"unreadable ({exc})") from exc
    try:
        opened = note.open_note(text, trust.verifiers())
        body = note.parse_checkpoint(opened.text)
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


def verify_all(
    state_dir: Path,
    trust: Trust,
    *,
    since: Path | None = None,
    baseline_dir: Path | None = None,
) -> VerifyReport:
    report = VerifyReport()
    ledger = Ledger(state_dir / "ledger")
    if ledger.exists():
        _verify_ledger(ledger, trust, since, state_dir, report)
    elif since is not None:
        raise VerifyFailure(EXIT_HISTORY, str(ledger.log_path), "no ledger, but --since was given")
    else:
        report.warnings.append(f"{ledger.log_path}: no ledger yet")
    if baseline_dir is not None and baseline_dir.is_dir() and any(baseline_dir.iterdir()):
        _verify_baseline(baseline_dir, trust, report)
    for envelope in sorted((state_dir / "artifacts").rglob(f"*{ENVELOPE_SUFFIX}")):
        target = envelope.with_name(envelope.name[: -len(ENVELOPE_SUFFIX)])
        try:
            check = check_seal(
                target.parent,
                envelope,
                trust,
                predicate_type=ARTIFACT_PREDICATE,
                expect_all=[target.name],
            )
        except SealError as exc:
            raise VerifyFailure(EXIT_SEAL, str(exc.path), exc.reason) from exc
        _warn_untrusted(check.trusted, check.signed_by, envelope, trust, report)
        report.seals_checked += 1
    return report


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


def _verify_baseline(directory: Path, trust: Trust, report: VerifyReport) -> None:
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


def _verify_ledger(
    ledger: Ledger, trust: Trust, since: Path | None, state_dir: Path, report: VerifyReport
) -> None:
    checkpoints = []
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
    runs = state_dir / "runs"
    # One pass checks every frame and streams the tree and the proof hashes; only leaf 0,
    # the verdict leaves and the leaves that end a checkpoint come back here.
    # Canonical JSON sorts keys, so a verdict leaf, and only it, starts with
    # "exit_status"; parse_leaf confirms. Leaf 0 is the genesis.
    frames = scan_frames(
        ledger.log_path,
        on_torn=torn.append,
        select=_VERDICT_PREFIX,
        indices=[0, *(size - 1 for size in wanted if size > 0)],
        tree=tree,
        feed=_feeder(provers),
        feed_from=min((p.size1 for p in provers), default=0),
        feed_below=max((p.size1 + p.needed for p in provers), default=0),
    )
    try:
        for index, _offset, _leaf_hash, payload in frames:
            if index == 0 or payload.startswith(_VERDICT_PREFIX):
                leaf = _parse(payload, index, ledger)
                if index == 0:
                    if leaf["kind"] != "ledger":
                        raise VerifyFailure(
                            EXIT_LEAF, f"{ledger.log_path}: leaf 0", "expected the ledger genesis"
                        )
                    origin = str(leaf["origin"])
                elif leaf["kind"] == "verdict":
                    # Checked now, not collected: memory must not grow with the sessions.
                    report.records_checked += _check_record(runs, leaf, index)
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
                            f"{ledger.log_path}: leaves 0..{tree.size - 1}",
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


def _check_record(runs: Path, leaf: dict, index: int) -> int:  # type: ignore[type-arg]
    """1 if the run record file of a verdict leaf exists and matches it, 0 if absent."""
    from pytest_rtgov.core.canonical import canonical_json
    from pytest_rtgov.store.files import read_json

    path = runs / f"{leaf['run_id']}.json"
    if not path.is_file():
        return 0
    try:
        actual = "sha256:" + hashlib.sha256(canonical_json(read_json(path))).hexdigest()
    except (RtgovError, ValueError) as exc:
        raise VerifyFailure(EXIT_LEAF, str(path), f"unreadable run record ({exc})") from exc
    if actual != leaf["record_sha256"]:
        raise VerifyFailure(
            EXIT_LEAF,
            str(path),
            f"differs from the run record the ledger holds (leaf {index}): the file was edited",
        )
    return 1


def _parse(payload: bytes, index: int, ledger: Ledger) -> dict:  # type: ignore[type-arg]
    try:
        return parse_leaf(payload)
    except LeafFormatError as exc:
        raise VerifyFailure(EXIT_LEAF, f"{ledger.log_path}: leaf {index}", str(exc)) from exc
