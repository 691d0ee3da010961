"""``rtgov show`` and ``rtgov runs``: print one run record, list them all."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Any

from pytest_rtgov.cli.options import add_format
from pytest_rtgov.core.canonical import pretty_json
from pytest_rtgov.errors import RecordFormatError
from pytest_rtgov.logs import log_event

if TYPE_CHECKING:
    from pytest_rtgov.store.runs import RunStore

__all__ = ["add_parsers", "runs", "show", "standing_warning"]



def add_parsers(sub: Any) -> None:
    show = sub.add_parser("show", help="print a run record")
    show.add_argument("run", nargs="?", default="latest", help="run id, unique prefix, or latest")
    add_format(show, ("table", "json"), "table", "table (default) or json", old_json=True)
    sub.add_parser("runs", help="list run ids, oldest first")


def show(args: argparse.Namespace, store: RunStore) -> int:
    """Print ``args.run`` as a table (or JSON), with a warning when the ledger does not cover it."""
    record, standing = store.read_checked(args.run)
    log_event("cli.show", run_id=record.run_id, standing=standing, level=logging.DEBUG)
    warning = standing_warning(store, record.run_id, standing)
    if args.format == "json":
        sys.stdout.write(pretty_json(record.to_dict()))
    else:
        from pytest_rtgov.core.verdict import UNGATED, Verdict
        from pytest_rtgov.report.terminal import render_run, render_verdict

        if warning:
            print(f"!! {warning}")
        markup = sys.stdout.isatty()
        sys.stdout.write(render_run(record, markup=markup))
        verdict = Verdict.of_record(record)
        if verdict.status != UNGATED:  # last, as at the end of the session
            sys.stdout.write(render_verdict(verdict, markup=markup, width=120))
    return 0


def runs(store: RunStore) -> int:
    """Run ids, oldest first; a record the ledger does not cover gets a second column."""
    from pytest_rtgov.store.runs import standing_label

    covered = store.covered()
    for run_id in store.run_ids():
        try:
            label = standing_label(store.standing(run_id, covered))
        except RecordFormatError as exc:
            label = f"UNREADABLE ({exc.place}: expected {exc.expected})"
        print(f"{run_id}  {label}" if label else run_id)
    return 0


def standing_warning(store: RunStore, run_id: str, standing: str) -> str:
    """'' for a covered record; else its label and why, also logged to stderr."""
    from pytest_rtgov.store.runs import COVERED, UncoveredRecordError

    if standing == COVERED:
        return ""
    error = UncoveredRecordError(store.path_for(run_id), standing, run_id, store.ledger_log)
    warning = f"{error.label}: {error.source}: {error.why}"
    print(f"rtgov: warning: {warning}", file=sys.stderr)
    return warning

