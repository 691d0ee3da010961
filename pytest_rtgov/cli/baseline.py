"""``rtgov baseline show|diff|refresh|sign``: read, compare, refresh and sign the baseline."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_rtgov.cli.options import add_gates, add_keyring, add_signing_key, paths
from pytest_rtgov.cli.signing import NotRecordedError, log_leaves, signing_key
from pytest_rtgov.errors import (
    InvalidOptionError,
    NotFoundError,
    RecordFormatError,
    RefusedError,
    RtgovError,
)

if TYPE_CHECKING:
    from pytest_rtgov.store.runs import RunStore

__all__ = ["add_parsers", "run"]


def add_parsers(sub: Any) -> None:
    baseline = sub.add_parser("baseline", help="show, diff or refresh the gates' baseline")
    add_gates(baseline)
    bsub = baseline.add_subparsers(dest="baseline_command", required=True, metavar="ACTION")
    bsub.add_parser("show", help="fingerprints, subjects and the refresh history")
    diff = bsub.add_parser("diff", help="every gate of a run against the baseline")
    diff.add_argument("run", nargs="?", default="latest")
    refresh = bsub.add_parser("refresh", help="take a run's values as the new baseline")
    refresh.add_argument("--from", dest="run", default="latest", help="run (default: latest)")
    refresh.add_argument("--reason", default=None, help="why (required when CI=true)")
    refresh.add_argument(
        "--drop-stale", action="store_true", help="drop subjects the run did not collect"
    )
    add_signing_key(refresh, "the new baseline")
    add_keyring(refresh)
    sign = bsub.add_parser("sign", help="sign the baseline as it is, after review (audited)")
    sign.add_argument("--reason", default=None, help="why (required when CI=true)")
    add_signing_key(sign, "the baseline")
    add_keyring(sign)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def run(args: argparse.Namespace, runs: RunStore) -> int:
    """``rtgov baseline ACTION``: 0, or a typed error (exit 2, 3, 4, 5 or 7)."""
    from pytest_rtgov.core.gates import evaluate_gates
    from pytest_rtgov.store.baselines import BaselineStore, who_am_i

    where = paths(args)
    gates = where.load_gates()
    directory = where.baseline_dir(gates)
    baseline = BaselineStore(directory)
    if args.baseline_command == "show":
        print(f"baseline: {directory}")
        for path in sorted(directory.glob("env-*.json")):
            doc = _baseline_doc(path, "environment")
            env = ", ".join(f"{k}={v}" for k, v in sorted(doc["environment"].items()) if v)
            print(f"  {path.name}: {len(doc['subjects'])} subjects measured on {env}")
        if baseline.metrics_path.is_file():
            doc = _baseline_doc(baseline.metrics_path)
            count = sum(len(v) for v in doc["subjects"].values())
            print(f"  metrics.json: {count} metrics of {len(doc['subjects'])} subjects")
        history = baseline.history()
        print(f"refreshes ({len(history)}):")
        for refresh in history:
            print(
                f"  {refresh['at']}  {refresh['who']}  run {refresh['run_id']}  "
                f"{len(refresh['changes'])} changes  reason: {refresh['reason']}"
            )
            for change in refresh["changes"][:20]:
                if change.get("dropped"):
                    print(f"      dropped {change['subject']}")
                else:
                    print(
                        f"      {change['subject']} {change['metric']}: "
                        f"{change['old']} -> {change['new']}"
                    )
        return 0
    if args.baseline_command == "sign":
        return _sign_baseline(args, baseline)
    if args.baseline_command == "diff":
        from pytest_rtgov.cli.runs import standing_warning
        from pytest_rtgov.report.terminal import render_results

        record, standing = runs.read_checked(args.run)
        warning = standing_warning(runs, record.run_id, standing)
        if warning:
            print(f"!! {warning}")

        results, empty = evaluate_gates(gates, record, baseline.view(record.environment))
        sys.stdout.write(render_results(results, empty, markup=sys.stdout.isatty()))
        return 0
    # refresh: only from a record the ledger covers, as it is there
    record = runs.read_covered(args.run)
    if _in_ci() and not args.reason:
        raise InvalidOptionError("baseline refresh with CI=true needs --reason TEXT")
    if record.exit_status != 0:
        raise RefusedError(
            f"run {record.run_id} ended with exit status {record.exit_status}: "
            "refusing to take it as the baseline"
        )
    failed = _seal_failure(args, baseline, "refresh")
    signing = signing_key(args)
    stale = baseline.stale(record)
    entry = baseline.update(
        record,
        who=who_am_i(),
        reason=args.reason or "rtgov baseline refresh",
        drop_stale=args.drop_stale,
    )
    print(
        f"baseline {directory} refreshed from run {record.run_id}: {len(entry.changes)} changes, "
        f"by {entry.who}: {entry.reason}"
    )
    if stale and not args.drop_stale:
        print(f"stale subjects kept (not in this run; --drop-stale drops them): {', '.join(stale)}")
    return _seal_and_log(args, baseline, entry, signing, failed_seal=failed)


def _seal_failure(args: argparse.Namespace, baseline: Any, action: str) -> str | None:
    """What fails in the baseline's current seal (None: it verifies, or there is none
    yet). Re-sealing a failed seal needs --reason (else InvalidOptionError, exit 2), and
    the ledger records what failed."""
    from pytest_rtgov.store.baselines import baseline_seal_status

    failure = baseline_seal_status(baseline, paths(args).trust(required=False)).failure
    if failure is not None and not args.reason:
        raise InvalidOptionError(
            f"baseline {action} needs --reason TEXT: the baseline's seal fails "
            f"({failure}); the reason and what failed go to the ledger"
        )
    return failure


def _baseline_doc(path: Path, *tables: str) -> dict[str, Any]:
    """A baseline file for ``baseline show``: ``subjects`` (and ``tables``) mappings of
    tables, else a RecordFormatError naming the file and the key."""
    from pytest_rtgov.store.files import read_json

    doc = read_json(path)
    if not isinstance(doc, dict):
        raise RecordFormatError(str(path), "$", "an object")
    for key in ("subjects", *tables):
        if not isinstance(doc.get(key), dict):
            raise RecordFormatError(str(path), f"$.{key}", "an object")
    if not all(isinstance(v, dict) for v in doc["subjects"].values()):
        raise RecordFormatError(str(path), "$.subjects", "an object of objects")
    return doc


def _sign_baseline(args: argparse.Namespace, baseline: Any) -> int:
    from pytest_rtgov.store.baselines import RefreshEntry, who_am_i

    if _in_ci() and not args.reason:
        raise InvalidOptionError("baseline sign with CI=true needs --reason TEXT")
    if not baseline.exists():
        raise NotFoundError(f"no baseline in {baseline.directory} to sign")
    failed = _seal_failure(args, baseline, "sign")
    signing = signing_key(args)
    from datetime import datetime, timezone

    entry = RefreshEntry(
        at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        who=who_am_i(),
        reason=args.reason or "rtgov baseline sign",
        run_id="",
        fingerprint="",
        changes=[],
    )
    return _seal_and_log(args, baseline, entry, signing, failed_seal=failed)


def _seal_and_log(
    args: argparse.Namespace,
    baseline: Any,
    entry: Any,
    signing: Any,
    *,
    failed_seal: str | None = None,
) -> int:
    """Sign the baseline folder and append the change to the ledger with a checkpoint
    (:class:`NotRecordedError`, exit 7, when either fails)."""
    from pytest_rtgov.store.baselines import refresh_leaf, seal_baseline

    try:
        digest = seal_baseline(baseline, signing.signer, entry)
    except (RtgovError, OSError) as exc:
        raise NotRecordedError(f"baseline written but not signed: {exc}") from exc
    leaf = refresh_leaf(
        entry, digest, directory=baseline.directory, state_dir=args.dir, failed_seal=failed_seal
    )
    result = log_leaves(args, [leaf], signing, entry.at, "the signed baseline")
    print(
        f"signed by {signing.verifier.name}; ledger leaf {result.size - 1}, "
        f"checkpoint {result.checkpoint_path}"
    )
    return 0
