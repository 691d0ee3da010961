"""Files sealed with a DSSE envelope over an in-toto Statement v1.

A seal lists every sealed file by name with its sha256 digest; the envelope is
signed with Ed25519. Checking a seal verifies the envelope under the trusted keys
first, then hashes each listed file, then looks for files the seal does not list.
Baselines (the whole baseline folder) and model artifacts (one ``.npz`` each) use it.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_rtgov.core import dsse
from pytest_rtgov.core.canonical import pretty_json
from pytest_rtgov.core.keys import Signer
from pytest_rtgov.errors import IntegrityError, RtgovError
from pytest_rtgov.store.files import atomic_write
from pytest_rtgov.store.keys import Trust

__all__ = [
    "ARTIFACT_PREDICATE",
    "BASELINE_ENVELOPE",
    "BASELINE_PREDICATE",
    "SealCheck",
    "SealError",
    "check_seal",
    "load_npz",
    "save_npz",
    "seal",
]

BASELINE_ENVELOPE = "baseline.dsse.json"
BASELINE_PREDICATE = "https://pytest-rtgov.dev/baseline/v1"
ARTIFACT_PREDICATE = "https://pytest-rtgov.dev/artifact/v1"
ENVELOPE_SUFFIX = ".dsse.json"


class SealError(IntegrityError):
    """A sealed file or its envelope does not verify. ``path`` names the culprit."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class SealCheck:
    envelope: Path
    signed_by: tuple[str, ...]
    trusted: bool  # signed by a keyring key (not only by a local one)
    subjects: dict[str, str]
    predicate: dict[str, Any]


def sha256_file(path: Path) -> str:
    """The file's sha256, read through one 64 KiB buffer: what it allocates stays small
    (it runs inside the measured region of a fixture that saves an artifact; a 1 MiB
    ``read`` allocated 1 MiB there per call, whatever the file's size)."""
    digest = hashlib.sha256()
    buffer = bytearray(1 << 16)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as fh:
        while size := fh.readinto(buffer):
            digest.update(view[:size])
    return digest.hexdigest()


def seal(
    directory: Path,
    names: Iterable[str],
    envelope_path: Path,
    signers: Sequence[Signer],
    *,
    predicate_type: str,
    predicate: Mapping[str, Any],
) -> dict[str, Any]:
    """Sign a statement over ``names`` (relative to ``directory``); written atomically."""
    subjects = {name: sha256_file(directory / name) for name in sorted(names)}
    payload = dsse.statement(subjects, predicate_type=predicate_type, predicate=dict(predicate))
    envelope = dsse.sign_envelope(payload, dsse.PAYLOAD_TYPE_INTOTO, signers)
    atomic_write(envelope_path, pretty_json(envelope).encode("utf-8"))
    return envelope


def _open_envelope(
    envelope_path: Path, trust: Trust, *, predicate_type: str, missing: str
) -> SealCheck:
    """Verify a seal's envelope under the trusted keys and read its statement."""
    if not envelope_path.is_file():
        raise SealError(envelope_path, missing)
    try:
        envelope = json.loads(envelope_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SealError(envelope_path, f"unreadable envelope ({exc})") from exc
    try:
        verified = dsse.verify_envelope(envelope, trust.verifiers())
        statement = dsse.parse_statement(verified.payload)
    except RtgovError as exc:
        raise SealError(envelope_path, f"signature does not verify: {exc}") from exc
    if verified.payload_type != dsse.PAYLOAD_TYPE_INTOTO:
        raise SealError(envelope_path, f"payloadType {verified.payload_type!r} is not in-toto")
    if statement.get("predicateType") != predicate_type:
        raise SealError(
            envelope_path,
            f"predicateType {statement.get('predicateType')!r}, expected {predicate_type!r}",
        )
    return SealCheck(
        envelope=envelope_path,
        signed_by=tuple(sorted(v.name for v in verified.signed_by)),
        trusted=any(trust.is_trusted(v) for v in verified.signed_by),
        subjects={s["name"]: s["digest"]["sha256"] for s in statement["subject"]},
        predicate=dict(statement.get("predicate") or {}),
    )


def check_seal(
    directory: Path,
    envelope_path: Path,
    trust: Trust,
    *,
    predicate_type: str,
    expect_all: Iterable[str] | None = None,
) -> SealCheck:
    """Verify the envelope, then every listed file's digest.

    ``expect_all``: names that must all be sealed (a file present but unlisted is as
    bad as an edited one). Raises :class:`SealError` naming the first bad file.
    """
    check = _open_envelope(
        envelope_path,
        trust,
        predicate_type=predicate_type,
        missing="missing: the files next to it are not signed",
    )
    for name, digest in sorted(check.subjects.items()):
        path = directory / name
        if not path.is_file():
            raise SealError(path, "listed in the signed statement but missing")
        actual = sha256_file(path)
        if actual != digest:
            raise SealError(
                path, f"sha256 {actual[:16]}... does not match the signed {digest[:16]}..."
            )
    for name in sorted(set(expect_all or ()) - set(check.subjects)):
        raise SealError(directory / name, "present but not covered by the signature")
    return check


def save_npz(path: Path, arrays: Mapping[str, Any]) -> None:
    """Write arrays as ``.npz`` with fixed zip timestamps: same arrays, same bytes."""
    import numpy as np

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asarray(arrays[name]), allow_pickle=False)
    atomic_write(path, buffer.getvalue())


def load_npz(path: Path) -> dict[str, Any]:
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def open_sealed(path: Path, trust: Trust, *, predicate_type: str) -> tuple[bytes, SealCheck]:
    """Read ``path`` once and return its bytes only if they are what its seal signed.

    The bytes returned are the bytes hashed: nothing is read again after the check.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SealError(path, f"cannot read ({exc.strerror})") from exc
    check = _open_envelope(
        path.with_name(path.name + ENVELOPE_SUFFIX),
        trust,
        predicate_type=predicate_type,
        missing="missing: the file next to it is not signed",
    )
    if check.subjects.get(path.name) != hashlib.sha256(data).hexdigest():
        raise SealError(path, "sha256 does not match the signed statement: the file was changed")
    return data, check
