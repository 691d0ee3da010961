"""The ``rtgov`` command line: the parser, the dispatch to one module per command family,
and :func:`exit_code`, the one place that maps an error to its exit code and message.

Commands return 0 (or the status they decided: 6, 8) and raise a typed error for
everything else; the table of codes is :class:`pytest_rtgov.core.constants.ExitCode`,
rendered in docs/usage.md. Reads records through ``store`` and ``core``; no pytest.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pytest_rtgov.cli.options import DEFAULT_STATE_DIR
from pytest_rtgov.core.constants import ExitCode
from pytest_rtgov.core.exit_codes import exit_code_for
from pytest_rtgov.errors import NotFoundError, ReadError, RtgovError
from pytest_rtgov.logs import LOGGER_NAME, JsonLinesFormatter

__all__ = ["exit_code", "main", "message"]

# Commands that read the ledger itself: a damaged frame is their own failure (10), where
# for the others it is an unreadable input (4).
_LEDGER_COMMANDS = (
    *("keys", "verify", "prove", "verify-proof", "ledger"),
    *("compare", "graph", "report", "audit"),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtgov", description="pytest-rtgov command line")
    parser.add_argument(
        "--dir",
        default=None,  # cli.options.apply_project_config: the project's pytest setting
        type=Path,
        help=f"state directory (default: the project's --rtgov-dir or rtgov_dir in its pytest "
        f"configuration, else {DEFAULT_STATE_DIR})",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
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
    from pytest_rtgov.cli import audit as cli_audit
    from pytest_rtgov.cli import baseline as cli_baseline
    from pytest_rtgov.cli import compare as cli_compare
    from pytest_rtgov.cli import export as cli_export
    from pytest_rtgov.cli import gc as cli_gc
    from pytest_rtgov.cli import graph as cli_graph
    from pytest_rtgov.cli import init as cli_init
    from pytest_rtgov.cli import ledger as cli_ledger
    from pytest_rtgov.cli import merge as cli_merge
    from pytest_rtgov.cli import quarantine as cli_quarantine
    from pytest_rtgov.cli import races as cli_races
    from pytest_rtgov.cli import replay as cli_replay
    from pytest_rtgov.cli import runs as cli_runs
    from pytest_rtgov.cli import stages as cli_stages

    cli_runs.add_parsers(sub)
    cli_baseline.add_parsers(sub)
    cli_ledger.add_parsers(sub)
    cli_compare.add_parsers(sub)
    cli_graph.add_parsers(sub)
    cli_export.add_parsers(sub)
    cli_merge.add_parsers(sub)
    cli_gc.add_parsers(sub)
    cli_init.add_parsers(sub)
    cli_stages.add_parsers(sub)
    cli_audit.add_parsers(sub)
    cli_replay.add_parsers(sub)
    cli_races.add_parsers(sub)
    cli_quarantine.add_parsers(sub)
    return parser


def _version() -> str:
    """The installed distribution's version (``rtgov --version``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pytest-rtgov")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(version unknown: pytest-rtgov is not installed)"


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
        return int(_dispatch(args))
    except (RtgovError, OSError) as exc:  # a message and a documented code, no traceback
        print(message(exc, args.command), file=sys.stderr)
        return int(exit_code(exc, args.command))
    finally:
        if getattr(args, "fresh_state_dir", False) and args.dir.is_dir():
            from pytest_rtgov.store.paths import write_state_gitignore

            write_state_gitignore(args.dir)  # a state directory this command made: ignored
        logger = logging.getLogger(LOGGER_NAME)
        logger.removeHandler(handler)
        logger.setLevel(previous_level)


def exit_code(error: BaseException, command: str) -> ExitCode:
    """The exit code of ``rtgov COMMAND`` failing with ``error`` (docs/usage.md)."""
    from pytest_rtgov.core.shard import ShardMergeError
    from pytest_rtgov.store.delta_index import IndexLeafError, LedgerRootMismatchError
    from pytest_rtgov.store.keys import TrustAnchorError
    from pytest_rtgov.store.ledger import LedgerCorruptError, LedgerLockTimeout

    if isinstance(error, ShardMergeError):
        return ExitCode.NOT_MERGEABLE
    if isinstance(error, TrustAnchorError) and command in _LEDGER_COMMANDS:
        return ExitCode.CHECKPOINT  # the repository's keyring is not the one CI pinned
    if command == "ledger" and hasattr(error, "exit_code"):  # ledger push|pull: their own
        return exit_code_for(error, face="cli")
    if command == "ledger" and not isinstance(error, NotFoundError):  # ledger recover
        locked = isinstance(error, LedgerLockTimeout)
        return ExitCode.INTEGRITY if locked else ExitCode.LEDGER_FRAME
    if isinstance(error, LedgerCorruptError):
        return ExitCode.LEDGER_FRAME if command in _LEDGER_COMMANDS else ExitCode.BAD_INPUT
    if isinstance(error, IndexLeafError):
        return ExitCode.LEDGER_LEAF
    if isinstance(error, LedgerRootMismatchError):
        return ExitCode.LEDGER_ROOT
    return exit_code_for(error, face="cli")


def message(error: BaseException, command: str) -> str:
    """The one line on stderr that says what failed, naming the file and the place."""
    from pytest_rtgov.core.gates_config import GatesConfigError
    from pytest_rtgov.core.shard import ShardMergeError
    from pytest_rtgov.errors import RecordFormatError
    from pytest_rtgov.report.export import ExportError
    from pytest_rtgov.store.ledger import LedgerCorruptError
    from pytest_rtgov.store.verify import VerifyFailure

    if isinstance(error, VerifyFailure):
        return f"rtgov {command}: FAILED: {error.where}: {error.reason}"
    if isinstance(error, OSError):
        what = f"{error.filename or 'a file'}: {error.strerror or error}"
        if command == "verify":
            return f"rtgov verify: FAILED: cannot read {what}"
        return f"rtgov: cannot read or write {what}"
    prefix = f"rtgov {command}" if command in ("prove", "ledger") else "rtgov"
    kinds: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
        (ShardMergeError, "cannot merge: "),
        (ExportError, "cannot export: "),
        (LedgerCorruptError, "ledger damaged: "),
        ((RecordFormatError, GatesConfigError), "invalid file: "),
    )
    for kind, what in kinds:
        if isinstance(error, kind):
            return f"{prefix}: {what}{error}"
    return f"{prefix}: {error}"


def _dispatch(args: argparse.Namespace) -> int:
    from pytest_rtgov.cli.options import apply_project_config
    from pytest_rtgov.store.files import symlinks_inside
    from pytest_rtgov.store.runs import RunStore

    apply_project_config(args)  # --dir, --gates, --keyring not given: the pytest config's
    args.fresh_state_dir = not args.dir.exists()

    links = symlinks_inside(args.dir) if args.command != "keys" and args.dir.is_dir() else []
    if links:  # the ledger, the index or a key would be read from or written to elsewhere
        raise ReadError(
            f"{links[0]} is a symbolic link inside the state directory {args.dir}: "
            "rtgov keeps only plain files and folders there; replace it"
        )
    if args.command == "audit":
        from pytest_rtgov.cli import audit as cli_audit

        return cli_audit.run(args)
    if args.command == "merge":
        from pytest_rtgov.cli import merge as cli_merge

        return cli_merge.run(args)
    if args.command == "races":
        from pytest_rtgov.cli import races as cli_races

        return cli_races.run(args)
    if args.command == "replay":
        from pytest_rtgov.cli import replay as cli_replay

        return cli_replay.run(args)
    if args.command == "quarantine":
        from pytest_rtgov.cli import quarantine as cli_quarantine

        return cli_quarantine.run(args)
    from pytest_rtgov.cli import baseline, compare, export, gc, graph, init, ledger, runs, stages

    store = RunStore(args.dir)
    commands = {
        "show": lambda: runs.show(args, store),
        "runs": lambda: runs.runs(store),
        "baseline": lambda: baseline.run(args, store),
        "compare": lambda: compare.run(args),
        "graph": lambda: graph.run(args),
        "report": lambda: export.report(args),
        "export": lambda: export.run(args),
        "gc": lambda: gc.run(args),
        "init": lambda: init.run(args),
        "stages": lambda: stages.run(args),
    }
    command = commands.get(args.command)
    return command() if command is not None else ledger.run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
