"""``rtgov audit [--since CHECKPOINT] [--strict]``: governance replay of the ledger.

Every gated run the latest signed checkpoint covers is re-derived from the ledger's own
content: its record rebuilt from its leaves, its gates and baseline from the bytes the
session kept (``store/audit.py``), evaluated again by the pure gate evaluation
(``core/audit.py``). One line per run, then a summary.

Exit codes (besides the CLI's 2, 3, 4):
    0   every audited run re-derived (runs without recorded inputs are listed, not
        failed, unless ``--strict``)
    7   a recorded verdict or gate result does not re-derive, an input is missing or
        corrupt, or (``--strict``) a gated run recorded no inputs
    10-13  the ledger does not check, as ``rtgov verify`` says it (frame, leaf, root,
        checkpoint)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_rtgov.cli.options import add_format, add_keyring, paths
from pytest_rtgov.core.constants import ExitCode
from pytest_rtgov.errors import InvalidOptionError, RtgovError
from pytest_rtgov.logs import log_event

if TYPE_CHECKING:  # core.audit imports the gate evaluation: only when auditing
    from pytest_rtgov.core.audit import RunAudit

__all__ = ["add_parsers", "run"]


def add_parsers(sub: Any) -> None:
    audit = sub.add_parser(
        "audit", help="re-derive every gated verdict in the ledger from the ledger's own content"
    )
    audit.add_argument(
        "--since",
        metavar="CHECKPOINT",
        default=None,
        help="audit only runs whose verdict leaf comes after this checkpoint: a tree size, "
        "or a checkpoint file (e.g. .rtgov/ledger/checkpoints/N.txt)",
    )
    audit.add_argument(
        "--strict",
        action="store_true",
        help="fail (exit 7) on gated runs that recorded no inputs (older sessions)",
    )
    add_format(audit, ("text", "json"), "text", "text (default) or json: every run and finding")
    add_keyring(audit)
    audit.add_argument(
        "--require-signature",
        action="store_true",
        help="accept only keyring keys, not this machine's local key (implied by CI=true)",
    )


def _since(text: str | None) -> int:
    """``--since``: a tree size, or the size of a checkpoint file's body."""
    if text is None:
        return 0
    if text.isdecimal():
        return int(text)
    from pytest_rtgov.store.ledger import read_checkpoint_body

    path = Path(text)
    if not path.is_file():
        raise InvalidOptionError(f"--since {text}: expected a tree size or a checkpoint file")
    try:
        return read_checkpoint_body(path).size
    except RtgovError as exc:
        raise InvalidOptionError(f"--since {text}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from pytest_rtgov.store.audit import audit_ledger
    from pytest_rtgov.store.keys import require_signatures

    since = _since(args.since)
    trust = paths(args).trust(required=require_signatures(args.require_signature))
    counts = {"re-derived": 0, "differs": 0, "not auditable": 0}
    text = args.format == "text"
    if text:
        print(f"rtgov audit: gated runs in {args.dir / 'ledger'}" + (
            f" whose verdict leaf is at {since} or later" if since else ""))
    runs = []
    for audit in audit_ledger(args.dir, trust, since=since):
        counts[audit.outcome] += 1
        if text:
            print("\n".join(_lines(audit)))
        else:
            runs.append(_as_json(audit))
        log_event(
            "audit.run",
            run_id=audit.run_id,
            outcome=audit.outcome,
            findings=len(audit.findings),
            leaf=audit.verdict_index,
        )
    total = sum(counts.values())
    failed = counts["differs"] + (counts["not auditable"] if args.strict else 0)
    summary = (
        f"rtgov audit: {'FAILED' if failed else 'OK'}: {total} gated runs, "
        f"{counts['re-derived']} re-derived, {counts['differs']} not re-derived, "
        f"{counts['not auditable']} not auditable"
        + (" (--strict: a failure)" if args.strict and counts["not auditable"] else "")
    )
    named = {k.replace(" ", "_").replace("-", "_"): v for k, v in counts.items()}
    if text:
        print(summary)
    else:
        from pytest_rtgov.core.canonical import pretty_json

        document = {"since": since, "strict": bool(args.strict), "ok": not failed}
        sys.stdout.write(pretty_json({**document, "counts": named, "runs": runs}))
    log_event("audit.done", runs=total, failed=failed, **named)
    return int(ExitCode.INTEGRITY) if failed else 0


def _as_json(audit: RunAudit) -> dict[str, Any]:
    derived = audit.derived
    return {
        "run_id": audit.run_id,
        "verdict_leaf": audit.verdict_index,
        "outcome": audit.outcome,
        "reason": audit.reason or None,
        "verdict": None if derived is None else {
            "status": derived.status, "exit_status": derived.exit_status,
            "gate_results": len(derived.results), "breaches": len(derived.breaches),
        },
        "findings": [
            {"place": f.place, "field": f.field, "detail": f.detail} for f in audit.findings
        ],
    }


def _lines(audit: RunAudit) -> list[str]:
    head = f"  {audit.run_id} (verdict leaf {audit.verdict_index}): "
    if audit.outcome == "not auditable":
        return [head + f"not auditable ({audit.reason})"]
    if audit.ok and audit.derived is not None:
        v = audit.derived
        action = f", baseline {v.baseline_action}" if v.baseline_action else ""
        accepted = f" ({v.accepted} accepted)" if v.accepted is not None else ""
        return [
            head + f"re-derived: {v.status} (exit {v.exit_status}){action}, {len(v.results)} "
            f"gate results, {len(v.breaches)} breached{accepted}, "
            f"{v.count('unconfirmed')} unconfirmed"
        ]
    lines = [head + f"DOES NOT RE-DERIVE ({len(audit.findings)} findings)"]
    lines += [f"      {finding}" for finding in audit.findings]
    return lines
