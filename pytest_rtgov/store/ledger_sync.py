"""``rtgov ledger push|pull URL``: one ordered ledger for a team, checked both ways.

A push publishes the local ledger only when the shared one is a prefix of it; a pull
takes the shared one only when it extends the local one. Either way the shared log is
first checked against its own signed checkpoint (every frame, every leaf parsed, the
root at the checkpoint's size; the signature by a trusted key, as ``rtgov verify``
trusts), then an RFC 9162 consistency proof from the smaller checkpoint to the larger
one is generated from the larger log and verified against both signed roots. Two
histories neither of which extends the other are a fork, refused naming both
checkpoints (exit 14). The storage and its conditional write: :mod:`.ledger_remote`.
Run records, artifacts and the object store stay where they were made.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from pytest_rtgov.core import merkle
from pytest_rtgov.core.checkpoints import Checkpoint, parse_checkpoint
from pytest_rtgov.core.constants import ExitCode
from pytest_rtgov.core.ledger_records import LeafFormatError, parse_leaf
from pytest_rtgov.core.notes import open_note
from pytest_rtgov.errors import IntegrityError, NotFoundError, RefusedError, RtgovError
from pytest_rtgov.store.keys import Trust
from pytest_rtgov.store.ledger import Ledger, LedgerCorruptError, scan_frames
from pytest_rtgov.store.ledger_remote import HEAD, Head, SharedPlace, log_name
from pytest_rtgov.store.verify.failures import (
    EXIT_CHECKPOINT,
    EXIT_FRAME,
    EXIT_LEAF,
    EXIT_ROOT,
    VerifyFailure,
)

__all__ = [
    "ForkError",
    "SyncRefused",
    "SyncResult",
    "Tip",
    "check_log",
    "consistent",
    "fetch_shared",
    "fork",
    "make_prover",
    "open_checkpoint",
    "pulled_mark",
    "push",
    "write_pulled_mark",
]

_MAX_NOTE = 64 * 1024  # a checkpoint is a few hundred bytes
_FETCH_TRIES = 5  # checkpoints replaced while their log was being fetched
PULLED = "pulled.json"  # in the ledger directory: how many leaves came from where


def write_pulled_mark(ledger: Ledger, size: int, url: str) -> None:
    """Leaves below ``size`` came from ``url``: their run records and artifacts may stay
    where their sessions ran (``rtgov verify`` notes them, checks those present)."""
    from pytest_rtgov.core.canonical import canonical_json
    from pytest_rtgov.store.files import atomic_write

    atomic_write(ledger.directory / PULLED, canonical_json({"size": size, "url": url}))


def pulled_mark(ledger: Ledger) -> tuple[int, str]:
    """(size, url) of the last pull, or (0, "") (a damaged mark: nothing excused)."""
    import json

    try:
        mark = json.loads((ledger.directory / PULLED).read_bytes())
        size, url = mark["size"], mark["url"]
    except (OSError, ValueError, TypeError, KeyError):
        return 0, ""
    if type(size) is not int or type(url) is not str or size < 0:
        return 0, ""
    return size, url


class SyncRefused(RefusedError):
    """The shared ledger moved (another push won), or is ahead: pull, then push (exit 5)."""

    exit_code = ExitCode.REFUSED


class ForkError(IntegrityError):
    """Neither history extends the other (exit 14, a consistency proof fails)."""

    exit_code = ExitCode.HISTORY


@dataclass(frozen=True)
class Tip:
    """A signed checkpoint and where it was read."""

    where: str
    checkpoint: Checkpoint

    def describe(self) -> str:
        cp = self.checkpoint
        return f"{self.where} (tree size {cp.size}, root {cp.root_hash.hex()})"


@dataclass(frozen=True)
class SyncResult:
    """``status``: pushed, pulled, up to date, ahead (pull: push yours), behind (push:
    pull first), or empty (pull: nothing shared yet)."""

    status: str
    local: Tip | None
    shared: Tip | None


def open_checkpoint(note: bytes, where: str, trust: Trust) -> Checkpoint:
    """A signed checkpoint note, signed by a key ``trust`` accepts (as verify does)."""
    if len(note) > _MAX_NOTE:
        raise VerifyFailure(EXIT_CHECKPOINT, where, f"larger than {_MAX_NOTE} bytes")
    try:
        opened = open_note(note, trust.verifiers())
        body = parse_checkpoint(opened.text)
    except RtgovError as exc:
        raise VerifyFailure(
            EXIT_CHECKPOINT, where, f"not a trusted signed checkpoint: {exc}"
        ) from exc
    if trust.required and not any(trust.is_trusted(v) for v in opened.verified_by):
        names = ", ".join(sorted(v.name for v in opened.verified_by))
        raise VerifyFailure(
            EXIT_CHECKPOINT,
            where,
            f"signed only by {names}, which the keyring {trust.keyring_path} does not list "
            "(signatures are required)",
        )
    return body


def check_log(
    path: Path,
    where: str,
    tip: Tip,
    prover: merkle.ConsistencyProver | None = None,
    hashes: list[bytes] | None = None,
) -> int:
    """Every frame of ``path`` up to the checkpoint's size checked and parsed, the root at
    that size compared; feeds ``prover``, collects the leaf hashes in ``hashes``. Returns
    the byte offset just past that size."""
    size, root = tip.checkpoint.size, tip.checkpoint.root_hash
    tree = merkle.MerkleAccumulator()
    end = 0
    first = prover.size1 if prover else 0
    needed = first + prover.needed if prover else 0
    try:
        for frame in scan_frames(path, tree=tree):
            try:
                parse_leaf(frame.payload)
            except LeafFormatError as exc:
                raise VerifyFailure(EXIT_LEAF, f"{where}: leaf {frame.index}", str(exc)) from exc
            if hashes is not None:
                hashes.append(frame.leaf_hash)
            if prover is not None:
                if tree.size == first:
                    prover.take_compact_range(tree.compact_range())
                elif first <= frame.index < needed:
                    prover.feed(frame.leaf_hash)
            if tree.size == size:
                end = frame.end
                break
    except LedgerCorruptError as exc:
        raise VerifyFailure(EXIT_FRAME, f"{where}: byte {exc.offset}", exc.reason) from exc
    if tree.size < size:
        raise VerifyFailure(
            EXIT_ROOT, where, f"has {tree.size} leaves, but {tip.describe()} covers {size}"
        )
    if tree.root() != root:
        raise VerifyFailure(
            EXIT_ROOT,
            f"{where}: leaves 0..{size - 1}",
            f"hash to {tree.root().hex()}, not the root {tip.describe()} signs: the log was "
            "changed",
        )
    return end


def consistent(older: Tip, newer: Tip, prover: merkle.ConsistencyProver | None) -> bool:
    """The RFC 9162 proof from ``older`` to ``newer`` verifies against both signed roots."""
    a, b = older.checkpoint, newer.checkpoint
    if a.size == b.size:
        return a.root_hash == b.root_hash
    if prover is None:
        return False
    try:
        merkle.verify_consistency(
            size1=a.size, size2=b.size, proof=prover.proof(), root1=a.root_hash, root2=b.root_hash
        )
    except merkle.MerkleError:
        return False
    return True


def make_prover(older: Checkpoint, newer: Checkpoint) -> merkle.ConsistencyProver | None:
    return merkle.ConsistencyProver(older.size, newer.size) if 0 < older.size < newer.size else None


def fork(local: Tip, shared: Tip) -> ForkError:
    return ForkError(
        f"the shared ledger and this one have forked: neither extends the other (the RFC "
        f"9162 consistency proof fails). Local: {local.describe()}; shared: "
        f"{shared.describe()}. Keep one history: the runs of the other are not in it"
    )


def _local_tip(ledger: Ledger, trust: Trust) -> tuple[Tip, bytes] | None:
    latest = ledger.checkpoint_paths()
    if not ledger.exists() or not latest:
        return None
    note = latest[-1].read_bytes()[: _MAX_NOTE + 1]
    return Tip(str(latest[-1]), open_checkpoint(note, str(latest[-1]), trust)), note


def fetch_shared(
    place: SharedPlace, trust: Trust, dest: Path, head: Head | None = None
) -> tuple[Tip, Head, str] | None:
    """The shared checkpoint (signature checked) and its log copied to ``dest``; None when
    nothing is shared yet. A log gone because pushes replaced the checkpoint meanwhile
    (each keeps only its own and the previous log) is fetched again from the new one."""
    for _ in range(_FETCH_TRIES):
        head = head or place.read_head()
        if head is None:
            return None
        where = place.where(HEAD)
        tip = Tip(where, open_checkpoint(head.note, where, trust))
        name = log_name(tip.checkpoint)
        if place.get_log(name, dest):
            return tip, head, place.where(name)
        now = place.read_head()
        if now is not None and now.version == head.version:
            break
        head = now
    raise VerifyFailure(EXIT_ROOT, place.where(name), f"missing, but {tip.describe()} names it")


def push(ledger: Ledger, place: SharedPlace, trust: Trust) -> SyncResult:
    """Publish the local ledger at ``place`` if the shared one is a prefix of it."""
    found = _local_tip(ledger, trust)
    if found is None:
        raise NotFoundError(
            f"no signed ledger in {ledger.directory}: nothing to push (a session, or "
            f"`rtgov ledger pull {place.url}`, makes one)"
        )
    local, local_note = found
    with tempfile.TemporaryDirectory(prefix="rtgov-push-") as tmp:
        shared, head = None, None
        shared_hashes: list[bytes] = []
        copy = Path(tmp) / "shared.log"
        shared_found = fetch_shared(place, trust, copy)
        if shared_found is not None:
            shared, head, where = shared_found
            prover = make_prover(local.checkpoint, shared.checkpoint)
            check_log(copy, where, shared, prover, shared_hashes)  # matches its checkpoint
            if local.checkpoint == shared.checkpoint or (
                shared.checkpoint.size == local.checkpoint.size
                and consistent(shared, local, None)
            ):
                return SyncResult("up to date", local, shared)
            if shared.checkpoint.size > local.checkpoint.size and consistent(
                local, shared, prover
            ):
                raise SyncRefused(
                    f"the shared ledger {shared.describe()} has "
                    f"{shared.checkpoint.size - local.checkpoint.size} leaves this one "
                    f"({local.describe()}) lacks: `rtgov ledger pull {place.url}`, then push"
                )
        prover = make_prover(shared.checkpoint, local.checkpoint) if shared else None
        local_hashes: list[bytes] = []
        end = check_log(ledger.log_path, str(ledger.log_path), local, prover, local_hashes)
        if shared is not None and not consistent(shared, local, prover):
            _diverged(place, local, shared, local_hashes, shared_hashes)
        upload = Path(tmp) / "local.log"
        _copy_prefix(ledger.log_path, upload, end)
        name = log_name(local.checkpoint)
        place.put_log(name, upload)
        if not place.commit_head(local_note, head):
            now = place.read_head()
            if now is None or now.note != local_note:
                place.delete(name)
            raise SyncRefused(
                f"another push replaced {place.where(HEAD)} since it was read: this push did "
                f"not land. `rtgov ledger pull --rebase {place.url}` (this ledger's own "
                "leaves after the shared ones), then push again"
            )
        keep = {name} | ({log_name(shared.checkpoint)} if shared else set())
        for other in place.logs():  # older logs: every later log holds them
            if other not in keep:
                place.delete(other)
    return SyncResult("pushed", local, shared)


def _diverged(
    place: SharedPlace, local: Tip, shared: Tip, mine: list[bytes], theirs: list[bytes]
) -> NoReturn:
    """Both logs have leaves the other lacks: after a common start, the shared ledger moved
    on since the last pull (exit 5: pull --rebase, then push); else a fork (exit 14)."""
    common = 0
    for a, b in zip(mine, theirs, strict=False):
        if a != b:
            break
        common += 1
    if not common:
        raise fork(local, shared)
    raise SyncRefused(
        f"the shared ledger moved on since this one last matched it: both share their first "
        f"{common} leaves, then differ. Local: {local.describe()}; shared: "
        f"{shared.describe()}. `rtgov ledger pull --rebase {place.url}` appends this "
        "ledger's own leaves after the shared ones; then push again"
    )


def _copy_prefix(source: Path, dest: Path, end: int) -> None:
    with open(source, "rb") as src, open(dest, "wb") as out:
        left = end
        while left:
            chunk = src.read(min(left, 1 << 20))
            if not chunk:
                raise LedgerCorruptError(source, end - left, None, "the log ended while copied")
            out.write(chunk)
            left -= len(chunk)
