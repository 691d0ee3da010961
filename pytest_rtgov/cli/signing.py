"""Signing keys and ledger appends for the commands that write (baseline, merge)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pytest_rtgov.errors import IntegrityError, InvalidOptionError, RtgovError

__all__ = ["NotRecordedError", "log_leaves", "log_run", "signing_key"]


class NotRecordedError(IntegrityError):
    """Something the CLI wrote (a baseline, a merged run) could not be signed or logged."""


def log_leaves(
    args: argparse.Namespace, leaves: list[bytes], signing: Any, at: str, what: str
) -> Any:
    """Append ``leaves`` and a signed checkpoint; the append's result.

    Raises :class:`NotRecordedError` (exit 7) naming ``what`` when the ledger refuses."""
    from pytest_rtgov.cli.options import paths
    from pytest_rtgov.store.ledger import Ledger, append_session

    try:
        return append_session(
            Ledger(paths(args).ledger_dir),
            leaves,
            signer=signing.signer,
            origin=_origin(),
            created_at=at,
        )
    except (RtgovError, OSError) as exc:
        raise NotRecordedError(f"{what} is written but not logged in the ledger: {exc}") from exc


def log_run(args: argparse.Namespace, runs: Any, record: Any, verdict: Any) -> Any:
    """Write a run the CLI made (a merged run) under the ledger's lock and log it: a
    ``store.logged_run.LoggedRun``. A ledger that fails is decided into the record (exit
    7) before it is written, or it is rewritten so: the result's ``error`` says why."""
    from pytest_rtgov.cli.options import paths
    from pytest_rtgov.store.ledger import Ledger
    from pytest_rtgov.store.logged_run import write_and_log

    def write(run: Any) -> tuple[Path, bytes]:
        encoded = run.canonical_json()
        return runs.write(run, encoded=encoded), encoded

    signing = signing_key(args)  # a usage error (2, 4) before anything is written
    return write_and_log(
        Ledger(paths(args).ledger_dir), record, verdict, write,
        signer=lambda: signing.signer, origin=_origin(),
    )


def _origin() -> str:
    """The origin line of a ledger the CLI creates: named after the working directory."""
    return f"pytest-rtgov.local/{Path.cwd().name or 'project'}"


def signing_key(args: argparse.Namespace) -> Any:
    """The key that signs what the command writes.

    An unreadable key or keyring is a ``KeyFileError`` (exit 4); with ``CI=true``, a key
    that is not in the keyring is an :class:`InvalidOptionError` (exit 2)."""
    from pytest_rtgov.cli.options import paths
    from pytest_rtgov.store.keys import load_signing_key, require_signatures

    where = paths(args)
    required = require_signatures(False)
    signing = load_signing_key(key_file=args.signing_key, state_dir=where.state_dir)
    trust = where.trust(required=required)
    if required and not trust.is_trusted(signing.verifier):
        raise InvalidOptionError(
            f"signing key {signing.verifier.name} ({signing.source}) is not in "
            f"{where.keyring}; CI=true requires a keyring key"
        )
    return signing
