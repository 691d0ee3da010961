"""Signing keys and the keyring: where they live on disk and which ones are trusted.

Keys use the C2SP signed-note text forms (``PRIVATE+KEY+name+id+...`` for a signer,
``name+id+...`` for a verifier), so a checkpoint signed here opens with any note
verifier. The keyring is a text file teams commit: one verifier key per line, ``#``
comments. A machine with no key gets a *local* key, named
``rtgov-local-untrusted-<host>``, that makes ``make gate`` work out of the box but that
no keyring lists: in CI (``CI=true``) or with ``--rtgov-require-signature`` it is refused.
Its public half is kept beside it (``keys/local.pub``), so verifying never needs the
private key.

The keyring lives in the repository it protects, so CI can anchor trust outside it:
``$RTGOV_TRUSTED_KEYS`` (verifier key lines) and ``$RTGOV_KEYRING_SHA256`` (the keyring
file's digest), set as protected CI variables. When either is set, exactly those keys are
trusted and a repository keyring that disagrees is refused (:class:`TrustAnchorError`).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import stat
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pytest_rtgov.core.keys import (
    Signer,
    Verifier,
    format_signer_key,
    format_verifier_key,
    generate_signer,
    key_identity,
    parse_signer_key,
    parse_verifier_key,
    verifier_key_fields,
)
from pytest_rtgov.errors import ReadError, RtgovError

__all__ = [
    "ENV_KEYRING_SHA256",
    "ENV_SIGNING_KEY",
    "ENV_TRUSTED_KEYS",
    "KeyFileError",
    "KeyPlan",
    "SigningKey",
    "Trust",
    "TrustAnchorError",
    "add_to_keyring",
    "generate_key",
    "load_signing_key",
    "local_host",
    "plan_keys",
    "read_keyring",
    "require_signatures",
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
class SigningKey:
    signer: Signer
    source: str  # "file PATH", "$RTGOV_SIGNING_KEY", "local PATH"
    local: bool

    @property
    def verifier(self) -> Verifier:
        return self.signer.verifier()


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


@dataclass(frozen=True)
class KeyPlan:
    """What a session will sign with and trust, checked without loading cryptography.

    Made before the tests (:func:`plan_keys`): the key's text and every keyring line are
    format-checked, and where signatures are required the key's name and id must be a
    keyring key's. :meth:`load` reads the keys themselves after the tests, which also
    checks each key id against its key.
    """

    key_file: Path | None
    env_value: str
    state_dir: Path
    keyring: Path | None
    required: bool
    anchors: tuple[tuple[str, str], ...] = ()  # the CI variables, as the plan read them

    def load(self) -> tuple[SigningKey, Trust]:
        environ = {ENV_SIGNING_KEY: self.env_value} if self.env_value else {}
        signing = load_signing_key(
            key_file=self.key_file, state_dir=self.state_dir, environ=environ
        )
        trust = load_trust(
            keyring=self.keyring,
            state_dir=self.state_dir,
            required=self.required,
            environ=dict(self.anchors),
        )
        if self.required and not trust.is_trusted(signing.verifier):
            raise KeyFileError(
                f"signing key {signing.verifier.name} ({signing.source}) is not the "
                f"{trust.source}'s key of that name and id: refusing to sign"
            )
        return signing, trust


def plan_keys(
    *,
    key_file: Path | None,
    keyring: Path | None,
    state_dir: Path,
    required: bool,
    environ: Mapping[str, str] | None = None,
) -> KeyPlan:
    """The session's keys, format-checked (a bad key or keyring raises KeyFileError), and,
    where signatures are required, the key's name and id found in the keyring."""
    env = os.environ if environ is None else environ
    value = env.get(ENV_SIGNING_KEY, "").strip()
    identity: tuple[str, bytes] | None  # None: a local key not created yet
    if key_file is not None:
        identity, source = _identity(_read_text(key_file), str(key_file)), f"file {key_file}"
    elif value.startswith("PRIVATE+KEY+"):
        identity, source = _identity(value, f"${ENV_SIGNING_KEY}"), "$" + ENV_SIGNING_KEY
    elif value:
        path = Path(value)
        identity = _identity(_read_text(path), str(path))
        source = f"file {value} (${ENV_SIGNING_KEY})"
    else:
        path = local_key_path(state_dir)
        identity = _identity(_read_text(path), str(path)) if path.exists() else None
        source = f"local {path}"
    lines, trusted_from = trusted_key_lines(keyring, env)
    ids = frozenset(key_identity(line) for line in lines)
    if required and (identity is None or identity not in ids):
        name = identity[0] if identity else f"{LOCAL_PREFIX}-{local_host()}"
        raise KeyFileError(
            f"signing key {name} ({source}) is not in the {trusted_from}; "
            "signatures are required here (CI=true or --rtgov-require-signature): pass "
            "--rtgov-signing-key or set RTGOV_SIGNING_KEY to a key that "
            "`rtgov keys generate` added to the keyring"
        )
    anchors = tuple((name, env[name]) for name in ANCHOR_VARIABLES if env.get(name, "").strip())
    return KeyPlan(key_file, value, state_dir, keyring, required, anchors)


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


def load_trust(
    *,
    keyring: Path | None,
    state_dir: Path,
    required: bool,
    environ: Mapping[str, str] | None = None,
) -> Trust:
    """The trusted keys (:func:`trusted_key_lines`: the keyring, or what CI supplies) plus,
    unless signatures are required, this state directory's local keys (untrusted)."""
    lines, source = trusted_key_lines(keyring, environ)
    ring = tuple(parse_verifier_key(line) for line in lines)
    local = () if required else tuple(local_verifiers(state_dir))
    return Trust(
        keyring=ring, local=local, keyring_path=keyring, required=required, source=source
    )
