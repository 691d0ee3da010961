"""The ``rtgov`` command line. Reads records through ``store`` and ``core``; no pytest.

Exit codes:
    0  success
    2  bad command-line arguments (argparse)
    3  the requested run record does not exist
    4  a record file is unreadable or does not match its schema
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pytest_rtgov.core.canonical import pretty_json
from pytest_rtgov.errors import RecordFormatError, RecordNotFoundError
from pytest_rtgov.logs import LOGGER_NAME, JsonLinesFormatter, log_event

__all__ = ["EXIT_BAD_RECORD", "EXIT_NOT_FOUND", "EXIT_OK", "main"]

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_BAD_RECORD = 4


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
    return parser


def _setup_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonLinesFormatter() if fmt == "json" else logging.Formatter("rtgov: %(message)s")
    )
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    logger.setLevel(level.upper())


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(args.log_format, args.log_level)
    from pytest_rtgov.store.runs import RunStore

    store = RunStore(args.dir)
    try:
        if args.command == "runs":
            for run_id in store.run_ids():
                print(run_id)
            return EXIT_OK
        record = store.read(args.run)
        log_event("cli.show", run_id=record.run_id, level=logging.DEBUG)
        if args.json:
            sys.stdout.write(pretty_json(record.to_dict()))
        else:
            from pytest_rtgov.report.terminal import render_run

            sys.stdout.write(render_run(record, markup=sys.stdout.isatty()))
        return EXIT_OK
    except RecordNotFoundError as exc:
        print(f"rtgov: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except RecordFormatError as exc:
        print(f"rtgov: invalid run record: {exc}", file=sys.stderr)
        return EXIT_BAD_RECORD


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
