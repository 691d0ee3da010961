"""The stage cache's backend in shared storage: any fsspec URL (``s3://``, ``gs://``...).

:class:`FsspecBackend` is what :func:`pytest_rtgov.store.stage_cache.open_backend` gives
for a URL that is neither a path nor ``file://``; :class:`~.stage_cache.StageCache` does
the rest (verification, signing) the same way for every backend.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from pytest_rtgov.store.stage_cache import StageStoreError

__all__ = ["FsspecBackend"]


class FsspecBackend:
    """Shared storage through fsspec (``s3://``, ``gs://``, ``memory://``...).

    Where the store is and how to reach it is fsspec's and the driver's own
    configuration, as every fsspec user sets it (docs/usage.md "Stage cache in shared
    storage"): for S3, credentials and ``AWS_ENDPOINT_URL`` through botocore, or
    ``FSSPEC_S3_ENDPOINT_URL`` and the other ``FSSPEC_S3_*`` variables through fsspec.

    An object store has no rename, but a put is whole: an object is visible only once
    complete. :meth:`create` is a conditional put (``If-None-Match: *`` on S3: fsspec's
    ``mode="create"``; a filesystem without it checks and then puts), then reads the
    object back: a store that ignored the condition and took a later writer's value
    says so (False), so the session that lost finds the other value
    (:meth:`StageCache.store`): one value stays, and a different one is reported.
    Listings and existence are asked afresh (fsspec caches listings per instance):
    another session's entries appear, deleted ones go. A failure of the store (no
    bucket, no credentials, no network) is a :class:`StageStoreError` naming the URL
    and the object; a missing object is ``None`` or ``False``, never an error.
    """

    what = "stage store"  # the store's name in messages (the shared ledger names its own)

    def __init__(self, url: str, **options: Any) -> None:
        from pytest_rtgov.extras import require

        feature = f"the {self.what} {url}"
        require("fsspec", extra="remote", feature=feature)
        protocol = url.split("://", 1)[0]
        if protocol in ("s3", "s3a"):
            require("s3fs", extra="remote", feature=feature)
        from fsspec.core import url_to_fs

        try:
            # A fresh filesystem object, not fsspec's cached one: a cached s3fs client keeps
            # the endpoint and credentials it was made with, whatever the environment
            # (AWS_ENDPOINT_URL...) says now (two stores in one process met a dead endpoint).
            self.fs, root = url_to_fs(url, skip_instance_cache=True, **options)
        except (ImportError, ValueError) as exc:  # a driver fsspec knows but cannot import
            raise StageStoreError(f"{feature}: {exc}") from None
        self.root = str(root).rstrip("/")
        self.url = url

    def _path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    @contextlib.contextmanager
    def _failing(self, doing: str, rel: str, *, missing: bool = True) -> Iterator[None]:
        """Driver errors as :class:`StageStoreError`; ``missing``: a FileNotFoundError
        is an answer (read, look up, delete), else an error (a write: no bucket)."""
        try:
            yield
        except FileExistsError:
            raise
        except FileNotFoundError as exc:
            if missing:
                raise
            where = f"{self.url.rstrip('/')}/{rel}"
            raise StageStoreError(
                f"{self.what} {where}: cannot {doing}: {exc or 'not found'}"
            ) from None
        except Exception as exc:  # the drivers' own errors (botocore's, aiohttp's...)
            where = f"{self.url.rstrip('/')}/{rel}"
            raise StageStoreError(
                f"{self.what} {where}: cannot {doing}: {type(exc).__name__}: {exc}"
            ) from exc

    def read(self, rel: str) -> bytes | None:
        with self._failing("read", rel):
            try:
                return bytes(self.fs.cat_file(self._path(rel)))
            except FileNotFoundError:
                return None

    def put(self, rel: str, data: bytes) -> None:
        with self._failing("write", rel, missing=False):
            self.fs.pipe_file(self._path(rel), data)

    def create(self, rel: str, data: bytes) -> bool:
        """Put ``rel`` only if absent; False when it exists (or another writer's value
        replaced this one before it could be read back)."""
        if self.exists(rel):
            return False
        with self._failing("write", rel, missing=False):
            try:
                self.fs.pipe_file(self._path(rel), data, mode="create")
            except FileExistsError:
                return False
        return self.read(rel) == data

    def exists(self, rel: str) -> bool:
        path = self._path(rel)
        with self._failing("look up", rel):
            self.fs.invalidate_cache(path)
            return bool(self.fs.exists(path))

    def move(self, rel: str, to: str) -> None:
        """Copy, then delete: the copy is whole before the original goes."""
        data = self.read(rel)
        if data is not None:
            self.put(to, data)
            self.delete(rel)

    def delete(self, rel: str) -> None:
        path = self._path(rel)
        with self._failing("delete", rel):
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(path)
            self.fs.invalidate_cache(path)

    def list(self, prefix: str) -> list[str]:
        with self._failing("list", prefix):
            self.fs.invalidate_cache()
            try:
                found = self.fs.find(self._path(prefix))
            except FileNotFoundError:
                return []
        start = len(self.root) + 1
        return sorted(str(p)[start:] for p in found)
