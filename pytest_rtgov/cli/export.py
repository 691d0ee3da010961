"""``rtgov export`` (a run record as JSON, Prometheus text, OTLP/JSON, JUnit XML or Markdown)
and ``rtgov report`` (the HTML gate report of a run).

Exit codes (besides 0), mapped from the errors in ``cli.main.exit_code``:
    2  the output file cannot be written; the format needs an extra that is not installed
       (prometheus, otlp: ``pip install 'pytest-rtgov[exporters]'``)
    3  the requested run record does not exist
    4  the record is unreadable, does not match its schema, or cannot be exported; or the
       ledger does not cover it (no verdict leaf names it, or the file was edited)
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pytest_rtgov.cli.options import add_format, add_keyring, add_out, paths
from pytest_rtgov.errors import InvalidOptionError

__all__ = ["add_parsers", "add_report_parser", "report", "run"]


def add_parsers(sub: Any) -> None:
    """Add ``export`` to the ``rtgov`` subcommands (``sub`` from ``add_subparsers``)."""
    # the names alone (core/constants.py): report.export imports numpy, and every rtgov
    # command builds this parser
    from pytest_rtgov.core.constants import EXPORT_FORMATS as FORMATS

    export = sub.add_parser(
        "export", help="export a run's metrics, thresholds and verdicts for other tools"
    )
    add_format(
        export,
        FORMATS,
        "json",
        "json (default), prometheus (text exposition), otlp (OTLP/JSON), junit, markdown",
    )
    export.add_argument("run", nargs="?", default="latest", help="run id, unique prefix, or latest")
    add_out(export, "write here instead of stdout", old_output=True)


def run(args: argparse.Namespace) -> int:
    """Export ``args.run`` of the state directory ``args.dir`` in ``args.format``."""
    from pytest_rtgov.report.export import export
    from pytest_rtgov.store.files import atomic_write
    from pytest_rtgov.store.runs import RunStore

    # Exports feed CI summaries and dashboards: only what the ledger vouches for.
    record = RunStore(args.dir).read_covered(args.run)
    data = export(record, args.format)
    if args.out is None:
        sys.stdout.flush()
        buffer = getattr(sys.stdout, "buffer", None)
        if buffer is not None:
            buffer.write(data)
            buffer.flush()
        else:  # a text-only stream (some test harnesses)
            sys.stdout.write(data.decode("utf-8"))
        return 0
    try:
        atomic_write(args.out, data)
    except OSError as exc:
        raise InvalidOptionError(f"cannot write {args.out}: {exc}") from exc
    return 0


def add_report_parser(sub: Any) -> None:
    """Add ``report`` to the ``rtgov`` subcommands."""
    report = sub.add_parser("report", help="write the self-contained HTML gate report of a run")
    report.add_argument("run", nargs="?", default="latest")
    add_out(report, "default: DIR/report.html")
    add_keyring(report, "keys the report's ledger facts are checked against")


def report(args: argparse.Namespace) -> int:
    """``rtgov report``: write the HTML report of a covered run."""
    from pytest_rtgov.publish.report_files import write_report
    from pytest_rtgov.store.keys import require_signatures
    from pytest_rtgov.store.runs import RunStore

    record = RunStore(args.dir).read_covered(args.run)  # an uncovered record is refused
    where = paths(args)
    trust = where.trust(required=require_signatures(False))
    out = write_report(
        args.out or where.state_dir / "report.html", record, state_dir=where.state_dir, trust=trust
    )
    print(f"report of run {record.run_id} written to {out}")
    return 0
