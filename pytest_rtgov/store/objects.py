"""The object store: bytes named by their sha256, under ``<state dir>/objects/``.

What a session keeps so that it can be checked later holds here: the ``.npy`` bytes of
kept array checkpoints (``rtgov.checkpoint(..., keep=True)``), and the exact bytes of the
gates file and baseline a gated session used (``rtgov audit`` re-derives its verdict from
them). Layout: ``objects/<hex[:2]>/<hex>``. An object is written once (atomically, by
whichever process has it first; the same name is the same bytes) and every read checks
its digest: a changed object is an :class:`ObjectCorruptError`, never a value.

>>> import tempfile
>>> store = ObjectStore(Path(tempfile.mkdtemp()))
>>> digest = store.put(b"hello")
>>> digest
'sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824'
>>> store.get(digest)
b'hello'
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from pytest_rtgov.errors import IntegrityError, NotFoundError
from pytest_rtgov.store.files import atomic_write

__all__ = ["ObjectCorruptError", "ObjectMissingError", "ObjectStore"]

_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")


class ObjectMissingError(NotFoundError):
    """No object of that digest in the store."""


class ObjectCorruptError(IntegrityError):
    """An object whose bytes no longer hash to its name."""


class ObjectStore:
    """Content-addressed bytes in one directory (see the module's docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def of_state_dir(cls, state_dir: Path) -> ObjectStore:
        return cls(state_dir / "objects")

    def path(self, digest: str) -> Path:
        match = _DIGEST.fullmatch(digest)
        if match is None:
            raise ValueError(f"expected sha256:<64 hex digits>, got {digest!r}")
        hexdigest = match.group(1)
        return self.root / hexdigest[:2] / hexdigest

    def put(self, data: bytes) -> str:
        """Store ``data`` (once) and return its name, ``sha256:<hex>``."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.path(digest)
        if not path.exists():
            atomic_write(path, data, durable=False)
        return digest

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def get(self, digest: str) -> bytes:
        """The bytes named ``digest``, checked; raises :class:`ObjectMissingError` or
        :class:`ObjectCorruptError`, each naming the file."""
        path = self.path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ObjectMissingError(f"{path}: no object {digest} in the object store") from None
        except OSError as exc:
            raise ObjectMissingError(f"{path}: cannot read object {digest}: {exc}") from None
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise ObjectCorruptError(
                f"{path}: the object's bytes hash to {actual}, not to its name {digest}"
            )
        return data
