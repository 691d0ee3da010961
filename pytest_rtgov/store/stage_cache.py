"""The stage cache: content-addressed output arrays and one signed entry per key.

Layout, under the store's root (``<state dir>/stages`` by default, or any fsspec URL
given as ``rtgov_stage_store``, such as ``s3://bucket/prefix``)::

    objects/<hex[:2]>/<hex>.npy          an output array's .npy bytes, named by their sha256
    entries/<stage>/<key>.dsse.json      the DSSE envelope sealing one key's outputs
    refused/<stage>/<key>.<utc>.dsse.json  an entry that failed its checks, set aside

Every file is written under a temporary name and renamed (locally), or put whole (an
object store shows an object only once it is complete): no partial entry is ever
visible. An entry is written after its objects and never overwritten: a key holds
one value (:meth:`StageCache.store` reports a different value found there instead).

A hit (:meth:`StageCache.lookup`) requires all of: the envelope signed by a trusted
key (the keyring; outside CI also this machine's local key), the statement a stage
provenance for this stage and key, the key recomputed from the sealed inputs, the
chain (the sealed inputs are the upstream outputs in use now) and every output's bytes
hashing to the sealed digest. Anything less is a refusal naming the reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pytest_rtgov.core import dsse
from pytest_rtgov.core.canonical import pretty_json
from pytest_rtgov.core.keys import Signer
from pytest_rtgov.core.stages import (
    SLSA_PROVENANCE_V1,
    SealedStage,
    StageEntryError,
    Upstream,
    chain_problem,
    parse_sealed_stage,
)
from pytest_rtgov.errors import RtgovError
from pytest_rtgov.store.files import atomic_write
from pytest_rtgov.store.keys import Trust

__all__ = [
    "Backend",
    "LocalBackend",
    "Lookup",
    "StageCache",
    "StageStoreError",
    "array_bytes",
    "load_array",
    "open_backend",
]


class StageStoreError(RtgovError):
    """The stage store cannot be opened or written (the message names the place)."""


def array_bytes(array: Any) -> bytes:
    """The ``.npy`` bytes of a host array: the same array, the same bytes."""
    import numpy as np

    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def load_array(data: bytes) -> Any:
    import numpy as np

    return np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)


class Backend(Protocol):
    url: str

    def read(self, rel: str) -> bytes | None: ...
    def put(self, rel: str, data: bytes) -> None: ...
    def create(self, rel: str, data: bytes) -> bool: ...
    def exists(self, rel: str) -> bool: ...
    def move(self, rel: str, to: str) -> None: ...
    def delete(self, rel: str) -> None: ...
    def list(self, prefix: str) -> list[str]: ...


class LocalBackend:
    """A directory: atomic renames, and ``os.link`` for create-if-absent."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def _path(self, rel: str) -> Path:
        return self.root / rel

    def read(self, rel: str) -> bytes | None:
        try:
            return self._path(rel).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:  # permissions, an I/O error: the store did not answer
            raise StageStoreError(f"stage store {self._path(rel)}: cannot read: {exc}") from exc

    def put(self, rel: str, data: bytes) -> None:
        atomic_write(self._path(rel), data)

    def create(self, rel: str, data: bytes) -> bool:
        """Write ``rel`` only if absent, atomically; False when it already exists."""
        path = self._path(rel)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.create")
        atomic_write(tmp, data)
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def exists(self, rel: str) -> bool:
        return self._path(rel).exists()

    def move(self, rel: str, to: str) -> None:
        target = self._path(to)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._path(rel), target)

    def delete(self, rel: str) -> None:
        self._path(rel).unlink(missing_ok=True)

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )


def open_backend(url: str | None, *, state_dir: Path) -> Backend:
    """The store at ``url`` (a path, ``file://``, or any fsspec URL), or the state
    directory's ``stages/`` when ``url`` is empty.

    Raises :class:`StageStoreError` for a URL whose driver is missing (a
    :class:`~pytest_rtgov.extras.MissingExtraError`, naming ``[remote]``, for S3).
    """
    if not url:
        return LocalBackend(state_dir / "stages")
    if url.startswith("file://"):
        return LocalBackend(Path(url[len("file://") :]))
    if "://" not in url:
        return LocalBackend(Path(url))
    from pytest_rtgov.store.stage_remote import FsspecBackend

    return FsspecBackend(url)


def __getattr__(name: str) -> Any:
    """``FsspecBackend``, from :mod:`pytest_rtgov.store.stage_remote` (its own module)."""
    if name == "FsspecBackend":
        from pytest_rtgov.store.stage_remote import FsspecBackend

        return FsspecBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def object_rel(digest: str) -> str:
    return f"objects/{digest[:2]}/{digest}.npy"


def entry_rel(stage: str, key: str) -> str:
    return f"entries/{stage}/{key}.dsse.json"


@dataclass
class Lookup:
    """What :meth:`StageCache.lookup` found at a key."""

    status: str  # "absent", "valid", "refused" or "unavailable" (the store did not answer)
    reason: str = ""
    sealed: SealedStage | None = None
    objects: dict[str, bytes] = field(default_factory=dict)  # output name -> .npy bytes
    envelope_sha256: str = ""
    signed_by: tuple[str, ...] = ()
    trusted: bool = False
    # refused only because no key trusted here signed it (another machine's local key,
    # outside CI): left in place, not replaced, where signatures are not required
    foreign: bool = False


class ForeignEntryError(StageEntryError):
    """An entry whose signatures verify under no key trusted here."""


class StageCache:
    """Look up, verify and store stage entries in one backend."""

    def __init__(self, backend: Backend, *, signer: Signer | None, trust: Trust, lock_dir: Path):
        self.backend = backend
        self.signer = signer
        self.trust = trust
        self.lock_dir = lock_dir

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold the key's lock: xdist workers (and sessions) sharing this machine's state
        directory compute one key once; the others wait, then hit."""
        import portalocker

        self.lock_dir.mkdir(parents=True, exist_ok=True)
        with open(self.lock_dir / f"{key}.lock", "a+b") as handle:
            portalocker.lock(handle, portalocker.LockFlags.EXCLUSIVE)
            try:
                yield
            finally:
                portalocker.unlock(handle)

    def read_entry(self, rel: str) -> tuple[SealedStage, bytes, tuple[str, ...], bool]:
        """Verify an entry's envelope and read its statement; raises RtgovError."""
        data = self.backend.read(rel)
        if data is None:
            raise StageEntryError("the entry is gone")
        return self.verify_entry(data)

    def verify_entry(self, data: bytes) -> tuple[SealedStage, bytes, tuple[str, ...], bool]:
        """:meth:`read_entry` on an envelope's bytes already read."""
        try:
            envelope = json.loads(data)
        except ValueError as exc:
            raise StageEntryError(f"unreadable envelope ({exc})") from exc
        if not isinstance(envelope, dict):
            raise StageEntryError("the envelope is not a JSON object")
        try:
            verified = dsse.verify_envelope(envelope, self.trust.verifiers())
        except dsse.SignatureError as exc:
            where = "the keyring" if self.trust.required else "the keyring or the local key"
            raise ForeignEntryError(f"not signed by a key of {where} ({exc})") from exc
        statement = dsse.parse_statement(verified.payload)
        if statement.get("predicateType") != SLSA_PROVENANCE_V1:
            raise StageEntryError(
                f"predicateType {statement.get('predicateType')!r}, expected {SLSA_PROVENANCE_V1}"
            )
        sealed = parse_sealed_stage(statement)
        signed_by = tuple(sorted(v.name for v in verified.signed_by))
        trusted = any(self.trust.is_trusted(v) for v in verified.signed_by)
        return sealed, data, signed_by, trusted

    def lookup(self, stage: str, key: str, upstream: Mapping[str, Upstream]) -> Lookup:
        try:
            return self._lookup(stage, key, upstream)
        except StageStoreError as exc:  # the store did not answer: no entry, no refusal
            return Lookup("unavailable", reason=str(exc))

    def _lookup(self, stage: str, key: str, upstream: Mapping[str, Upstream]) -> Lookup:
        rel = entry_rel(stage, key)
        data = self.backend.read(rel)
        if data is None:  # none, or removed since (a gc, another machine's set-aside)
            return Lookup("absent")
        digest = hashlib.sha256(data).hexdigest()
        try:
            sealed, data, signed_by, trusted = self.verify_entry(data)
        except ForeignEntryError as exc:
            return Lookup("refused", reason=str(exc), envelope_sha256=digest, foreign=True)
        except StageStoreError:
            raise
        except RtgovError as exc:
            return Lookup("refused", reason=str(exc), envelope_sha256=digest)
        if sealed.stage != stage:
            return Lookup(
                "refused",
                reason=f"the entry is stage {sealed.stage!r}, not {stage!r}",
                envelope_sha256=digest,
            )
        problem = chain_problem(sealed, key, upstream)
        if problem is not None:
            return Lookup("refused", reason=problem, envelope_sha256=digest)
        objects: dict[str, bytes] = {}
        for name, expected in sorted(sealed.outputs.items()):
            blob = self.backend.read(object_rel(expected))
            if blob is None:
                return Lookup(
                    "refused",
                    reason=f"output {name}: object {expected[:12]} is missing",
                    envelope_sha256=digest,
                )
            actual = hashlib.sha256(blob).hexdigest()
            if actual != expected:
                return Lookup(
                    "refused",
                    reason=f"output {name}: bytes hash to sha256 {actual[:12]}, "
                    f"the entry seals {expected[:12]}",
                    envelope_sha256=digest,
                )
            objects[name] = blob
        return Lookup(
            "valid",
            sealed=sealed,
            objects=objects,
            envelope_sha256=digest,
            signed_by=signed_by,
            trusted=trusted,
        )

    def set_aside(self, stage: str, key: str, envelope_sha256: str = "") -> str | None:
        """Move a refused entry to ``refused/`` (kept as evidence, never deleted); only
        the envelope that was refused (``envelope_sha256``, when known): an entry another
        writer stored since stays. None when nothing was moved."""
        rel = entry_rel(stage, key)
        if envelope_sha256:
            current = self.backend.read(rel)
            if current is None or hashlib.sha256(current).hexdigest() != envelope_sha256:
                return None
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = f"refused/{stage}/{key}.{stamp}.{os.getpid()}.dsse.json"
        self.backend.move(rel, target)
        return target

    def store(
        self,
        stage: str,
        key: str,
        subjects: Mapping[str, str],
        predicate: Mapping[str, Any],
        objects: Mapping[str, bytes],
    ) -> tuple[str, str]:
        """Write the objects, then the signed entry if the key holds none.

        Returns ``(status, envelope sha256)``: ``"stored"``, or ``"exists"`` when another
        writer stored this key first (its envelope's digest; the caller compares).
        """
        if self.signer is None:
            raise StageStoreError("no signing key: the stage cache needs --rtgov")
        for blob in objects.values():
            digest = hashlib.sha256(blob).hexdigest()
            rel = object_rel(digest)
            present = self.backend.read(rel)  # a damaged object (a refusal's cause) is replaced
            if present is None or hashlib.sha256(present).hexdigest() != digest:
                self.backend.put(rel, blob)
        payload = dsse.statement(
            subjects, predicate_type=SLSA_PROVENANCE_V1, predicate=dict(predicate)
        )
        envelope = dsse.sign_envelope(payload, dsse.PAYLOAD_TYPE_INTOTO, [self.signer])
        data = pretty_json(envelope).encode("utf-8")
        rel = entry_rel(stage, key)
        if self.backend.create(rel, data):
            return "stored", hashlib.sha256(data).hexdigest()
        existing = self.backend.read(rel) or b""
        return "exists", hashlib.sha256(existing).hexdigest()

    def entries(self) -> list[tuple[str, str, str]]:
        """``(stage, key, rel)`` of every entry, sorted."""
        found = []
        for rel in self.backend.list("entries"):
            parts = rel.split("/")
            if len(parts) == 3 and parts[2].endswith(".dsse.json"):
                found.append((parts[1], parts[2][: -len(".dsse.json")], rel))
        return sorted(found)
