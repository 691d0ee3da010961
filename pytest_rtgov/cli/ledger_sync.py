"""``rtgov ledger push URL`` and ``rtgov ledger pull URL``: the state directory's ledger
shared through a directory or any fsspec storage (:mod:`pytest_rtgov.store.ledger_sync`).

Exit codes: 0 pushed, pulled or nothing to do; 2 a URL whose driver is missing, or a
push to a storage without a conditional write rtgov uses; 3 push: no signed ledger here;
4 the storage cannot be read or written; 5 push: another push landed first, or the
shared ledger has leaves this one lacks (pull, then push); pull: leaves no checkpoint
signs here (``rtgov ledger recover`` first); 7 pull: the ledger lock stayed held;
10-13 the shared log or checkpoint does not check (as ``rtgov verify``); 14 a fork (pull
without ``--rebase``, push).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pytest_rtgov.cli.options import add_signing_key
from pytest_rtgov.core.constants import ExitCode
from pytest_rtgov.errors import RtgovError

__all__ = ["SyncFailed", "add_parsers", "run"]


class SyncFailed(RtgovError):
    """An error of push or pull carrying the exit code it means there."""

    def __init__(self, message: str, exit_code: ExitCode) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_parsers(lsub: Any, trust_arguments: Any) -> None:
    """``push`` and ``pull`` as actions of ``rtgov ledger``."""
    for action, text in (
        ("push", "publish this ledger at URL if the shared one is a prefix of it"),
        ("pull", "take the ledger at URL if it extends this one"),
    ):
        parser = lsub.add_parser(action, help=text, description=text)
        parser.add_argument(
            "url",
            metavar="URL",
            help="a directory (a path or file://, local or shared) or an fsspec URL "
            "(s3://bucket/prefix; push: S3 or a directory)",
        )
        trust_arguments(parser)
        if action == "pull":
            parser.add_argument(
                "--rebase",
                action="store_true",
                help="after a lost push: append this ledger's own leaves (past the last one "
                "it shares with URL) after the shared ones, signed by --signing-key",
            )
            add_signing_key(parser, "a rebased checkpoint")


def run(args: argparse.Namespace, trust: Any) -> int:
    from pytest_rtgov.cli.options import paths
    from pytest_rtgov.core.exit_codes import exit_code_for
    from pytest_rtgov.store.ledger import Ledger, LedgerLockTimeout
    from pytest_rtgov.store.ledger_pull import pull
    from pytest_rtgov.store.ledger_remote import open_shared
    from pytest_rtgov.store.ledger_sync import push

    ledger = Ledger(paths(args).ledger_dir)
    try:
        place = open_shared(args.url)
        if args.ledger_command == "push":
            result = push(ledger, place, trust)
        else:
            signer = None
            if args.rebase:
                from pytest_rtgov.store.keys import load_signing_key

                signer = load_signing_key(key_file=args.signing_key, state_dir=args.dir).signer
            result = pull(ledger, place, trust, rebase=signer)
    except LedgerLockTimeout as exc:
        raise SyncFailed(str(exc), ExitCode.INTEGRITY) from exc
    except (RtgovError, OSError) as exc:
        if hasattr(exc, "exit_code"):  # a failed check names its own code
            raise
        if isinstance(exc, OSError):
            what = f"{exc.filename or args.url}: {exc.strerror or exc}"
            raise SyncFailed(f"cannot read or write {what}", ExitCode.BAD_INPUT) from exc
        raise SyncFailed(str(exc), exit_code_for(exc, face="cli")) from exc
    shared = result.shared.describe() if result.shared else args.url
    local = result.local.describe() if result.local else str(ledger.directory)
    lines = {
        "pushed": f"pushed: {args.url.rstrip('/')}/checkpoint now holds {local}"
        + (f" (it held {shared})" if result.shared else ""),
        "pulled": f"pulled: {ledger.directory} now holds {shared}"
        + (f" (it held {local})" if result.local else ""),
        "rebased": f"rebased: {ledger.directory} holds {shared}, then its own leaves, "
        f"signed in {local}; `rtgov ledger push {args.url}` shares them",
        "up to date": f"up to date: {local} is the shared {shared}",
        "ahead": f"nothing to pull: this ledger {local} extends the shared {shared}; "
        f"`rtgov ledger push {args.url}` shares it",
        "empty": f"nothing to pull: no shared ledger at {args.url} yet "
        f"(`rtgov ledger push {args.url}` starts it)",
    }
    print(f"rtgov ledger {args.ledger_command}: {lines[result.status]}")
    if result.status in ("pulled", "rebased"):
        print(
            "the run records, artifacts and kept objects stay where their sessions ran; "
            "`rtgov verify` reports them as held elsewhere",
            file=sys.stderr,
        )
    return 0
