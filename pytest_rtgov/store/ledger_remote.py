"""The shared ledger's place (``rtgov ledger push|pull URL``): its layout in a directory or
any fsspec storage, and the one conditional write that decides which push wins.

Layout under the URL (docs/ledger.md "A shared ledger")::

    checkpoint                        the head: the latest pushed checkpoint, a signed note
    logs/<size>-<root hex>.log        a log (the local ``log``'s bytes) whose first <size>
                                      leaves hash to <root>; written whole before the head
                                      names it, never rewritten
    push.lock                         (a directory only) held while a pusher compares and
                                      replaces the head

A push uploads its log under a name no other content has, then replaces the head only
if the head is still the one it read: on S3 a ``PutObject`` with ``If-Match`` on the
ETag it read (``If-None-Match: *`` for the first push); in a directory (a path, or
``file://``: a local or shared filesystem) a comparison and an atomic rename under
``push.lock`` (portalocker, as the ledger's own lock). So of two pushers that read the
same head exactly one replaces it; the other is told so (:meth:`commit_head` is False).
Other fsspec storages can be pulled from but not pushed to: rtgov uses no conditional
write of theirs yet (:class:`PushUnsupportedError`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_rtgov.core.checkpoints import Checkpoint
from pytest_rtgov.errors import InvalidOptionError
from pytest_rtgov.store.files import atomic_write
from pytest_rtgov.store.stage_remote import FsspecBackend

__all__ = ["HEAD", "Head", "PushUnsupportedError", "SharedPlace", "log_name", "open_shared"]

HEAD = "checkpoint"
LOCK = "push.lock"
_LOST = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")


class PushUnsupportedError(InvalidOptionError):
    """A storage rtgov knows no conditional write of: it can be pulled from, not pushed to."""


@dataclass(frozen=True)
class Head:
    """The head's bytes and the version they were read at (an ETag, or their sha256)."""

    note: bytes
    version: str


def log_name(checkpoint: Checkpoint) -> str:
    return f"logs/{checkpoint.size:010d}-{checkpoint.root_hash.hex()}.log"


class SharedPlace:
    """What push and pull need of the storage; :func:`open_shared` picks the kind."""

    url: str

    def where(self, rel: str) -> str:
        return f"{self.url.rstrip('/')}/{rel}"

    def read_head(self) -> Head | None:
        raise NotImplementedError

    def commit_head(self, note: bytes, expected: Head | None) -> bool:
        """Replace the head with ``note`` if it is still ``expected`` (None: absent)."""
        raise NotImplementedError

    def get_log(self, rel: str, dest: Path) -> bool:
        """Copy a log to ``dest``; False when it is not there."""
        raise NotImplementedError

    def put_log(self, rel: str, source: Path) -> None:
        raise NotImplementedError

    def logs(self) -> list[str]:
        raise NotImplementedError

    def delete(self, rel: str) -> None:
        raise NotImplementedError


def open_shared(url: str) -> SharedPlace:
    """A directory for a path or ``file://`` URL, else fsspec (a missing driver is a
    :class:`~pytest_rtgov.extras.MissingExtraError` naming ``[remote]``, exit 2)."""
    if url.startswith("file://"):
        return DirectoryPlace(url, Path(url[len("file://") :]))
    if "://" not in url:
        return DirectoryPlace(url, Path(url))
    return FsspecPlace(url)


class DirectoryPlace(SharedPlace):
    """A local or shared filesystem: atomic renames, and ``push.lock`` around the head."""

    def __init__(self, url: str, root: Path) -> None:
        self.url, self.root = url, root

    def read_head(self) -> Head | None:
        return _file_head(self.root / HEAD)

    def commit_head(self, note: bytes, expected: Head | None) -> bool:
        import portalocker

        from pytest_rtgov.store.ledger import LedgerLockTimeout, lock_timeout

        self.root.mkdir(parents=True, exist_ok=True)
        flags = portalocker.LockFlags.EXCLUSIVE | portalocker.LockFlags.NON_BLOCKING
        timeout = lock_timeout()
        try:
            with portalocker.Lock(self.root / LOCK, mode="a", timeout=timeout, flags=flags):
                current = _file_head(self.root / HEAD)
                if (current and current.version) != (expected and expected.version):
                    return False
                atomic_write(self.root / HEAD, note)
        except portalocker.LockException as exc:
            raise LedgerLockTimeout(
                f"{self.root / LOCK}: another push held the lock for more than {timeout:g} s "
                f"({exc or 'held'})"
            ) from exc
        return True

    def get_log(self, rel: str, dest: Path) -> bool:
        try:
            shutil.copyfile(self.root / rel, dest)
        except FileNotFoundError:
            return False
        return True

    def put_log(self, rel: str, source: Path) -> None:
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(  # atomic_write's pattern: swept once stale
            prefix=f".{target.name}.{os.getpid()}.", suffix=".rtgov-tmp", dir=target.parent
        )
        os.close(fd)
        temp = Path(name)
        try:
            shutil.copyfile(source, temp)
            with open(temp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(temp, target)
        finally:
            temp.unlink(missing_ok=True)

    def logs(self) -> list[str]:
        folder = self.root / "logs"
        return sorted(f"logs/{p.name}" for p in folder.glob("*.log")) if folder.is_dir() else []

    def delete(self, rel: str) -> None:
        (self.root / rel).unlink(missing_ok=True)


def _file_head(path: Path) -> Head | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return Head(data, hashlib.sha256(data).hexdigest())


class _Backend(FsspecBackend):
    what = "shared ledger"


class FsspecPlace(SharedPlace):
    """Any fsspec storage, through the stage cache's backend (its errors name the URL and
    the object); the head's conditional write is S3's ``If-Match`` / ``If-None-Match``."""

    def __init__(self, url: str) -> None:
        from pytest_rtgov.extras import require

        self.url = url
        protocol = url.split("://", 1)[0]
        self.s3 = protocol in ("s3", "s3a")
        fsspec = require("fsspec", extra="remote", feature=f"the shared ledger {url}")
        if not self.s3:  # S3's driver is the [remote] extra's, named by the backend
            try:
                fsspec.get_filesystem_class(protocol)
            except ImportError as exc:  # a driver fsspec knows of, not installed
                raise InvalidOptionError(
                    f"the shared ledger {url} needs fsspec's driver for {protocol}://, which "
                    f"is not installed ({exc})"
                ) from None
            except ValueError:
                raise InvalidOptionError(
                    f"the shared ledger {url}: fsspec knows no storage {protocol}:// (expected "
                    "a path, file://, s3://, or another fsspec protocol)"
                ) from None
        self.backend = _Backend(url)

    def read_head(self) -> Head | None:
        backend = self.backend
        path = backend._path(HEAD)
        # The version first, then the bytes: a head replaced in between makes the
        # conditional write fail (a retry), never succeed over a head not checked.
        with backend._failing("look up", HEAD):
            backend.fs.invalidate_cache(path)
            try:
                info = backend.fs.info(path)
            except FileNotFoundError:
                return None
        data = backend.read(HEAD)
        if data is None:
            return None
        version = str(info.get("ETag") or info.get("generation") or "")
        return Head(data, version or hashlib.sha256(data).hexdigest())

    def commit_head(self, note: bytes, expected: Head | None) -> bool:
        if not self.s3:
            raise PushUnsupportedError(
                f"rtgov ledger push {self.url}: pushing needs a conditional write, which rtgov "
                "uses on S3 (s3://: If-Match) and on a directory (a path or file://: a lock); "
                "pull works from any fsspec storage"
            )
        condition: dict[str, Any] = (
            {"mode": "create"} if expected is None else {"IfMatch": expected.version}
        )
        backend = self.backend
        try:
            with backend._failing("write", HEAD, missing=False):
                try:
                    backend.fs.pipe_file(backend._path(HEAD), note, **condition)
                except FileExistsError:
                    return False
                except OSError as exc:
                    if _lost(exc):
                        return False
                    raise
        finally:
            backend.fs.invalidate_cache(backend._path(HEAD))
        return backend.read(HEAD) == note  # a store that ignored the condition says so

    def get_log(self, rel: str, dest: Path) -> bool:
        backend = self.backend
        with backend._failing("read", rel):
            try:
                backend.fs.get_file(backend._path(rel), str(dest))
            except FileNotFoundError:
                return False
        return True

    def put_log(self, rel: str, source: Path) -> None:
        backend = self.backend
        with backend._failing("write", rel, missing=False):
            backend.fs.put_file(str(source), backend._path(rel))

    def logs(self) -> list[str]:
        return [rel for rel in self.backend.list("logs") if rel.endswith(".log")]

    def delete(self, rel: str) -> None:
        with contextlib.suppress(Exception):  # a leftover costs space, never correctness
            self.backend.delete(rel)


def _lost(exc: BaseException) -> bool:
    """A failed condition (412), or S3's conflict of two conditional writes at once (409)."""
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            error = response.get("Error", {})
            meta = response.get("ResponseMetadata", {})
            if str(error.get("Code")) in _LOST or str(meta.get("HTTPStatusCode")) in _LOST:
                return True
        if any(word in str(seen) for word in ("PreconditionFailed", "At least one of the pre")):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
