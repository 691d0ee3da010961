"""What ``rtgov compare`` and ``rtgov graph`` share: the delta index they open, run ids
resolved in it, value formatting, and the exit codes of a ledger the index cannot read.

Exit codes (besides 0, 2, 3, 4):
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
import sys
from collections.abc import Callable
from typing import Any

from pytest_rtgov.errors import RecordNotFoundError

__all__ = [
    "EXIT_INCOMPARABLE",
    "EXIT_LEDGER_FRAME",
    "EXIT_LEDGER_LEAF",
    "EXIT_LEDGER_ROOT",
    "fmt_value",
    "guarded",
    "open_store",
    "percentage",
    "run_id_in_index",
]

EXIT_INCOMPARABLE = 8
EXIT_LEDGER_FRAME = 10
EXIT_LEDGER_LEAF = 11
EXIT_LEDGER_ROOT = 12
KEYRING_HELP = "keys whose checkpoint signatures the index may match (default: rtgov.keyring)"
_MEASURED_UNITS = {"wall_time": "s", "cpu_time": "s", "gpu_time": "s"}


def percentage(text: str) -> float:
    """A finite percentage from 0 to 10,000 for ``--threshold-pct`` (argparse: exit 2)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 10_000:  # NaN fails too
        raise argparse.ArgumentTypeError(f"expected a percentage from 0 to 10000, not {text!r}")
    return value


def guarded(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run ``command``; a ledger the index cannot read becomes exit 10, 11 or 12."""
    from pytest_rtgov.store.delta_index import IndexLeafError, LedgerRootMismatchError
    from pytest_rtgov.store.ledger import LedgerCorruptError

    try:
        return command(args)
    except LedgerCorruptError as exc:
        print(f"rtgov: ledger damaged: {exc}", file=sys.stderr)
        return EXIT_LEDGER_FRAME
    except IndexLeafError as exc:
        print(f"rtgov: {exc}", file=sys.stderr)
        return EXIT_LEDGER_LEAF
    except LedgerRootMismatchError as exc:
        print(f"rtgov: {exc}", file=sys.stderr)
        return EXIT_LEDGER_ROOT


def open_store(args: argparse.Namespace) -> Any:
    from pytest_rtgov.errors import RtgovError
    from pytest_rtgov.logs import log_event
    from pytest_rtgov.store.delta_index import DeltaIndexStore, NoKeys
    from pytest_rtgov.store.keys import load_trust, require_signatures

    try:
        trust = load_trust(
            keyring=args.keyring, state_dir=args.dir, required=require_signatures(False)
        )
    except RtgovError as exc:
        # Keys only let the index take a checkpoint's root instead of hashing the log.
        log_event("index.no_keys", level=logging.INFO, error=str(exc))
        return DeltaIndexStore(args.dir, trust=NoKeys())
    return DeltaIndexStore(args.dir, trust=trust)


def run_id_in_index(args: argparse.Namespace, ref: str, index: Any) -> str:
    from pytest_rtgov.store.runs import RunStore

    run_id = RunStore(args.dir).resolve(ref)
    if run_id not in index.run_pos:
        raise RecordNotFoundError(
            f"run {run_id} is not in the ledger's history (was it recorded with a ledger?)"
        )
    return run_id


def fmt_value(metric: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value[:19] + "…" if len(value) > 20 else value
    if metric in _MEASURED_UNITS:
        return f"{value * 1e3:.3f} ms"
    if metric in ("peak_memory", "gpu_memory"):
        return f"{value / 2**20:.2f} MiB"
    return f"{value:.6g}"
