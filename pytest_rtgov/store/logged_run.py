"""A run record written under the ledger's lock and logged, saying the final exit status.

One guarantee for every writer of a run (a pytest session, ``rtgov merge``): the exit
status a ledger failure sets (7) is decided into the record, so the record on disk says
what the process exits with. :func:`write_and_log` writes the record once the ledger was
opened, scanned and recovered (:func:`pytest_rtgov.store.ledger.append_session` calls it
there), then appends its leaves and a signed checkpoint. A ledger that cannot be opened
fails before the record is written, which then says exit 7; an append that fails after
it rewrites it, atomically. A gated record's verdict becomes
:meth:`~pytest_rtgov.core.verdict.Verdict.with_ledger_failure` (``error``, the reason as
a note); an ungated record only takes the exit status.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_rtgov.core.constants import EXIT_INTEGRITY
from pytest_rtgov.core.keys import Signer
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.core.verdict import Verdict
from pytest_rtgov.errors import RtgovError
from pytest_rtgov.store.ledger import AppendResult, Ledger, append_session

__all__ = ["LoggedRun", "WriteRecord", "ledger_failure", "write_and_log"]

# Writes a run record (atomically) and returns the path and the bytes written, which the
# ledger's leaves pin. What it raises propagates from :func:`write_and_log` as it is.
WriteRecord = Callable[[RunRecord], tuple[Path, bytes]]


@dataclass
class LoggedRun:
    """What :func:`write_and_log` did: the record and verdict as last written, and the
    ledger's answer (``result``) or its failure (``error``)."""

    record: RunRecord
    verdict: Verdict | None
    path: Path | None = None
    run_leaves: list[bytes] | None = None  # the record's leaves, as appended or cut
    result: AppendResult | None = None
    error: str | None = None  # why the ledger was not appended; the record says exit 7
    rewritten: bool = False  # written before the ledger failed, then rewritten


def ledger_failure(
    record: RunRecord, verdict: Verdict | None, reason: str
) -> tuple[RunRecord, Verdict | None]:
    """The record (and verdict) of a run whose ledger append failed: exit 7."""
    if verdict is None:
        return dataclasses.replace(record, exit_status=int(EXIT_INTEGRITY)), None
    failed = verdict.with_ledger_failure(f"ledger not appended: {reason}")
    return failed.stamp(record), failed


def write_and_log(
    ledger: Ledger,
    record: RunRecord,
    verdict: Verdict | None,
    write: WriteRecord,
    *,
    signer: Callable[[], Signer],
    origin: str,
    extra_leaves: Sequence[bytes] = (),
    on_failure: Callable[[LoggedRun], None] | None = None,
    fsync_each: bool = True,
    lock_timeout: float | None = None,
    on_wait: Callable[[str], None] | None = None,
    sign_uncovered: bool | Callable[[], bool] = True,
) -> LoggedRun:
    """Write ``record`` under the ledger's lock, then append its leaves, ``extra_leaves``
    (a session's baseline changes) and a signed checkpoint.

    When the ledger fails (a :class:`~pytest_rtgov.errors.RtgovError` or an OSError of
    its own), the record is decided again with :func:`ledger_failure`, ``on_failure``
    sees that decision (``error`` the reason, ``record`` and ``verdict`` saying exit 7)
    before the record is written (or rewritten) so. What ``write`` raises propagates unchanged, with
    nothing appended. ``signer`` gives the key that signs the checkpoint, called before
    the ledger is opened, as is ``sign_uncovered`` when it is a function: a key or keyring
    that fails to load then (a session loads its keys when first used) is a ledger failure
    too. The other arguments are :func:`append_session`'s.
    """
    from pytest_rtgov.core.ledger_records import run_leaves

    logged = LoggedRun(record=record, verdict=verdict)
    writing = False

    def write_then_leaves() -> Sequence[bytes]:
        # Called once the ledger is locked, scanned and recovered: it can take them.
        nonlocal writing
        writing = True
        logged.path, encoded = write(logged.record)
        writing = False
        logged.run_leaves = run_leaves(logged.record, encoded=encoded)
        return [*logged.run_leaves, *extra_leaves]

    try:
        key = signer()
        uncovered = sign_uncovered() if callable(sign_uncovered) else sign_uncovered
        logged.result = append_session(
            ledger,
            write_then_leaves,
            signer=key,
            origin=origin,
            created_at=record.ended_at,
            fsync_each=fsync_each,
            lock_timeout=lock_timeout,
            on_wait=on_wait,
            sign_uncovered=uncovered,
        )
    except (RtgovError, OSError) as exc:
        if writing:  # the record's own write failed: not the ledger's failure
            raise
        logged.error = str(exc)
        logged.rewritten = logged.path is not None
        logged.record, logged.verdict = ledger_failure(logged.record, logged.verdict, str(exc))
        if on_failure is not None:
            on_failure(logged)
        logged.path, _ = write(logged.record)
    return logged
