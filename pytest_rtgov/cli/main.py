"""The ``rtgov`` command line. Reads records through ``store`` and ``core``; no pytest.

Exit codes:
    0  success
    2  bad command-line arguments (argparse, or a refresh in CI without --reason, or a
       ``baseline refresh|sign`` of a baseline whose seal fails without --reason)
    3  the requested run record does not exist
    4  a record, baseline or gates file is unreadable or does not match its schema; a run
       record the ledger does not cover (no verdict leaf names it, or it was edited)
       given to ``baseline refresh``, ``merge``, ``report`` or ``export``; a ledger
       whose frames do not check when a command needs to know which records it covers
    5  refusing to refresh a baseline from a run whose tests did not pass
    7  the baseline was refreshed but could not be signed or logged in the ledger
    6  ``rtgov merge --gate``: a gate of the merged run breached
    8  ``rtgov compare``: the two sides are not comparable (differences printed)
    9  ``rtgov merge``: the records are not shards of one run (overlap, fingerprints...)
    10-16  ``rtgov verify`` and ``rtgov verify-proof`` failures (see cli_ledger); 10-12 also
           from ``compare`` and ``graph`` when the ledger cannot be indexed (see cli_graph)
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_rtgov.core.canonical import pretty_json
from pytest_rtgov.core.gates_config import GatesConfigError
from pytest_rtgov.errors import RecordFormatError, RecordNotFoundError, RtgovError
from pytest_rtgov.logs import LOGGER_NAME, JsonLinesFormatter, log_event

if TYPE_CHECKING:
    from pytest_rtgov.store.runs import RunStore

__all__ = ["EXIT_BAD_RECORD", "EXIT_NOT_FOUND", "EXIT_OK", "main"]

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_BAD_RECORD = 4
EXIT_REFUSED = 5
EXIT_INTEGRITY = 7


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtgov", description="pytest-rtgov command line")
    parser.add_argument(
        "--dir", default=".rtgov", type=Path, help="state directory (default: .rtgov)"
    )
    parser.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="stderr log format"
    )
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="warning",
        help="stderr log level (default: warning)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    show = sub.add_parser("show", help="print a run record")
    show.add_argument("run", nargs="?", default="latest", help="run id, unique prefix, or latest")
    show.add_argument("--json", action="store_true", help="print the record as JSON")
    sub.add_parser("runs", help="list run ids, oldest first")
    baseline = sub.add_parser("baseline", help="show, diff or refresh the gates' baseline")
    baseline.add_argument(
        "--gates", type=Path, default=Path("gates.toml"), help="gates file (default: gates.toml)"
    )
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
    refresh.add_argument(
        "--signing-key",
        type=Path,
        default=None,
        help="key that signs the new baseline (default: $RTGOV_SIGNING_KEY, else the local key)",
    )
    refresh.add_argument("--keyring", type=Path, default=Path("rtgov.keyring"))
    sign = bsub.add_parser("sign", help="sign the baseline as it is, after review (audited)")
    sign.add_argument("--reason", default=None, help="why (required when CI=true)")
    sign.add_argument("--signing-key", type=Path, default=None)
    sign.add_argument("--keyring", type=Path, default=Path("rtgov.keyring"))
    from pytest_rtgov.cli import export as cli_export
    from pytest_rtgov.cli import graph as cli_graph
    from pytest_rtgov.cli import ledger as cli_ledger
    from pytest_rtgov.cli import merge as cli_merge

    cli_ledger.add_parsers(sub)
    cli_graph.add_parsers(sub)
    cli_export.add_parsers(sub)
    cli_merge.add_parsers(sub)
    return parser


def _setup_logging(fmt: str, level: str) -> tuple[logging.Handler, int]:
    """A stderr handler for this call; returns it and the logger's previous level, so
    that :func:`main` leaves the logger as it found it (an embedding process, a test
    calling ``main`` in-process, must not keep a handler on a stream that closes)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonLinesFormatter() if fmt == "json" else logging.Formatter("rtgov: %(message)s")
    )
    logger = logging.getLogger(LOGGER_NAME)
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    return handler, previous


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler, previous_level = _setup_logging(args.log_format, args.log_level)
    try:
        return _dispatch(args)
    except RtgovError as exc:  # an error no command mapped: a message, never a traceback
        print(f"rtgov: {exc}", file=sys.stderr)
        return EXIT_BAD_RECORD
    except OSError as exc:
        print(
            f"rtgov: cannot read or write {exc.filename or 'a file'}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return EXIT_BAD_RECORD
    finally:
        logger = logging.getLogger(LOGGER_NAME)
        logger.removeHandler(handler)
        logger.setLevel(previous_level)


def _dispatch(args: argparse.Namespace) -> int:
    from pytest_rtgov.store.files import symlinks_inside
    from pytest_rtgov.store.runs import RunStore

    links = symlinks_inside(args.dir) if args.command != "keys" and args.dir.is_dir() else []
    if links:  # the ledger, the index or a key would be read from or written to elsewhere
        print(
            f"rtgov: {links[0]} is a symbolic link inside the state directory {args.dir}: "
            "rtgov keeps only plain files and folders there; replace it",
            file=sys.stderr,
        )
        return EXIT_BAD_RECORD
    store = RunStore(args.dir)
    if args.command == "export":
        from pytest_rtgov.cli import export as cli_export

        return cli_export.run(args)
    if args.command == "merge":
        from pytest_rtgov.cli import merge as cli_merge

        return cli_merge.run(args, on_written=lambda record, _path: _append_run(args, record))
    if args.command in (
        "keys",
        "verify",
        "prove",
        "verify-proof",
        "ledger",
        "compare",
        "graph",
        "report",
    ):
        from pytest_rtgov.cli import graph as cli_graph
        from pytest_rtgov.cli import ledger as cli_ledger

        try:
            if args.command in ("compare", "graph", "report"):
                return cli_graph.run(args)
            return cli_ledger.run(args)
        except RecordNotFoundError as exc:
            print(f"rtgov: {exc}", file=sys.stderr)
            return EXIT_NOT_FOUND
        except (RecordFormatError, GatesConfigError) as exc:
            print(f"rtgov: invalid file: {exc}", file=sys.stderr)
            return EXIT_BAD_RECORD
    try:
        if args.command == "baseline":
            return _baseline(args, store)
        if args.command == "runs":
            return _runs(store)
        record, standing = store.read_checked(args.run)
        log_event("cli.show", run_id=record.run_id, standing=standing, level=logging.DEBUG)
        warning = _standing_warning(store, record.run_id, standing)
        if args.json:
            sys.stdout.write(pretty_json(record.to_dict()))
        else:
            from pytest_rtgov.report.terminal import render_run

            if warning:
                print(f"!! {warning}")
            sys.stdout.write(render_run(record, markup=sys.stdout.isatty()))
        return EXIT_OK
    except RecordNotFoundError as exc:
        print(f"rtgov: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except RecordFormatError as exc:
        print(f"rtgov: invalid file: {exc}", file=sys.stderr)
        return EXIT_BAD_RECORD
    except GatesConfigError as exc:
        print(f"rtgov: invalid gates file: {exc}", file=sys.stderr)
        return EXIT_BAD_RECORD


def _runs(store: RunStore) -> int:
    """Run ids, oldest first; a record the ledger does not cover gets a second column."""
    from pytest_rtgov.store.runs import standing_label

    covered = store.covered()
    for run_id in store.run_ids():
        try:
            label = standing_label(store.standing(run_id, covered))
        except RecordFormatError as exc:
            label = f"UNREADABLE ({exc.place}: expected {exc.expected})"
        print(f"{run_id}  {label}" if label else run_id)
    return EXIT_OK


def _standing_warning(store: RunStore, run_id: str, standing: str) -> str:
    """'' for a covered record; else its label and why, also logged to stderr."""
    from pytest_rtgov.store.runs import COVERED, UncoveredRecordError

    if standing == COVERED:
        return ""
    error = UncoveredRecordError(store.path_for(run_id), standing, run_id, store.ledger_log)
    warning = f"{error.label}: {error.source}: {error.why}"
    print(f"rtgov: warning: {warning}", file=sys.stderr)
    return warning


def _baseline(args: argparse.Namespace, runs: RunStore) -> int:
    import os

    from pytest_rtgov.core.gates import evaluate_gates
    from pytest_rtgov.store.baselines import BaselineStore, who_am_i
    from pytest_rtgov.store.gates_file import baseline_directory, load_gates

    gates = load_gates(args.gates)
    directory = baseline_directory(gates, [Path.cwd()])
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
        for entry in history:
            print(
                f"  {entry['at']}  {entry['who']}  run {entry['run_id']}  "
                f"{len(entry['changes'])} changes  reason: {entry['reason']}"
            )
            for change in entry["changes"][:20]:
                if change.get("dropped"):
                    print(f"      dropped {change['subject']}")
                else:
                    print(
                        f"      {change['subject']} {change['metric']}: "
                        f"{change['old']} -> {change['new']}"
                    )
        return EXIT_OK
    if args.baseline_command == "sign":
        return _sign_baseline(args, baseline)
    if args.baseline_command == "diff":
        from pytest_rtgov.report.terminal import render_results

        record, standing = runs.read_checked(args.run)
        warning = _standing_warning(runs, record.run_id, standing)
        if warning:
            print(f"!! {warning}")

        results, empty = evaluate_gates(gates, record, baseline.view(record.environment))
        sys.stdout.write(render_results(results, empty, markup=sys.stdout.isatty()))
        return EXIT_OK
    # refresh: only from a record the ledger covers, as it is there
    record = runs.read_covered(args.run)
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    if in_ci and not args.reason:
        print("rtgov: baseline refresh with CI=true needs --reason TEXT", file=sys.stderr)
        return EXIT_USAGE
    if record.exit_status != 0:
        print(
            f"rtgov: run {record.run_id} ended with exit status {record.exit_status}: "
            "refusing to take it as the baseline",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    failed = _seal_failure(args, baseline, "refresh")
    if isinstance(failed, int):
        return failed
    signing = _signing_key(args)
    if isinstance(signing, int):
        return signing
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


def _seal_failure(args: argparse.Namespace, baseline: Any, action: str) -> str | int | None:
    """What fails in the baseline's current seal (None: it verifies, or there is none
    yet), or an exit code: re-sealing a failed seal needs --reason, and the ledger
    records what failed."""
    from pytest_rtgov.store.baselines import baseline_seal_status
    from pytest_rtgov.store.keys import KeyError_, load_trust

    try:
        trust = load_trust(keyring=args.keyring, state_dir=args.dir, required=False)
    except KeyError_ as exc:
        print(f"rtgov: {exc}", file=sys.stderr)
        return EXIT_BAD_RECORD
    failure = baseline_seal_status(baseline, trust).failure
    if failure is not None and not args.reason:
        print(
            f"rtgov: baseline {action} needs --reason TEXT: the baseline's seal fails "
            f"({failure}); the reason and what failed go to the ledger",
            file=sys.stderr,
        )
        return EXIT_USAGE
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


def _log(args: argparse.Namespace, leaves: list[bytes], signing: Any, at: str, what: str) -> Any:
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


def _append_run(args: argparse.Namespace, record: Any) -> int:
    """Log a run the CLI wrote (a merged run) in the ledger; 0, or 7 when that fails."""
    from pytest_rtgov.core.ledger_records import run_leaves

    signing = _signing_key(args)
    if isinstance(signing, int):
        return signing
    result = _log(args, run_leaves(record), signing, record.ended_at, "the merged run")
    if isinstance(result, int):
        return result
    print(f"ledger: {result.size} leaves, checkpoint {result.checkpoint_path}")
    return 0


def _signing_key(args: argparse.Namespace) -> Any:
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


def _sign_baseline(args: argparse.Namespace, baseline: Any) -> int:
    import os

    from pytest_rtgov.store.baselines import RefreshEntry, who_am_i

    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    if in_ci and not args.reason:
        print("rtgov: baseline sign with CI=true needs --reason TEXT", file=sys.stderr)
        return EXIT_USAGE
    if not baseline.exists():
        print(f"rtgov: no baseline in {baseline.directory} to sign", file=sys.stderr)
        return EXIT_NOT_FOUND
    failed = _seal_failure(args, baseline, "sign")
    if isinstance(failed, int):
        return failed
    signing = _signing_key(args)
    if isinstance(signing, int):
        return signing
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
    """Sign the baseline folder and append the change to the ledger with a checkpoint."""
    from pytest_rtgov.errors import RtgovError
    from pytest_rtgov.store.baselines import refresh_leaf, seal_baseline

    try:
        digest = seal_baseline(baseline, signing.signer, entry)
    except (RtgovError, OSError) as exc:
        print(f"rtgov: baseline written but not signed: {exc}", file=sys.stderr)
        return EXIT_INTEGRITY
    leaf = refresh_leaf(
        entry, digest, directory=baseline.directory, state_dir=args.dir, failed_seal=failed_seal
    )
    result = _log(args, [leaf], signing, entry.at, "the signed baseline")
    if isinstance(result, int):
        return result
    print(
        f"signed by {signing.verifier.name}; ledger leaf {result.size - 1}, "
        f"checkpoint {result.checkpoint_path}"
    )
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
