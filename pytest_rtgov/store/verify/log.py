"""``rtgov verify``, the log and its leaves: one streaming pass over the ledger.

Each frame's leaf hash is recomputed, the Merkle root is checked at every checkpoint's
size, the consistency proofs an outside auditor needs are generated from the same pass
and verified, a trusted earlier checkpoint must be a prefix of the log, and every leaf
is parsed (canonical JSON of a known kind). Verdict leaves hand their run record, test
and fixture leaves their artifacts, to :mod:`.records` as the pass goes by.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pytest_rtgov.core import merkle
from pytest_rtgov.core.checkpoints import Checkpoint, parse_checkpoint
from pytest_rtgov.core.ledger_records import LeafFormatError, parse_leaf
from pytest_rtgov.core.notes import open_note
from pytest_rtgov.errors import RtgovError
from pytest_rtgov.store.keys import Trust
from pytest_rtgov.store.ledger import Ledger, LedgerCorruptError, LedgerError, TornTail, scan_frames
from pytest_rtgov.store.verify.failures import (
    EXIT_CHECKPOINT,
    EXIT_FRAME,
    EXIT_HISTORY,
    EXIT_LEAF,
    EXIT_ROOT,
    VerifyFailure,
    VerifyReport,
)
from pytest_rtgov.store.verify.records import (
    Coverage,
    check_record,
    claim_artifacts,
    note_prune,
    settle_pruned,
)

__all__ = ["verify_ledger"]

_CHECKPOINT_NAME = re.compile(r"[0-9]{10}\.txt")
_ARTIFACT_MARK = b'"artifact:'


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


def verify_ledger(
    ledger: Ledger, trust: Trust, since: Path | None, coverage: Coverage, report: VerifyReport
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
                    report.records_checked += check_record(coverage, leaf, index)
                elif _ARTIFACT_MARK in payload and kind in ("test", "fixture"):
                    claim_artifacts(coverage, leaf, index)
                elif kind == "prune":
                    note_prune(coverage, leaf, index)
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
    settle_pruned(coverage, report)  # records missing at their verdict leaf: pruned since?

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
