"""Signing keys and the keyring: where they live on disk and which ones are trusted.

Keys use the C2SP signed-note text forms (``PRIVATE+KEY+name+id+...`` for a signer,
``name+id+...`` for a verifier), so a checkpoint signed here opens with any note
verifier. The keyring is a text file teams commit; a machine with no key gets a local
key that no keyring lists; CI can anchor trust outside the repository.

A package; this module only re-exports the public names of its parts, one role each:

- :mod:`.keyring`: the keyring and trust, and the trust anchors CI supplies;
- :mod:`.keyfiles`: private key files, this machine's local key, the signing key;
- :mod:`.plan`: a session's keys, planned before the tests and loaded when first used.
"""

from __future__ import annotations

from pytest_rtgov.store.keys.keyfiles import (
    SigningKey,
    check_private_mode,
    generate_key,
    load_signing_key,
    local_host,
    local_key_path,
    local_pub_path,
    local_verifiers,
)
from pytest_rtgov.store.keys.keyring import (
    ANCHOR_VARIABLES,
    ENV_KEYRING_SHA256,
    ENV_SIGNING_KEY,
    ENV_TRUSTED_KEYS,
    LOCAL_PREFIX,
    KeyFileError,
    Trust,
    TrustAnchorError,
    add_to_keyring,
    read_keyring,
    require_signatures,
    trusted_key_lines,
)
from pytest_rtgov.store.keys.plan import KeyPlan, load_trust, plan_keys

__all__ = [
    "ANCHOR_VARIABLES",
    "ENV_KEYRING_SHA256",
    "ENV_SIGNING_KEY",
    "ENV_TRUSTED_KEYS",
    "LOCAL_PREFIX",
    "KeyFileError",
    "KeyPlan",
    "SigningKey",
    "Trust",
    "TrustAnchorError",
    "add_to_keyring",
    "check_private_mode",
    "generate_key",
    "load_signing_key",
    "load_trust",
    "local_host",
    "local_key_path",
    "local_pub_path",
    "local_verifiers",
    "plan_keys",
    "read_keyring",
    "require_signatures",
    "trusted_key_lines",
]
