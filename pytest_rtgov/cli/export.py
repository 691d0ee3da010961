"""``rtgov export`` (a run record as JSON, Prometheus text, OTLP/JSON, JUnit XML or Markdown)
and ``rtgov report`` (the HTML gate report of a run).

Exit codes (besides 0):
    2  the output file cannot be written
    3  the requested run record does not exist
    4  the record is unreadable, does not match its schema, or cannot be exported; or the
       ledger does not cover it (no verdict leaf names it, or the file was edited)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pytest_rtgov.errors import RecordFormatError, RecordNotFoundError

__all__ = ["add_parsers", "add_report_parser", "report", "run"]

_EXIT_OK = 0
_EXIT_USAGE = 2
_EXIT_NOT_FOUND = 3
_EXIT_BAD_RECORD = 4


def add_parsers(sub: Any) -> None:
    """Add ``export`` to the ``rtgov`` subcommands (``sub`` from ``add_subparsers``)."""
    from pytest_rtgov.report.export import FORMATS

    export = sub.add_parser(
        "export", help="export a run's metrics, thresholds and verdicts for other tools"
    )
    export.add_argument(
        "--format",
        dest="format",
        choices=FORMATS,
        default="json",
        help="json (default), prometheus (text exposition), otlp (OTLP/JSON), junit, markdown",
    )
    export.add_argument("run", nargs="?", default="latest", help="run id, unique prefix, or latest")
    export.add_argument(
        "-o", "--output", type=Path, default=None, help="write here instead of stdout"
    )


def run(args: argparse.Namespace) -> int:
    """Export ``args.run`` of the state directory ``args.dir`` in ``args.format``."""
    from pytest_rtgov.report.export import ExportError, export
    from pytest_rtgov.store.files import atomic_write
    from pytest_rtgov.store.runs import RunStore

    try:
        # Exports feed CI summaries and dashboards: only what the ledger vouches for.
        record = RunStore(args.dir).read_covered(args.run)
        data = export(record, args.format)
    except RecordNotFoundError as exc:
        print(f"rtgov: {exc}", file=sys.stderr)
        return _EXIT_NOT_FOUND
    except RecordFormatError as exc:
        print(f"rtgov: invalid file: {exc}", file=sys.stderr)
        return _EXIT_BAD_RECORD
    except ExportError as exc:
        print(f"rtgov: cannot export: {exc}", file=sys.stderr)
        return _EXIT_BAD_RECORD
    if args.output is None:
        sys.stdout.flush()
        buffer = getattr(sys.stdout, "buffer", None)
        if buffer is not None:
            buffer.write(data)
            buffer.flush()
        else:  # a text-only stream (some test harnesses)
            sys.stdout.write(data.decode("utf-8"))
        return _EXIT_OK
    try:
        atomic_write(args.output, data)
    except OSError as exc:
        print(f"rtgov: cannot write {args.output}: {exc}", file=sys.stderr)
        return _EXIT_USAGE
    return _EXIT_OK


def add_report_parser(sub: Any) -> None:
    """Add ``report`` to the ``rtgov`` subcommands."""
    report = sub.add_parser("report", help="write the self-contained HTML gate report of a run")
    report.add_argument("run", nargs="?", default="latest")
    report.add_argument("-o", "--out", type=Path, default=None, help="default: DIR/report.html")
    report.add_argument("--keyring", type=Path, default=Path("rtgov.keyring"))


def report(args: argparse.Namespace) -> int:
    """``rtgov report``: write the HTML report of a covered run."""
    from pytest_rtgov.cli.delta import guarded

    return guarded(_report, args)


def _report(args: argparse.Namespace) -> int:
    from pytest_rtgov.publish.report_files import write_report
    from pytest_rtgov.store.keys import load_trust, require_signatures
    from pytest_rtgov.store.runs import RunStore

    record = RunStore(args.dir).read_covered(args.run)  # an uncovered record is refused
    trust = load_trust(keyring=args.keyring, state_dir=args.dir, required=require_signatures(False))
    out = write_report(
        args.out or args.dir / "report.html", record, state_dir=args.dir, trust=trust
    )
    print(f"report of run {record.run_id} written to {out}")
    return 0
