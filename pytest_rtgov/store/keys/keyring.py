"""The keyring and trust: which verifier keys are trusted, read from the keyring file
teams commit or anchored outside the repository by CI.

Keys use the C2SP signed-note text forms (``PRIVATE+KEY+name+id+...`` for a signer,
``name+id+...`` for a verifier), so a checkpoint signed here opens with any note
verifier. The keyring is a text file teams commit: one verifier key per line, ``#``
comments. A machine's local key (:mod:`.keyfiles`) is never trusted: in CI
(``CI=true``) or with ``--rtgov-require-signature`` it is refused.

The keyring lives in the repository it protects, so CI can anchor trust outside it:
``$RTGOV_TRUSTED_KEYS`` (verifier key lines) and ``$RTGOV_KEYRING_SHA256`` (the keyring
file's digest), set as protected CI variables. When either is set, exactly those keys are
trusted and a repository keyring that disagrees is refused (:class:`TrustAnchorError`).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pytest_rtgov.core.keys import (
    Verifier,
    format_verifier_key,
    parse_verifier_key,
    verifier_key_fields,
)
from pytest_rtgov.errors import ReadError, RtgovError

__all__ = [
    "ANCHOR_VARIABLES",
    "ENV_KEYRING_SHA256",
    "ENV_SIGNING_KEY",
    "ENV_TRUSTED_KEYS",
    "LOCAL_PREFIX",
    "KeyFileError",
    "Trust",
    "TrustAnchorError",
    "add_to_keyring",
    "read_keyring",
    "require_signatures",
    "trusted_key_lines",
]

T = TypeVar("T")
ENV_SIGNING_KEY = "RTGOV_SIGNING_KEY"
ENV_TRUSTED_KEYS = "RTGOV_TRUSTED_KEYS"
ENV_KEYRING_SHA256 = "RTGOV_KEYRING_SHA256"
ANCHOR_VARIABLES = (ENV_TRUSTED_KEYS, ENV_KEYRING_SHA256)
LOCAL_PREFIX = "rtgov-local-untrusted"


class KeyFileError(ReadError):
    """A key file, key text or keyring is missing or malformed."""


class TrustAnchorError(KeyFileError):
    """The repository's keyring disagrees with the trust CI supplies from outside it
    (``$RTGOV_TRUSTED_KEYS``, ``$RTGOV_KEYRING_SHA256``). ``rtgov verify`` exits 13 (an
    untrusted checkpoint, ``cli.main.exit_code``); a pytest session stops with a usage
    error (exit 4)."""


@dataclass(frozen=True)
class Trust:
    """Who may sign: the committed keyring, plus this machine's local key (untrusted)."""

    keyring: tuple[Verifier, ...]
    local: tuple[Verifier, ...]
    keyring_path: Path | None
    required: bool
    # Where the trusted keys come from, for messages: "keyring PATH", or the CI variables.
    source: str = ""

    def verifiers(self) -> list[Verifier]:
        return [*self.keyring, *self.local]

    def is_trusted(self, who: Verifier | str) -> bool:
        """A keyring key: the same key (name and public key), or, given a name that a
        signature check already resolved, a keyring key of that name."""
        if isinstance(who, str):
            return any(v.name == who for v in self.keyring) and not who.startswith(LOCAL_PREFIX)
        return who in self.keyring

    def describe(self, name: str) -> str:
        """``name (trusted: <source>)`` or ``name (untrusted local key)``."""
        if self.is_trusted(name):
            return f"{name} (trusted: {self.source or f'keyring {self.keyring_path}'})"
        if name.startswith(LOCAL_PREFIX) or any(v.name == name for v in self.local):
            return f"{name} (untrusted local key)"
        return f"{name} (untrusted)"


def require_signatures(option: bool, environ: Mapping[str, str] | None = None) -> bool:
    """``--rtgov-require-signature``, or any CI (``CI=true``, as GitHub and GitLab set it)."""
    env = os.environ if environ is None else environ
    return option or env.get("CI", "").strip().lower() in ("true", "1", "yes")


def _read_utf8(path: Path, what: str) -> str:
    """A key or keyring file's text; unreadable or not UTF-8 is a KeyFileError naming the
    file and, for bad bytes, the line and byte."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read {what} ({exc.strerror})") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise KeyFileError(
            f"{path}: line {line}, byte {exc.start}: expected UTF-8 text ({what} in the "
            f"signed-note text form), found byte 0x{data[exc.start]:02x}"
        ) from exc


def _keyring_lines(path: Path, parse: Callable[[str], T]) -> list[T]:
    text = _read_utf8(path, "keyring")
    out = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            out.append(parse(line))
        except RtgovError as exc:
            raise KeyFileError(
                f"{path}: line {lineno}: expected a verifier key 'name+keyid+base64' ({exc})"
            ) from exc
    return out


def read_keyring(path: Path) -> list[Verifier]:
    """Verifier keys from a keyring file; a bad line names the file and line."""
    return _keyring_lines(path, parse_verifier_key)


def _with_text(line: str) -> tuple[tuple[str, bytes, bytes], str]:
    return verifier_key_fields(line), line


def _key_label(text: str) -> str:
    name, kid, _ = verifier_key_fields(text)
    return f"{name}+{kid.hex()}"


def trusted_key_lines(
    keyring: Path | None, environ: Mapping[str, str] | None = None
) -> tuple[list[str], str]:
    """The verifier key lines to trust and where they come from, without cryptography.

    Without the CI variables: the repository's keyring (if the file exists). With
    ``$RTGOV_KEYRING_SHA256``: the keyring, if its sha256 is that one. With
    ``$RTGOV_TRUSTED_KEYS`` (newline- or comma-separated): exactly those keys, and every
    key the repository's keyring lists must be one of them. A disagreement raises
    :class:`TrustAnchorError`, naming the file and the key or digest.
    """
    env = os.environ if environ is None else environ
    supplied_text = env.get(ENV_TRUSTED_KEYS, "").strip()
    pinned = env.get(ENV_KEYRING_SHA256, "").strip().lower()
    has_ring = keyring is not None and keyring.is_file()
    ring = _keyring_lines(keyring, _with_text) if has_ring and keyring is not None else []
    if not supplied_text and not pinned:
        return [text for _, text in ring], f"keyring {keyring}"
    if pinned:
        if not re.fullmatch(r"[0-9a-f]{64}", pinned):
            raise TrustAnchorError(
                f"${ENV_KEYRING_SHA256}: expected the 64 hex digits of the keyring's sha256, "
                f"got {pinned[:80]!r}"
            )
        if keyring is None or not has_ring:
            raise TrustAnchorError(
                f"{keyring}: missing, but ${ENV_KEYRING_SHA256} pins its sha256: "
                "refusing to trust any key"
            )
        try:
            actual = hashlib.sha256(keyring.read_bytes()).hexdigest()
        except OSError as exc:
            raise KeyFileError(f"{keyring}: cannot read keyring ({exc.strerror})") from exc
        if actual != pinned:
            raise TrustAnchorError(
                f"{keyring}: sha256 {actual} does not match ${ENV_KEYRING_SHA256} ({pinned}): "
                "the repository's keyring is not the one CI pins; refusing to trust it"
            )
    if not supplied_text:
        return [text for _, text in ring], (
            f"keyring {keyring}, sha256 pinned by ${ENV_KEYRING_SHA256}"
        )
    supplied: list[tuple[tuple[str, bytes, bytes], str]] = []
    entries = [e.strip() for e in re.split(r"[\n,]", supplied_text)]
    for number, entry in enumerate([e for e in entries if e], start=1):
        try:
            supplied.append(_with_text(entry))
        except RtgovError as exc:
            raise TrustAnchorError(
                f"${ENV_TRUSTED_KEYS}: entry {number}: expected a verifier key "
                f"'name+keyid+base64' ({exc})"
            ) from exc
    known = {fields for fields, _ in supplied}
    extra = [text for fields, text in ring if fields not in known]
    if extra:
        raise TrustAnchorError(
            f"{keyring}: lists {', '.join(_key_label(t) for t in extra)}, which "
            f"${ENV_TRUSTED_KEYS} does not: the repository's keyring disagrees with the keys "
            "CI supplies; refusing it (remove the line, or add the key to the protected CI "
            "variable)"
        )
    return [text for _, text in supplied], f"CI-supplied ${ENV_TRUSTED_KEYS}"


def add_to_keyring(path: Path, verifier: Verifier, *, comment: str = "") -> bool:
    """Append a verifier key unless it is already there; True when added."""
    line = format_verifier_key(verifier)
    if path.exists() and any(v == verifier for v in read_keyring(path)):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        if comment:
            fh.write(f"# {comment}\n")
        fh.write(line + "\n")
    return True
