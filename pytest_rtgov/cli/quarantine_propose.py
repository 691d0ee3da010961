"""``rtgov quarantine propose [--window N] [--clean-runs N] [--apply --owner WHO --issue URL
[--expires DATE]] [--json]``: quarantine entries proposed from the ledger's history.

The newest covered run records (``store/quarantine_history.py``) are judged by
``core/quarantine_propose.py``; each proposal is printed with its evidence and the exact
``rtgov quarantine add`` (or ``remove``) command that applies it. Applying is a human
step, or ``--apply``: every proposal then goes through the same functions those commands
use (signed entry, ledger leaf). Exit 0 whatever is proposed; 4 for a bad option.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_rtgov.errors import InvalidOptionError

if TYPE_CHECKING:
    from pytest_rtgov.core.quarantine_propose import Estimate, Options, Proposal, Proposals

__all__ = ["reason_of", "run", "utc_today"]

OWNER, ISSUE = "WHO", "URL"  # the placeholders of a printed command, without --owner/--issue


def utc_today() -> date:
    """The day entries are created on, as ``rtgov quarantine add`` reads it: today in
    UTC, or ``$RTGOV_TODAY`` (core/quarantine_record.py)."""
    from pytest_rtgov.store.quarantine_file import quarantine_today

    return quarantine_today()


def _options(args: argparse.Namespace) -> Options:
    from pytest_rtgov.core.quarantine_propose import DEFAULTS, Options

    window = getattr(args, "window", None)
    window = DEFAULTS.window if window is None else int(window)
    clean = getattr(args, "clean_runs", None)
    clean = DEFAULTS.clean_runs if clean is None else int(clean)
    for name, value in (("--window", window), ("--clean-runs", clean)):
        if value < 1:
            raise InvalidOptionError(f"{name} {value}: expected a whole number of runs, 1 or more")
    return Options(window=window, clean_runs=clean)


def _max_days(args: argparse.Namespace, gates_file: Path) -> int:
    from pytest_rtgov.core.quarantine import DEFAULT_MAX_DAYS

    if not gates_file.is_file():
        return DEFAULT_MAX_DAYS
    from pytest_rtgov.store.gates_file import load_gates

    return int(getattr(load_gates(gates_file), "quarantine_max_days", DEFAULT_MAX_DAYS))


def _expires(args: argparse.Namespace, today: date, max_days: int) -> str:
    text = getattr(args, "expires", None)
    if text is None:
        return (today + timedelta(days=max_days)).isoformat()
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise InvalidOptionError(f"--expires {text}: expected a date YYYY-MM-DD") from None


def reason_of(est: Estimate) -> str:
    """The reason an applied (or printed) entry gives: its evidence in one sentence."""
    what = "breaches" if est.kind == "gate" else "failures"
    second = "unconfirmed breaches" if est.kind == "gate" else "passes after a rerun"
    return (
        f"intermittent: bad in {est.bad} of {est.runs} runs ({est.failures} {what}, "
        f"{est.retries} {second}), failure rate {est.mean:.2f} "
        f"(90% interval {est.low:.2f}-{est.high:.2f})"
    )


def _command(proposal: Proposal, owner: str, issue: str, expires: str) -> str:
    """The exact command that applies ``proposal`` (``WHO``/``URL``: yours to fill in)."""
    if proposal.action == "remove":
        words = ["remove", proposal.subject, "--reason", _removal_reason(proposal)]
    else:
        words = ["add", proposal.subject, "--owner", owner, "--reason",
                 reason_of(proposal.estimate), "--issue", issue, "--expires", expires]
        for digest in proposal.estimate.evidence:
            words += ["--evidence", digest]
    return shlex.join(["rtgov", "quarantine", *words])


def _evidence(est: Estimate) -> str:
    second = "unconfirmed breaches" if est.kind == "gate" else "passed on rerun"
    first = "breaches" if est.kind == "gate" else "failures"
    return (
        f"runs {est.runs}, {first} {est.failures}, {second} {est.retries}, transitions "
        f"{est.transitions}; failure rate {est.mean:.3f} (90% interval "
        f"{est.low:.3f}-{est.high:.3f})"
    )


def _lines(found: Proposals, history_skipped: tuple[str, ...], owner: str, issue: str,
           expires: str, state_dir: Path) -> list[str]:
    runs = found.runs
    span = f" ({runs[0]} .. {runs[-1]})" if runs else ""
    lines = [f"rtgov quarantine propose: {len(runs)} runs{span}"]
    if not runs:
        lines.append(f"  no run record the ledger covers in {state_dir}: run `pytest --rtgov` "
                     "(or --rtgov-gate) first; proposals need at least 5 runs")
    lines += [f"  skipped {why}" for why in history_skipped]
    lines.append(f"Proposed quarantine ({len(found.adds)}):")
    for p in found.adds:
        lines += [f"  {p.subject}", f"    {_evidence(p.estimate)}",
                  f"    bad runs: {', '.join(p.estimate.bad_runs)}",
                  f"    {_command(p, owner, issue, expires)}"]
    lines.append(f"Proposed removal ({len(found.removals)}):")
    for p in found.removals:
        lines += [f"  {p.subject} (entry {p.entry}): clean in the last {p.clean_runs} runs "
                  "it ran in", f"    {_command(p, owner, issue, expires)}"]
    lines.append(f"Not proposed ({len(found.excluded)}):")
    for e in found.excluded:
        lines.append(f"  {e.subject}: {e.detail} [{_evidence(e.estimate)}]")
    return lines


def _apply(args: argparse.Namespace, found: Proposals, *, owner: str, issue: str,
           expires: str) -> list[str]:
    """Each proposal through ``rtgov quarantine add`` / ``remove`` themselves (checks,
    signed entry, ``quarantine`` leaf); the first refusal stops with its error."""
    from pytest_rtgov.cli import quarantine

    applied = []
    for p in found.adds:
        change = argparse.Namespace(**{
            **vars(args), "subject": p.subject, "owner": owner, "issue": issue,
            "expires": expires, "reason": reason_of(p.estimate),
            "evidence": list(p.estimate.evidence),
        })
        quarantine._add(change)
        applied.append(f"add {p.subject}")
    for p in found.removals:
        change = argparse.Namespace(**{**vars(args), "subject": p.subject,
                                       "reason": _removal_reason(p)})
        quarantine._remove(change)
        applied.append(f"remove {p.subject}")
    return applied


def _removal_reason(proposal: Proposal) -> str:
    return f"clean in {proposal.clean_runs} consecutive runs (rtgov quarantine propose)"


def run(args: argparse.Namespace) -> int:
    from pytest_rtgov.cli.options import paths as resolve_paths
    from pytest_rtgov.core.quarantine_propose import propose
    from pytest_rtgov.store.keys import require_signatures
    from pytest_rtgov.store.quarantine_file import load_quarantine
    from pytest_rtgov.store.quarantine_history import load_history

    options = _options(args)
    where = resolve_paths(args)
    root = where.project[0]
    today = utc_today()
    owner, issue = getattr(args, "owner", None), getattr(args, "issue", None)
    applying = bool(getattr(args, "apply", False))
    if applying and not (owner and issue):
        missing = " and ".join(n for n, v in (("--owner", owner), ("--issue", issue)) if not v)
        raise InvalidOptionError(f"--apply: {missing} required (who owns the entries, where "
                                 "they are tracked)")
    max_days = _max_days(args, where.gates_file)
    expires = _expires(args, today, max_days)
    trust = where.trust(required=require_signatures(False))
    quarantine = load_quarantine(root, trust, today=today, state_dir=args.dir)
    history = load_history(where.state_dir, runs=max(options.window, options.clean_runs))
    found = propose(history.runs, quarantine, options)
    applied: list[str] = []
    if applying:
        applied = _apply(args, found, owner=str(owner), issue=str(issue), expires=expires)
    if getattr(args, "format", None) == "json" or getattr(args, "json", False):
        from pytest_rtgov.core.canonical import pretty_json

        document: dict[str, Any] = {
            **found.to_dict(), "skipped": list(history.skipped), "applied": applied,
            "commands": [_command(p, owner or OWNER, issue or ISSUE, expires)
                         for p in (*found.adds, *found.removals)],
        }
        sys.stdout.write(pretty_json(document))
        return 0
    print("\n".join(_lines(found, history.skipped, owner or OWNER, issue or ISSUE, expires,
                           where.state_dir)))
    for line in applied:
        print(f"applied: {line}")
    return 0
