"""The session end: a pipeline of named steps that returns a typed :class:`SessionOutcome`.

On the controller only, in ``pytest_sessionfinish`` (trylast):

    build record -> gate -> write baseline -> quarantine section -> decide the final
    exit status -> write record -> ledger -> report -> exports -> CI output

(pytest's status is first relieved of the failures valid quarantine entries excuse,
``plugin/quarantine.py``.)

The final exit status is decided before the record is written, and the record says
it, a ledger failure (exit 7) included: the run record is written under the ledger's
lock, once the ledger was opened, scanned and recovered
(:func:`pytest_rtgov.store.logged_run.write_and_log`, shared with ``rtgov merge``, calls
:func:`_record_step` there). A ledger that cannot be opened is a failure known before
the record is written; an append that fails after it rewrites the record, atomically,
with the ledger-failure verdict. The terminal summary
(``plugin/summary.py``) reads the outcome from ``config.stash[OUTCOME_KEY]``.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_rtgov.core.constants import EXIT_INTEGRITY
from pytest_rtgov.core.records import RunRecord, escape_text
from pytest_rtgov.core.verdict import Verdict
from pytest_rtgov.errors import RtgovError
from pytest_rtgov.logs import log_event
from pytest_rtgov.plugin.quarantine import attach_section as attach_quarantine
from pytest_rtgov.plugin.quarantine import excuse_failures, expired_leaves
from pytest_rtgov.plugin.samples import Collector
from pytest_rtgov.plugin.schedule import attach as attach_schedule
from pytest_rtgov.plugin.settings import OUTCOME_KEY, Settings
from pytest_rtgov.store.runs import RunStore

__all__ = ["Finisher", "SessionOutcome", "finish_session"]


@dataclass
class SessionOutcome:
    """What the session end did: the record as written, and each step's result."""

    exit_status: int
    record: RunRecord | None = None
    record_path: Path | None = None
    verdict: Verdict | None = None  # a gated session's
    ledger: Any = None  # store.ledger.AppendResult, once appended
    ledger_error: str | None = None
    run_leaves: list[bytes] | None = None  # what this session appended for its record
    report_path: Path | None = None
    encoded: bytes | None = None  # the record's canonical JSON: the file, the ledger's digest


class _RecordNotWritten(Exception):
    """The record step failed (the disk): nothing goes to the ledger."""


class Finisher:
    """The controller's ``pytest_sessionfinish``: runs :func:`finish_session`."""

    def __init__(self, config: pytest.Config, settings: Settings, collector: Collector) -> None:
        self.config = config
        self.settings = settings
        self.collector = collector

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        # What the session end says (stderr) starts on a line of its own: end pytest's
        # progress line (``test_x.py F.  [100%]``) first, as pytest's summary would.
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and hasattr(reporter, "ensure_newline"):
            reporter.ensure_newline()
        outcome = finish_session(self.config, self.settings, self.collector, int(exitstatus))
        self.config.stash[OUTCOME_KEY] = outcome
        session.exitstatus = outcome.exit_status


def finish_session(
    config: pytest.Config, settings: Settings, collector: Collector, exitstatus: int
) -> SessionOutcome:
    """Every step of the session end, in order; a later step sees what earlier ones did."""
    if collector.usage_errors:
        for message in sorted(collector.usage_errors):
            sys.stderr.write(f"ERROR: {message}\n")
        exitstatus = int(pytest.ExitCode.USAGE_ERROR)
    exitstatus = excuse_failures(config, exitstatus)  # failures valid quarantine entries excuse
    outcome = SessionOutcome(exit_status=exitstatus)
    outcome.record = collector.build_record(exitstatus)
    outcome.record = attach_schedule(config, outcome.record, settings.state_dir)
    _gate_step(outcome, settings)
    _baseline_step(outcome, settings)
    attach_quarantine(config, outcome)  # the record's quarantine section (plugin/quarantine.py)
    _decide_step(outcome)
    _stage_step(outcome, config)
    _record_and_ledger_steps(outcome, settings, config)
    if outcome.record_path is None:  # the disk failed: nothing else is written
        return outcome
    _report_step(outcome, settings, config)
    _export_step(outcome, settings)
    _ci_step(outcome, collector)
    return outcome


def _gate_step(outcome: SessionOutcome, settings: Settings) -> None:
    """Gate the record (a gated session): the verdict, decided without writing."""
    if settings.gatekeeper is None:
        return
    assert outcome.record is not None
    keeper = settings.gatekeeper
    outcome.verdict = keeper.decide(outcome.record, outcome.exit_status)
    if keeper.inputs:  # what it judged with, kept for `rtgov audit`: in the run leaf
        import dataclasses

        outcome.record = dataclasses.replace(outcome.record, inputs=dict(keeper.inputs))


def _baseline_step(outcome: SessionOutcome, settings: Settings) -> None:
    """Write (and seal) the baseline the verdict's ``baseline_action`` names, after the
    decision; its ledger leaves go with this session's."""
    if outcome.verdict is None:
        return
    assert outcome.record is not None
    outcome.verdict = settings.gatekeeper.write_baseline(outcome.verdict, outcome.record)


def _decide_step(outcome: SessionOutcome) -> None:
    """The final exit status: the verdict's, in a gated session."""
    if outcome.verdict is not None:
        _decide(outcome, outcome.verdict)


def _decide(outcome: SessionOutcome, verdict: Verdict) -> None:
    """Take ``verdict`` as final: its exit status, and the record that says it."""
    assert outcome.record is not None
    outcome.verdict = verdict
    outcome.exit_status = int(verdict.exit_status)
    outcome.record = verdict.stamp(outcome.record)


def _stage_step(outcome: SessionOutcome, config: pytest.Config) -> None:
    """A refused stage entry under required signatures (7), or a nondeterminism finding
    (6 where the session passed), decides the exit status too (core/stage_findings.py);
    so do the determinism check's findings (plugin/determinism.py)."""
    import dataclasses

    from pytest_rtgov.core.quarantine_record import session_problems as quarantine_problems
    from pytest_rtgov.core.stage_findings import session_problems
    from pytest_rtgov.plugin.determinism import session_problems as determinism_problems
    from pytest_rtgov.plugin.schedule import problems as schedule_problems

    record = outcome.record
    assert record is not None
    status, lines = session_problems(record.fixtures, exit_status=outcome.exit_status)
    status, lines = determinism_problems(config, status, lines)
    status, lines = schedule_problems(config, status, lines)
    status, more = quarantine_problems(record.quarantine, exit_status=status)  # expired, unsigned
    lines += more
    for line in lines:
        _say(line)
    if status == outcome.exit_status:
        return
    if outcome.verdict is None:
        outcome.exit_status = status
        outcome.record = dataclasses.replace(record, exit_status=status)
        return
    verdict = outcome.verdict
    _decide(
        outcome,
        dataclasses.replace(
            verdict,
            status="error" if status == EXIT_INTEGRITY else "breached",
            exit_status=status,
            notes=(*verdict.notes, *lines),
        ),
    )


def _record_step(outcome: SessionOutcome, store: RunStore) -> None:
    """Write the run record as decided; a disk that fails is reported (exit 7)."""
    record = outcome.record
    assert record is not None
    try:
        outcome.encoded = record.canonical_json()
        outcome.record_path = store.write(record, encoded=outcome.encoded)
    except OSError as exc:  # a disk that filled up during the tests (ENOSPC), EIO...
        # The state directory took a file before the tests (settings._check_state_dir):
        # what fails now is the disk. Nothing earlier is lost: the writes are atomic, so
        # the last record, ``latest`` and the ledger stay as they were.
        path = store.path_for(record.run_id)
        if path.is_file() and outcome.record_path is None:  # ``latest`` was not moved
            path = store.state_dir / "latest"
        reason = exc.strerror or str(exc)
        log_event("record.write_failed", level=logging.ERROR, path=str(path), error=reason)
        sys.stderr.write(
            f"pytest-rtgov: could not write the run record ({path}): {reason}; "
            "the ledger, the report and the exports were not written either\n"
        )
        outcome.exit_status = EXIT_INTEGRITY
        outcome.record_path = None
        raise _RecordNotWritten from exc
    log_event(
        "record.written",
        run_id=record.run_id,
        path=str(outcome.record_path),
        tests=len(record.tests),
        fixtures=len(record.fixtures),
        exit_status=record.exit_status,
    )


def _record_and_ledger_steps(
    outcome: SessionOutcome, settings: Settings, config: pytest.Config
) -> None:
    """Write the record under the ledger's lock, then append its leaves, the baseline
    changes and a signed checkpoint; a ledger failure is decided into the record (exit
    7) by :func:`pytest_rtgov.store.logged_run.write_and_log`, as ``rtgov merge``'s is."""
    from pytest_rtgov.store.ledger import Ledger
    from pytest_rtgov.store.logged_run import LoggedRun, write_and_log

    store = RunStore(settings.state_dir)
    keeper = settings.gatekeeper
    gate_leaves: list[bytes] = list(keeper.ledger_leaves) if keeper is not None else []

    def write(record: RunRecord) -> tuple[Path, bytes]:
        outcome.record = record  # as decided: exit 7 after a ledger failure
        _record_step(outcome, store)
        assert outcome.record_path is not None and outcome.encoded is not None
        return outcome.record_path, outcome.encoded

    def failed(logged: LoggedRun) -> None:  # decided, before the record is written (again)
        outcome.ledger_error, outcome.verdict = logged.error, logged.verdict
        outcome.exit_status = EXIT_INTEGRITY
        log_event("ledger.append_failed", level=logging.ERROR, error=logged.error)
        sys.stderr.write(f"pytest-rtgov: ledger not appended: {logged.error}\n")

    assert outcome.record is not None
    gate_leaves += expired_leaves(config, outcome.record)  # quarantine entries found expired
    origin = f"pytest-rtgov.local/{escape_text(Path(config.rootpath).name) or 'project'}"
    try:
        logged = write_and_log(
            Ledger(settings.state_dir / "ledger"),
            outcome.record,
            outcome.verdict,
            write,
            signer=lambda: settings.signing.signer,  # loaded when first used
            origin=origin,
            extra_leaves=gate_leaves,
            on_failure=failed,
            fsync_each=config.getoption("rtgov_ledger_fsync") == "record",
            lock_timeout=config.getoption("rtgov_ledger_timeout"),
            on_wait=_say,
            sign_uncovered=lambda: not settings.trust.required,
        )
    except _RecordNotWritten:
        return
    outcome.verdict, outcome.run_leaves = logged.verdict, logged.run_leaves
    if logged.error is not None:
        sys.stderr.write(
            f"pytest-rtgov: the run record is kept at {outcome.record_path}"
            f"{' (rewritten with exit status 7)' if logged.rewritten else ''}; "
            "run `rtgov verify` for details\n"
        )
        return
    result = outcome.ledger = logged.result
    assert result is not None  # the record's leaves were appended
    if result.set_aside is not None:
        log_event("ledger.torn_tail_set_aside", level=logging.WARNING, path=str(result.set_aside))
    log_event(
        "ledger.appended",
        leaves=len(outcome.run_leaves or ()) + len(gate_leaves),
        size=result.size,
        root=result.root.hex(),
        checkpoint=str(result.checkpoint_path),
        signed_by=settings.signing.verifier.name,
    )


def _say(message: str) -> None:
    sys.stderr.write(f"pytest-rtgov: {message}\n")


def _report_step(outcome: SessionOutcome, settings: Settings, config: pytest.Config) -> None:
    """The HTML gate report; a failure to write it is reported, never fatal."""
    from pytest_rtgov.publish.report_files import write_report

    assert outcome.record is not None
    option = config.getoption("rtgov_report")
    if option == "off":
        return
    path = Path(option) if option else settings.state_dir / "report.html"
    if not path.is_absolute():
        path = settings.invocation_dir / path
    appended = None
    result, leaves = outcome.ledger, outcome.run_leaves
    if result is not None and leaves is not None:
        from pytest_rtgov.store.delta_index import Appended

        if result.size - result.first_index == len(leaves):  # nothing else was appended
            appended = Appended(outcome.record, leaves, result.first_index)
    try:
        outcome.report_path = write_report(
            path, outcome.record, state_dir=settings.state_dir, trust=settings.trust,
            appended=appended,
        )
    except (RtgovError, OSError) as exc:
        log_event("report.write_failed", level=logging.WARNING, error=str(exc))
        sys.stderr.write(f"pytest-rtgov: could not write the HTML report: {exc}\n")
        return
    log_event("report.written", path=str(outcome.report_path))


def _export_step(outcome: SessionOutcome, settings: Settings) -> None:
    """``--rtgov-export FORMAT:PATH`` files; failures are reported, never fatal."""
    from pytest_rtgov.report.export import export
    from pytest_rtgov.store.files import atomic_write

    assert outcome.record is not None
    for fmt, path in settings.export_specs:
        try:
            atomic_write(path, export(outcome.record, fmt))
            log_event("export.written", format=fmt, path=str(path))
        except (RtgovError, OSError) as exc:
            log_event("export.failed", level=logging.WARNING, format=fmt, error=str(exc))
            sys.stderr.write(f"pytest-rtgov: could not write the {fmt} export: {exc}\n")


def _ci_step(outcome: SessionOutcome, collector: Collector) -> None:
    """On GitHub Actions: the step summary and the annotations; never fatal."""
    if collector.locations is None:
        return
    import os

    from pytest_rtgov.report.ci import github_actions

    assert outcome.record is not None
    try:
        github_actions(outcome.record, environ=os.environ, locations=collector.locations)
    except (RtgovError, OSError) as exc:
        sys.stderr.write(f"pytest-rtgov: GitHub Actions summary not written: {exc}\n")
