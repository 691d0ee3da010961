"""Key files: private keys on disk (mode 0600, never overwritten), this machine's local
key and its public half, and the key that signs a session.

A machine with no key gets a *local* key, named ``rtgov-local-untrusted-<host>``, that
makes ``make gate`` work out of the box but that no keyring lists. Its public half is kept
beside it (``keys/local.pub``), so verifying never needs the private key.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pytest_rtgov.core.keys import (
    Signer,
    Verifier,
    format_signer_key,
    format_verifier_key,
    generate_signer,
    key_identity,
    parse_signer_key,
    parse_verifier_key,
)
from pytest_rtgov.errors import RtgovError
from pytest_rtgov.store.keys.keyring import (
    ENV_SIGNING_KEY,
    LOCAL_PREFIX,
    KeyFileError,
    _keyring_lines,
    _read_utf8,
    add_to_keyring,
)

__all__ = [
    "SigningKey",
    "check_private_mode",
    "generate_key",
    "load_signing_key",
    "local_host",
    "local_key_path",
    "local_pub_path",
    "local_verifiers",
]


@dataclass(frozen=True)
class SigningKey:
    signer: Signer
    source: str  # "file PATH", "$RTGOV_SIGNING_KEY", "local PATH"
    local: bool

    @property
    def verifier(self) -> Verifier:
        return self.signer.verifier()


def check_private_mode(path: Path) -> None:
    """Refuse a private key file that group or others may read or write, as ssh does."""
    if os.name == "nt":
        return
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return  # reading it reports why
    if mode & 0o077:
        what = "readable" if mode & 0o044 else "writable"
        raise KeyFileError(
            f"{path}: private key file has mode {mode:04o}: {what} by group or others; "
            f"refusing to use it (run `chmod 600 {path}`)"
        )


def _read_text(path: Path) -> str:
    check_private_mode(path)
    return _read_utf8(path, "signing key")


def _identity(text: str, source: str) -> tuple[str, bytes]:
    """A signer key's name and id, as :func:`_parse_private` words a bad one."""
    text = text.strip()
    if not text.startswith("PRIVATE+KEY+"):
        raise KeyFileError(f"{source}: expected a signer key 'PRIVATE+KEY+name+keyid+base64'")
    try:
        return key_identity(text)
    except RtgovError as exc:
        raise KeyFileError(
            f"{source}: expected a signer key 'PRIVATE+KEY+name+keyid+base64' ({exc})"
        ) from exc


def _write_private(path: Path, signer: Signer) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(format_signer_key(signer) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def generate_key(name: str, private_path: Path, keyring: Path | None) -> Signer:
    """A new Ed25519 key: private file mode 0600 (never overwritten), public to the keyring."""
    if private_path.exists():
        raise KeyFileError(f"{private_path}: already exists; refusing to overwrite a private key")
    signer = generate_signer(name)
    _write_private(private_path, signer)
    if keyring is not None:
        add_to_keyring(keyring, signer.verifier(), comment=f"{name}, added by rtgov keys generate")
    return signer


def _parse_private(text: str, source: str) -> Signer:
    try:
        return parse_signer_key(text.strip())
    except RtgovError as exc:
        raise KeyFileError(
            f"{source}: expected a signer key 'PRIVATE+KEY+name+keyid+base64' ({exc})"
        ) from exc


def _read_private(path: Path, *, signing: bool = True) -> Signer:
    if signing:
        check_private_mode(path)
    return _parse_private(_read_utf8(path, "signing key"), str(path))


def local_key_path(state_dir: Path) -> Path:
    return state_dir / "keys" / "local.key"


def local_pub_path(state_dir: Path) -> Path:
    return state_dir / "keys" / "local.pub"


def _record_local_pub(state_dir: Path, verifier: Verifier) -> None:
    """Keep the local key's public half in ``keys/local.pub``, one line per local key
    this state directory has had: checkpoints signed by a deleted local key still verify."""
    path = local_pub_path(state_dir)
    line = format_verifier_key(verifier)
    try:
        if path.exists() and line in path.read_text(encoding="utf-8").splitlines():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:  # O_APPEND: one short write
            fh.write(line + "\n")
    except (OSError, UnicodeDecodeError):
        pass  # best effort: verification falls back to the private key


def local_verifiers(state_dir: Path) -> list[Verifier]:
    """This state directory's local keys, from ``keys/local.pub``; a state directory
    made before the public half was kept has its ``.pub`` derived and written now."""
    pub = local_pub_path(state_dir)
    found: list[Verifier] = []
    if pub.exists():
        for verifier in _keyring_lines(pub, parse_verifier_key):
            if verifier not in found:
                found.append(verifier)
        return found
    path = local_key_path(state_dir)
    if not path.exists():
        return []
    verifier = _read_private(path, signing=False).verifier()
    _record_local_pub(state_dir, verifier)
    return [verifier]


def local_host() -> str:
    """This machine's name as local keys carry it."""
    return re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:40] or "host"


def load_signing_key(
    *, key_file: Path | None, state_dir: Path, environ: Mapping[str, str] | None = None
) -> SigningKey:
    """The key that signs this session's checkpoint and baselines.

    Order: ``key_file`` (``--rtgov-signing-key``), then ``$RTGOV_SIGNING_KEY`` (the key
    text itself, or a path to it), then this machine's local key, created on first use.
    """
    env = os.environ if environ is None else environ
    if key_file is not None:
        return SigningKey(_read_private(key_file), f"file {key_file}", local=False)
    value = env.get(ENV_SIGNING_KEY, "").strip()
    if value:
        if value.startswith("PRIVATE+KEY+"):
            return SigningKey(
                _parse_private(value, f"${ENV_SIGNING_KEY}"), "$" + ENV_SIGNING_KEY, False
            )
        return SigningKey(_read_private(Path(value)), f"file {value} (${ENV_SIGNING_KEY})", False)
    path = local_key_path(state_dir)
    if not path.exists():
        _create_local_key(path, generate_signer(f"{LOCAL_PREFIX}-{local_host()}"))
    signing = SigningKey(_read_private(path), f"local {path}", local=True)
    _record_local_pub(state_dir, signing.verifier)
    return signing


def _create_local_key(path: Path, signer: Signer) -> None:
    """Publish a new local key whole, unless one exists: written to a temporary file
    (mode 0600), then hard-linked into place, which fails if another process (an xdist
    worker signing an artifact) published one first. Nobody reads a half-written key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(format_signer_key(signer) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process's key won; this one is dropped
    finally:
        os.unlink(tmp)
