"""The ledger directory: its files, its checkpoint files and the writer's lock.

:class:`Ledger` names the files of a ledger directory (layout in
:mod:`pytest_rtgov.store.ledger.frames`), reads its frames and checkpoints without a lock, and
hands out one :class:`~pytest_rtgov.store.ledger.writer.LedgerAppender` at a time under
``log.lock`` (:meth:`Ledger.append`), waiting at most :func:`lock_timeout` seconds.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_rtgov.core.checkpoints import Checkpoint, parse_checkpoint
from pytest_rtgov.errors import RtgovError
from pytest_rtgov.logs import log_event
from pytest_rtgov.store.ledger.frames import Frame, LedgerError, TornTail, read_frames

if TYPE_CHECKING:
    from pytest_rtgov.store.ledger.writer import LedgerAppender

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "LOCK_TIMEOUT_ENV",
    "MAX_LOCK_TIMEOUT",
    "Ledger",
    "LedgerLockTimeout",
    "lock_timeout",
    "read_checkpoint_body",
]

DEFAULT_LOCK_TIMEOUT = 60.0  # seconds a writer waits for log.lock (RTGOV_LEDGER_TIMEOUT)
LOCK_TIMEOUT_ENV = "RTGOV_LEDGER_TIMEOUT"


class LedgerLockTimeout(LedgerError):
    """Another writer held ``log.lock`` for longer than the writer's timeout."""


MAX_LOCK_TIMEOUT = 86400.0  # a day: a wait without end is a hang, not a timeout


def lock_timeout(option: float | None = None, environ: dict[str, str] | None = None) -> float:
    """Seconds a writer waits for ``log.lock``: ``option`` (``--rtgov-ledger-timeout``),
    else ``RTGOV_LEDGER_TIMEOUT``, else 60. 0 gives up at once if the lock is held."""
    if option is None:
        raw = (os.environ if environ is None else environ).get(LOCK_TIMEOUT_ENV, "").strip()
        if not raw:
            return DEFAULT_LOCK_TIMEOUT
        try:
            option = float(raw)
        except ValueError:
            option = -1.0
        if not 0 <= option <= MAX_LOCK_TIMEOUT:
            raise LedgerError(
                f"{LOCK_TIMEOUT_ENV}={raw!r}: expected a number of seconds from 0 to "
                f"{MAX_LOCK_TIMEOUT:g} (default {DEFAULT_LOCK_TIMEOUT:g})"
            )
    if not 0 <= option <= MAX_LOCK_TIMEOUT:  # NaN fails both comparisons
        raise LedgerError(
            f"--rtgov-ledger-timeout {option!r}: expected seconds from 0 to {MAX_LOCK_TIMEOUT:g}"
        )
    return float(option)


class Ledger:
    """A ledger directory. Reading needs no lock; appending goes through :meth:`append`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.log_path = directory / "log"
        self.lock_path = directory / "log.lock"
        self.checkpoint_dir = directory / "checkpoints"
        self.torn_dir = directory / "torn"

    def exists(self) -> bool:
        return self.log_path.exists()

    def checkpoint_paths(self) -> list[Path]:
        """Checkpoint files in sequence order."""
        if not self.checkpoint_dir.is_dir():
            return []
        return sorted(p for p in self.checkpoint_dir.glob("*.txt") if p.stem.isdigit())

    def latest_checkpoint(self) -> tuple[Path, Checkpoint] | None:
        """The newest checkpoint file and its body (signatures are not checked here)."""
        paths = self.checkpoint_paths()
        if not paths:
            return None
        return paths[-1], read_checkpoint_body(paths[-1])

    def frames(
        self,
        *,
        on_torn: Callable[[TornTail], None] | None = None,
        start: tuple[int, int] | None = None,
    ) -> Iterator[Frame]:
        if not self.log_path.exists():
            return iter(())
        return read_frames(self.log_path, on_torn=on_torn, start=start)

    @contextmanager
    def append(
        self,
        *,
        timeout: float | None = None,
        on_wait: Callable[[str], None] | None = None,
        sign_uncovered: bool = True,
    ) -> Iterator[LedgerAppender]:
        """Lock, scan and recover the log, and hand out an appender for one batch.

        A lock another writer holds is waited for up to ``timeout`` seconds (see
        :func:`lock_timeout`), with one message naming the holder's pid and since when
        (logged, and passed to ``on_wait``); then :class:`LedgerLockTimeout`."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+b") as lock:
            self._lock(lock, lock_timeout(timeout), on_wait)
            try:
                lock.truncate(0)
                lock.write(f"{os.getpid()} {_utc_now()}\n".encode("ascii"))
                lock.flush()
                from pytest_rtgov.store.ledger.writer import LedgerAppender

                appender = LedgerAppender(self, sign_uncovered=sign_uncovered)
                try:
                    yield appender
                finally:
                    appender.close()
            finally:
                lock.truncate(0)
                _unlock(lock)

    def _lock(
        self, lock: Any, timeout: float, on_wait: Callable[[str], None] | None
    ) -> None:
        if _try_lock(lock):
            return
        holder = self.lock_holder()
        message = (
            f"{self.lock_path}: waiting for the ledger lock, held by {holder} "
            f"(giving up after {timeout:g} s)"
        )
        log_event(
            "ledger.lock_wait", level=logging.WARNING, path=str(self.lock_path), holder=holder
        )
        if on_wait is not None:
            on_wait(message)
        deadline = time.monotonic() + timeout
        pause = 0.01
        while True:
            if _try_lock(lock):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.25)
        raise LedgerLockTimeout(
            f"{self.lock_path}: gave up after {timeout:g} s waiting for the ledger lock, held "
            f"by {self.lock_holder()}: a stopped or hung writer? Resume or end it; "
            f"--rtgov-ledger-timeout or {LOCK_TIMEOUT_ENV} set how long to wait"
        )

    def lock_holder(self) -> str:
        """``pid N since TIME`` as the holder wrote it into ``log.lock``, if it did."""
        try:
            fields = self.lock_path.read_text(encoding="ascii", errors="replace").split()
        except OSError:
            fields = []
        if len(fields) == 2 and fields[0].isdigit():
            return f"pid {fields[0]} since {fields[1]}"
        return "a process that did not say who it is"


def _try_lock(lock: Any) -> bool:
    """Take the exclusive lock on the open file ``lock`` if no one holds it.

    portalocker: ``flock`` on POSIX (so a writer of an older version, or ``flock(1)``,
    excludes it as before), ``LockFileEx``/``msvcrt.locking`` on Windows
    (docs/ledger.md "Files"). Imported here: a session pays for it when it appends."""
    import portalocker

    try:
        portalocker.lock(lock, portalocker.LockFlags.EXCLUSIVE | portalocker.LockFlags.NON_BLOCKING)
    except portalocker.AlreadyLocked:
        return False
    except portalocker.LockException as exc:  # not "held": the system's own error, as before
        cause = exc.__cause__
        raise (cause if isinstance(cause, OSError) else OSError(str(exc))) from None
    return True


def _unlock(lock: Any) -> None:
    import portalocker

    portalocker.unlock(lock)


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def read_checkpoint_body(path: Path) -> Checkpoint:
    """The checkpoint inside a signed note file (the text before the blank line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LedgerError(f"{path}: cannot read checkpoint ({exc})") from exc
    body, sep, _ = text.partition("\n\n")
    if not sep:
        raise LedgerError(f"{path}: expected a signed note (checkpoint, blank line, signatures)")
    try:
        return parse_checkpoint(body + "\n")
    except RtgovError as exc:
        raise LedgerError(f"{path}: {exc}") from exc
