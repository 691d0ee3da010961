"""The ``rtgov`` command line: the parser, the dispatch to one module per command family,
and the mapping of errors to exit codes. Reads records through ``store`` and ``core``; no pytest.

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

from pytest_rtgov.core.gates_config import GatesConfigError
from pytest_rtgov.errors import RecordFormatError, RecordNotFoundError, RtgovError
from pytest_rtgov.logs import LOGGER_NAME, JsonLinesFormatter

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
    from pytest_rtgov.cli import baseline as cli_baseline
    from pytest_rtgov.cli import compare as cli_compare
    from pytest_rtgov.cli import export as cli_export
    from pytest_rtgov.cli import graph as cli_graph
    from pytest_rtgov.cli import ledger as cli_ledger
    from pytest_rtgov.cli import merge as cli_merge
    from pytest_rtgov.cli import runs as cli_runs

    cli_runs.add_parsers(sub)
    cli_baseline.add_parsers(sub)
    cli_ledger.add_parsers(sub)
    cli_compare.add_parsers(sub)
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
        from pytest_rtgov.cli.signing import append_run

        return cli_merge.run(args, on_written=lambda record, _path: append_run(args, record))
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
        from pytest_rtgov.cli import compare as cli_compare
        from pytest_rtgov.cli import export as cli_export
        from pytest_rtgov.cli import graph as cli_graph
        from pytest_rtgov.cli import ledger as cli_ledger

        try:
            if args.command == "compare":
                return cli_compare.run(args)
            if args.command == "report":
                return cli_export.report(args)
            if args.command == "graph":
                return cli_graph.run(args)
            return cli_ledger.run(args)
        except RecordNotFoundError as exc:
            print(f"rtgov: {exc}", file=sys.stderr)
            return EXIT_NOT_FOUND
        except (RecordFormatError, GatesConfigError) as exc:
            print(f"rtgov: invalid file: {exc}", file=sys.stderr)
            return EXIT_BAD_RECORD
    try:
        from pytest_rtgov.cli import baseline as cli_baseline
        from pytest_rtgov.cli import runs as cli_runs

        if args.command == "baseline":
            return cli_baseline.run(args, store)
        if args.command == "runs":
            return cli_runs.runs(store)
        return cli_runs.show(args, store)
    except RecordNotFoundError as exc:
        print(f"rtgov: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except RecordFormatError as exc:
        print(f"rtgov: invalid file: {exc}", file=sys.stderr)
        return EXIT_BAD_RECORD
    except GatesConfigError as exc:
        print(f"rtgov: invalid gates file: {exc}", file=sys.stderr)
        return EXIT_BAD_RECORD


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
