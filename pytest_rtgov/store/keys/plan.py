"""A session's keys: planned before the tests without loading cryptography
(:func:`plan_keys`), loaded when first used (:meth:`KeyPlan.load`, :func:`load_trust`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pytest_rtgov.core.keys import key_identity, parse_verifier_key
from pytest_rtgov.store.keys.keyfiles import (
    SigningKey,
    _identity,
    _read_text,
    load_signing_key,
    local_host,
    local_key_path,
    local_verifiers,
)
from pytest_rtgov.store.keys.keyring import (
    ANCHOR_VARIABLES,
    ENV_SIGNING_KEY,
    LOCAL_PREFIX,
    KeyFileError,
    Trust,
    trusted_key_lines,
)

__all__ = ["KeyPlan", "load_trust", "plan_keys"]


@dataclass(frozen=True)
class KeyPlan:
    """What a session will sign with and trust, checked without loading cryptography.

    Made before the tests (:func:`plan_keys`): the key's text and every keyring line are
    format-checked, and where signatures are required the key's name and id must be a
    keyring key's. :meth:`load` reads the keys themselves when they are first used (an
    artifact's seal, the checkpoint after the tests; a gated session loads them before
    the tests, so that a bad key stops it there), which also checks each key id against
    its key.
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
