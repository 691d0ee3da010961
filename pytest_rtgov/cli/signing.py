"""Signing keys and ledger appends for the commands that write (baseline, merge)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["append_run", "log_leaves", "signing_key"]

EXIT_USAGE = 2
EXIT_BAD_RECORD = 4
EXIT_INTEGRITY = 7


def log_leaves(
    args: argparse.Namespace, leaves: list[bytes], signing: Any, at: str, what: str
) -> Any:
    """Append ``leaves`` and a signed checkpoint; the result, or 7 after saying why."""
    from pytest_rtgov.errors import RtgovError
    from pytest_rtgov.store.ledger import Ledger, append_session

    try:
        return append_session(
            Ledger(args.dir / "ledger"),
            leaves,
            signer=signing.signer,
            origin=f"pytest-rtgov.local/{Path.cwd().name or 'project'}",
            created_at=at,
        )
    except (RtgovError, OSError) as exc:
        print(f"rtgov: {what} is written but not logged in the ledger: {exc}", file=sys.stderr)
        return EXIT_INTEGRITY


def append_run(args: argparse.Namespace, record: Any) -> int:
    """Log a run the CLI wrote (a merged run) in the ledger; 0, or 7 when that fails."""
    from pytest_rtgov.core.ledger_records import run_leaves

    signing = signing_key(args)
    if isinstance(signing, int):
        return signing
    result = log_leaves(args, run_leaves(record), signing, record.ended_at, "the merged run")
    if isinstance(result, int):
        return result
    print(f"ledger: {result.size} leaves, checkpoint {result.checkpoint_path}")
    return 0


def signing_key(args: argparse.Namespace) -> Any:
    """The key that signs a baseline, or an exit code when it cannot be used here."""
    from pytest_rtgov.store.keys import KeyError_, load_signing_key, load_trust, require_signatures

    required = require_signatures(False)
    try:
        signing = load_signing_key(key_file=args.signing_key, state_dir=args.dir)
        trust = load_trust(keyring=args.keyring, state_dir=args.dir, required=required)
    except KeyError_ as exc:
        print(f"rtgov: {exc}", file=sys.stderr)
        return EXIT_BAD_RECORD
    if required and not trust.is_trusted(signing.verifier):
        print(
            f"rtgov: signing key {signing.verifier.name} ({signing.source}) is not in "
            f"{args.keyring}; CI=true requires a keyring key",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return signing

