"""``rtgov gc --keep N | --older-than DAYS [--dry-run]``: prunes old runs' records,
captures and artifacts; the ledger keeps their leaves and records the prune in a signed
``prune`` leaf (:mod:`pytest_rtgov.store.prune`), so ``rtgov verify`` still passes.

Exit codes: 0 (also when nothing is to be pruned); 2 bad arguments (neither or both of
``--keep`` and ``--older-than``, a negative number); 3 no state directory; 4 a ledger
whose frames do not check, an unreadable baseline file or key; 7 the prune leaf could
not be appended and signed (nothing was deleted).
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from pytest_rtgov.cli.options import add_gates, add_keyring, add_signing_key, paths
from pytest_rtgov.core.format import format_bytes
from pytest_rtgov.errors import NotFoundError

__all__ = ["add_parsers", "run"]

_SHOWN = 20  # runs listed one per line; the rest are counted


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0, not {text!r}")
    return value


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:  # NaN fails too
        raise argparse.ArgumentTypeError(f"expected a number of days from 0, not {text!r}")
    return value


def add_parsers(sub: Any) -> None:
    gc = sub.add_parser(
        "gc",
        help="prune old runs' records, captures and artifacts (the ledger keeps their leaves)",
    )
    which = gc.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--keep",
        type=_count,
        metavar="N",
        help="keep the N newest runs (the last the ledger recorded)",
    )
    which.add_argument(
        "--older-than",
        type=_days,
        metavar="DAYS",
        help="prune runs that started more than DAYS days ago",
    )
    gc.add_argument(
        "--dry-run", action="store_true", help="say what would be pruned; remove nothing"
    )
    add_gates(gc, "gates file naming the baseline whose runs are kept")
    add_keyring(gc)
    add_signing_key(gc, "the prune leaf's checkpoint")


def run(args: argparse.Namespace) -> int:
    import time

    from pytest_rtgov.store.baselines import who_am_i
    from pytest_rtgov.store.prune import Policy, collect, plan_prune

    where = paths(args)
    if not where.state_dir.is_dir():
        raise NotFoundError(f"no state directory {where.state_dir} (give it with --dir)")
    policy = Policy(keep=args.keep, older_than_days=args.older_than)
    # The baselines whose source runs stay: the committed one (gates.toml) and this
    # machine's local one.
    dirs = [where.state_dir / "baseline-local"]
    gated = where.baseline_dir_if_gated()
    if gated is not None:
        dirs.insert(0, gated)
    if args.dry_run:
        plan = plan_prune(where.state_dir, policy, baseline_dirs=dirs, now=time.time())
        _say_plan(plan, "would prune")
        print(
            f"rtgov gc --dry-run: would prune {len(plan.prune)} run(s)"
            + (f" and finish {len(plan.pending)} earlier prune(s)" if plan.pending else "")
            + f", freeing {format_bytes(plan.bytes_to_free())}; nothing removed"
        )
        return 0
    from pytest_rtgov.cli.signing import signing_key
    from pytest_rtgov.store.keys import require_signatures

    def waiting(message: str) -> None:
        print(f"rtgov gc: {message}", file=sys.stderr, flush=True)

    result = collect(  # the prune leaf not logged: PruneNotLoggedError (7)
        where.state_dir,
        policy,
        baseline_dirs=dirs,
        signer=lambda: signing_key(args).signer,
        sign_uncovered=not require_signatures(False),
        who=who_am_i(),
        on_wait=waiting,
    )
    plan = result.plan
    _say_plan(plan, "pruned")
    for path in result.left:
        print(f"rtgov gc: warning: {path} is not the record the prune leaf names: left in place",
              file=sys.stderr)  # fmt: skip
    line = f"rtgov gc: pruned {len(plan.prune)} run(s) ({policy.describe()})"
    if plan.pending:
        line += f", finished {len(plan.pending)} earlier prune(s)"
    line += f", {format_bytes(result.freed)} freed; {len(plan.kept)} run(s) kept"
    if result.append is not None:
        line += (
            f"; ledger leaf {result.append.size - 1} records it (checkpoint "
            f"{result.append.checkpoint_path})"
        )
    print(line)
    return 0


def _say_plan(plan: Any, verb: str) -> None:
    def listing(title: str, rows: dict[str, str]) -> None:
        if not rows:
            return
        print(f"{title} ({len(rows)}):")
        for run_id, why in list(rows.items())[:_SHOWN]:
            print(f"  {run_id}  {why}")
        if len(rows) > _SHOWN:
            print(f"  ... and {len(rows) - _SHOWN} more")

    listing(verb, {r: format_bytes(plan.sizes.get(r, 0)) for r in plan.prune})
    listing(
        f"{verb} earlier (an interrupted gc left files)",
        {r: format_bytes(plan.sizes.get(r, 0)) for r in plan.pending},
    )
    listing("kept", plan.kept)
    listing("left alone", plan.untouched)
