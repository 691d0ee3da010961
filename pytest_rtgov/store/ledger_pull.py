"""``rtgov ledger pull URL [--rebase]``: the shared ledger taken into the state directory,
under the ledger's lock, only when it consistently extends the local one.

The shared log is checked against its signed checkpoint first (no lock held), then,
under ``log.lock``: the local log against its latest checkpoint (the writer's scan), the
RFC 9162 consistency proof from the local checkpoint to the shared one, and the log
replaced in one rename, the shared checkpoint becoming the next local one.

``--rebase`` is the way back after a lost push race: leaves this ledger holds past the
last leaf it shares with the shared log (its own sessions since it last pulled) are
appended again after the shared log's leaves, and the result is signed by this
runner's key. The local checkpoints that signed them at their old places are set aside
in ``ledger/rebased/<time>/``, never deleted. Two ledgers with different genesis leaves
are not rebased: nothing is shared.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from pytest_rtgov.core.checkpoints import Checkpoint, format_checkpoint
from pytest_rtgov.core.keys import Signer
from pytest_rtgov.core.merkle import MerkleAccumulator
from pytest_rtgov.core.notes import sign_note
from pytest_rtgov.store.keys import Trust
from pytest_rtgov.store.ledger import Ledger, LedgerAppender, read_checkpoint_body, scan_frames
from pytest_rtgov.store.ledger.recovery import _fsync_dir
from pytest_rtgov.store.ledger_remote import SharedPlace
from pytest_rtgov.store.ledger_sync import (
    SyncRefused,
    SyncResult,
    Tip,
    check_log,
    consistent,
    fetch_shared,
    fork,
    make_prover,
    write_pulled_mark,
)

__all__ = ["pull"]


def pull(
    ledger: Ledger, place: SharedPlace, trust: Trust, *, rebase: Signer | None = None
) -> SyncResult:
    """Take the shared ledger at ``place`` if it extends the local one; with ``rebase``
    (a signer), also when the local one has leaves of its own after a common prefix."""
    head = place.read_head()
    if head is None:
        return SyncResult("empty", None, None)
    ledger.directory.mkdir(parents=True, exist_ok=True)
    # atomic_write's temporary name: swept once stale, reported by verify until then
    fd, name = tempfile.mkstemp(
        prefix=f".pull.{os.getpid()}.", suffix=".rtgov-tmp", dir=ledger.directory
    )
    os.close(fd)
    temp = Path(name)
    try:
        found = fetch_shared(place, trust, temp, head)
        if found is None:  # removed since: nothing to pull
            return SyncResult("empty", None, None)
        shared, head, where = found
        note = head.note
        shared_hashes: list[bytes] = []
        end = check_log(temp, where, shared, hashes=shared_hashes)  # before taking the lock
        with ledger.append() as appender:  # the lock; the local log checked, torn tails aside
            if appender.uncovered is not None:
                start, stop = appender.uncovered
                raise SyncRefused(
                    f"{ledger.log_path}: leaves {start}..{stop - 1} are signed by no checkpoint "
                    "(an interrupted session): `rtgov ledger recover` signs them; then pull"
                )
            latest = ledger.latest_checkpoint()
            local = Tip(str(latest[0]), latest[1]) if latest and appender.size else None
            if local is None:
                status = "pulled"
            elif local.checkpoint.size >= shared.checkpoint.size:
                prover = make_prover(shared.checkpoint, local.checkpoint)
                local_hashes: list[bytes] = []
                check_log(ledger.log_path, str(ledger.log_path), local, prover, local_hashes)
                if not consistent(shared, local, prover):
                    return _rebase(place, ledger, appender, temp, end, shared, local, local_hashes,
                                   shared_hashes, note, rebase)  # fmt: skip
                same = local.checkpoint.size == shared.checkpoint.size
                return SyncResult("up to date" if same else "ahead", local, shared)
            else:
                prover = make_prover(local.checkpoint, shared.checkpoint)
                check_log(temp, where, shared, prover)
                if not consistent(local, shared, prover):
                    local_hashes = []
                    check_log(ledger.log_path, str(ledger.log_path), local, None, local_hashes)
                    return _rebase(place, ledger, appender, temp, end, shared, local, local_hashes,
                                   shared_hashes, note, rebase)  # fmt: skip
                status = "pulled"
            _truncate(temp, end)  # leaves past the shared checkpoint are not taken
            appender.close()  # the old log's handle (Windows replaces no open file)
            os.replace(temp, ledger.log_path)
            _fsync_dir(ledger.directory)
            appender.write_checkpoint(note.decode("utf-8"))
            write_pulled_mark(ledger, shared.checkpoint.size, place.url)
        return SyncResult(status, local, shared)
    finally:
        temp.unlink(missing_ok=True)


def _truncate(path: Path, end: int) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(end)
        fh.flush()
        os.fsync(fh.fileno())


def _rebase(
    place: SharedPlace,
    ledger: Ledger,
    appender: LedgerAppender,
    temp: Path,
    end: int,
    shared: Tip,
    local: Tip,
    local_hashes: list[bytes],
    shared_hashes: list[bytes],
    note: bytes,
    signer: Signer | None,
) -> SyncResult:
    """The shared log, then the local leaves after the last one both logs share, signed."""
    common = 0
    for mine, theirs in zip(local_hashes, shared_hashes, strict=False):
        if mine != theirs:
            break
        common += 1
    if signer is None or common == 0:
        error = fork(local, shared)
        if common:
            error.args = (
                f"{error.args[0]}. Both share their first {common} leaves: `rtgov ledger pull "
                "--rebase URL` appends this ledger's other "
                f"{local.checkpoint.size - common} after the shared ones, signed by your key",
            )
        raise error
    start = next(scan_frames(ledger.log_path, select=(), indices=(common,))).offset
    _truncate(temp, end)
    tree = MerkleAccumulator()
    for leaf_hash in shared_hashes:
        tree.append_leaf_hash(leaf_hash)
    with open(ledger.log_path, "rb") as src, open(temp, "ab") as out:
        src.seek(start)
        left = _end_of(ledger.log_path, local.checkpoint.size) - start
        while left:
            chunk = src.read(min(left, 1 << 20))
            out.write(chunk)
            left -= len(chunk)
        out.flush()
        os.fsync(out.fileno())
    for leaf_hash in local_hashes[common:]:
        tree.append_leaf_hash(leaf_hash)
    body = Checkpoint(origin=shared.checkpoint.origin, size=tree.size, root_hash=tree.root())
    signed = sign_note(format_checkpoint(body), [signer])
    aside = ledger.directory / "rebased" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside.mkdir(parents=True, exist_ok=True)
    for path in ledger.checkpoint_paths():  # kept: those of the leaves both logs share
        if read_checkpoint_body(path).size > common:
            os.replace(path, aside / path.name)
    appender.close()
    os.replace(temp, ledger.log_path)
    _fsync_dir(ledger.directory)
    appender.write_checkpoint(note.decode("utf-8"))
    written = appender.write_checkpoint(signed)
    write_pulled_mark(ledger, shared.checkpoint.size, place.url)
    return SyncResult("rebased", Tip(str(written), body), shared)


def _end_of(path: Path, size: int) -> int:
    return next(scan_frames(path, select=(), indices=(size - 1,))).end
