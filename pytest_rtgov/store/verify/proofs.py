"""Inclusion proofs: one leaf of the ledger against its latest signed checkpoint.

:func:`inclusion_proof` builds the document ``rtgov prove`` prints
(:data:`PROOF_FORMAT`: the leaf, its index, the RFC 9162 audit path and the signed
checkpoint note); :func:`check_inclusion_proof` checks one offline, as ``rtgov
verify-proof`` does: the checkpoint's signature against the trusted keys, its size, and
the audit path from the leaf to its root. ``rtgov replay`` puts the proof of the
verdict leaf it replayed beside its attestation, checked by the same function.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_rtgov.core import merkle
from pytest_rtgov.core.checkpoints import parse_checkpoint
from pytest_rtgov.core.constants import ExitCode
from pytest_rtgov.core.notes import open_note
from pytest_rtgov.errors import NotFoundError, RtgovError
from pytest_rtgov.store.ledger import Ledger
from pytest_rtgov.store.verify.failures import VerifyFailure

__all__ = ["PROOF_FORMAT", "CheckedProof", "check_inclusion_proof", "inclusion_proof"]

PROOF_FORMAT = "rtgov-inclusion-proof/1"


def inclusion_proof(ledger: Ledger, index: int) -> dict[str, Any]:
    """The proof of leaf ``index`` against the ledger's latest checkpoint (NotFoundError:
    no checkpoint covers it yet)."""
    latest = ledger.latest_checkpoint()
    if latest is None or index >= latest[1].size:
        raise NotFoundError(f"leaf {index} is not covered by a signed checkpoint yet")
    path, body = latest
    hasher = merkle.RangeHasher(merkle.inclusion_proof_ranges(index, body.size))
    leaf = b""
    for frame in ledger.frames():
        if frame.index >= body.size:
            break
        hasher.feed(frame.leaf_hash)
        if frame.index == index:
            leaf = frame.payload
    return {
        "format": PROOF_FORMAT,
        "leaf_index": index,
        "tree_size": body.size,
        "leaf": base64.b64encode(leaf).decode(),
        "leaf_hash": base64.b64encode(merkle.leaf_hash(leaf)).decode(),
        "proof": [base64.b64encode(h).decode() for h in hasher.hashes()],
        "checkpoint": path.read_text(encoding="utf-8"),
    }


@dataclass(frozen=True)
class CheckedProof:
    leaf: bytes
    index: int
    size: int
    signers: tuple[str, ...]


def check_inclusion_proof(proof: Mapping[str, Any], trust: Any, *, where: str) -> CheckedProof:
    """Check ``proof`` (see the module's docstring); a :class:`VerifyFailure` naming
    ``where`` says what failed (exit 16, or 13 for the checkpoint)."""

    def failure(code: ExitCode, reason: str) -> VerifyFailure:
        return VerifyFailure(code, where, reason)

    try:
        if proof.get("format") != PROOF_FORMAT:
            raise failure(ExitCode.PROOF, f"format is not {PROOF_FORMAT!r}")
        leaf = base64.b64decode(proof["leaf"], validate=True)
        path = [base64.b64decode(h, validate=True) for h in proof["proof"]]
        index, size = int(proof["leaf_index"]), int(proof["tree_size"])
        checkpoint_text = str(proof["checkpoint"])
    except (AttributeError, ValueError, KeyError, TypeError) as exc:
        raise failure(ExitCode.PROOF, f"not a readable proof ({exc})") from exc
    try:
        opened = open_note(checkpoint_text, trust.verifiers())
        checkpoint = parse_checkpoint(opened.text)
    except RtgovError as exc:
        raise failure(ExitCode.CHECKPOINT, f"checkpoint: {exc}") from exc
    if trust.required and not any(trust.is_trusted(v) for v in opened.verified_by):
        raise failure(ExitCode.CHECKPOINT, "checkpoint is not signed by a keyring key")
    if checkpoint.size != size:
        raise failure(ExitCode.PROOF, f"tree_size {size} but the checkpoint says {checkpoint.size}")
    try:
        merkle.verify_inclusion(
            index=index,
            size=size,
            leaf_hash=merkle.leaf_hash(leaf),
            proof=path,
            root=checkpoint.root_hash,
        )
    except merkle.MerkleError as exc:
        raise failure(ExitCode.PROOF, str(exc)) from exc
    signers = tuple(sorted(v.name for v in opened.verified_by))
    return CheckedProof(leaf, index, size, signers)
