"""What ``rtgov compare`` and ``rtgov graph`` share: the delta index they open, run ids
resolved in it, and value formatting.

Exit codes (besides 0, 2, 3, 4), mapped from the errors in ``cli.main.exit_code``:
    8  ``compare``: the two sides are not comparable (the rows are printed all the same,
       under a banner naming every difference)
    10 ``compare``, ``graph``: a ledger frame does not check (as ``rtgov verify``)
    11 ``compare``, ``graph``: a ledger leaf the delta index cannot read: not JSON, not an
       object, an unknown kind, or a missing field (the message names the leaf)
    12 ``compare``, ``graph``: the log does not hash to its signed checkpoint's root

The delta index itself is never trusted: it is checked against the ledger and its own
digest before each use, and rebuilt (with a warning saying why) when either disagrees.
"""

from __future__ import annotations

import argparse
import logging
import math
from typing import Any

from pytest_rtgov.errors import RecordNotFoundError

__all__ = ["KEYRING_HELP", "open_store", "percentage", "run_id_in_index"]

KEYRING_HELP = "keys whose checkpoint signatures the index may match (default: rtgov.keyring)"


def percentage(text: str) -> float:
    """A finite percentage from 0 to 10,000 for ``--threshold-pct`` (argparse: exit 2)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 10_000:  # NaN fails too
        raise argparse.ArgumentTypeError(f"expected a percentage from 0 to 10000, not {text!r}")
    return value


def open_store(args: argparse.Namespace) -> Any:
    from pytest_rtgov.cli.options import paths
    from pytest_rtgov.errors import RtgovError
    from pytest_rtgov.logs import log_event
    from pytest_rtgov.store.delta_index import DeltaIndexStore, NoKeys
    from pytest_rtgov.store.keys import require_signatures

    try:
        trust = paths(args).trust(required=require_signatures(False))
    except RtgovError as exc:
        # Keys only let the index take a checkpoint's root instead of hashing the log.
        log_event("index.no_keys", level=logging.INFO, error=str(exc))
        return DeltaIndexStore(args.dir, trust=NoKeys())
    return DeltaIndexStore(args.dir, trust=trust)


def run_id_in_index(args: argparse.Namespace, ref: str, index: Any) -> str:
    from pytest_rtgov.store.runs import RunStore

    try:
        run_id = RunStore(args.dir).resolve(ref)
    except RecordNotFoundError:
        from pytest_rtgov.store.prune import resolve_pruned

        pruned = resolve_pruned(args.dir, ref)  # `rtgov gc` kept its leaves, the index too
        if pruned is None or pruned not in index.run_pos:
            raise
        run_id = pruned
    if run_id not in index.run_pos:
        raise RecordNotFoundError(
            f"run {run_id} is not in the ledger's history (was it recorded with a ledger?)"
        )
    return run_id
