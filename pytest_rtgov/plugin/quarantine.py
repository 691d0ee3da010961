"""The session's quarantine (``rtgov-quarantine``): the file read at the start, the
failures its valid entries excuse at the end.

On the controller only (under xdist the workers never read the file; every report
reaches the controller). :func:`register` reads ``rtgov.quarantine.json`` at the project
root before any test runs, checked against the session's trust on today's date, UTC
(``$RTGOV_TODAY`` for tests); a malformed file is a usage error (exit 4). Quarantined
tests still run and are measured; :class:`SessionQuarantine` notes each failing report
that no valid entry excuses. At the session end (``plugin/finish.py``):

- :func:`excuse_failures`: pytest's "tests failed" (1) becomes 0 when a valid entry
  excused every failure, as pytest-rerunfailures and flaky do their accounting in
  ``pytest_sessionfinish``; a collection error is never excused;
- the gatekeeper passes the (gate, subject) pairs of valid gate entries to
  :func:`~pytest_rtgov.core.verdict.decide` (their results keep their status);
- :func:`attach_section`: the record's ``quarantine`` section
  (``core/quarantine_record.py``), whose expired and untrusted entries the stage step
  then turns into exit statuses (``session_problems``);
- :func:`expired_leaves`: a ``quarantine`` ledger leaf (``expired``) for each expired
  entry that failed the session, appended with the run's leaves.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pytest

from pytest_rtgov.core.quarantine_record import build_section, excused_among

if TYPE_CHECKING:
    from pytest_rtgov.core.quarantine import Quarantine
    from pytest_rtgov.core.records import RunRecord
    from pytest_rtgov.plugin.finish import SessionOutcome
    from pytest_rtgov.plugin.settings import Settings

__all__ = [
    "QUARANTINE_KEY",
    "SessionQuarantine",
    "attach_section",
    "excuse_failures",
    "excused_gates_of",
    "expired_leaves",
    "keep_excused_gates",
    "register",
]

_COLLECTION = "<collection>"


@dataclass
class SessionQuarantine:
    """The checked entries of this session, and the failures none of them excuses."""

    quarantine: Quarantine
    digest: str
    signatures_required: bool
    day: str  # the day the entries were checked on (YYYY-MM-DD)
    unexcused: set[str] = field(default_factory=set)  # node ids of failing reports
    excused: int = 0  # failing reports a valid entry excuses
    stopped: bool = False  # the run-test loop ended early: nothing is excused
    session: pytest.Session | None = None

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.session = session

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not report.failed or hasattr(report, "wasxfail"):
            return
        checked = self.quarantine.for_test(report.nodeid)
        # A teardown error is never excused: it may come from a module- or session-scoped
        # fixture (or a hook) finalized after this test, not from the test itself.
        if checked is None or not checked.active or report.when == "teardown":
            self.unexcused.add(report.nodeid)
        else:
            self.excused += 1

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Any:
        """A loop that ended early (``-x``, ``--maxfail``, ``pytest.exit``, an
        interrupt) excuses nothing: the tests it did not run were not judged."""
        try:
            return (yield)
        except BaseException:
            self.stopped = True
            raise

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.unexcused.add(report.nodeid or _COLLECTION)

    def exit_status(self, exitstatus: int) -> int:
        """0 where pytest failed only tests a valid entry quarantines; else unchanged. A
        failure pytest counted that no report showed (pytest-cov's ``--cov-fail-under``
        adds one to ``session.testsfailed``) is never excused."""
        counted = self.session.testsfailed if self.session is not None else self.excused
        stopped = self.stopped or (
            self.session is not None
            and bool(self.session.shouldfail or self.session.shouldstop)
        )
        if (
            exitstatus == pytest.ExitCode.TESTS_FAILED
            and self.excused
            and not self.unexcused
            and not stopped
            and counted <= self.excused
        ):
            return int(pytest.ExitCode.OK)
        return exitstatus


QUARANTINE_KEY = pytest.StashKey[SessionQuarantine]()


def register(config: pytest.Config, settings: Settings) -> None:
    """Read and check the quarantine file (the controller, before any test runs); no
    file: nothing registered, the record has no ``quarantine`` section."""
    from pytest_rtgov.errors import RtgovError
    from pytest_rtgov.logs import log_event
    from pytest_rtgov.store.quarantine_file import (
        check_file,
        quarantine_path,
        quarantine_today,
        read_quarantine_file,
        revoked_entries,
    )

    try:
        path = quarantine_path(settings.rootdir)
        file = read_quarantine_file(path, today=quarantine_today())
        if file.digest is None:
            return
        trust = settings.trust  # the keys are loaded only for a quarantine file
        today = quarantine_today(required=bool(trust.required))
        revoked = revoked_entries(settings.state_dir)  # removed or renewed in the ledger
        checked = check_file(file, trust, today=today, revoked=revoked)
    except RtgovError as exc:
        raise pytest.UsageError(str(exc)) from None
    session = SessionQuarantine(checked, file.digest, bool(trust.required), today.isoformat())
    config.stash[QUARANTINE_KEY] = session
    config.pluginmanager.register(session, "rtgov-quarantine")
    if settings.gatekeeper is not None:
        settings.gatekeeper.quarantine = checked
    log_event(
        "quarantine.loaded",
        path=str(file.path),
        digest=file.digest,
        entries=len(checked.entries),
        problems=len(checked.problems()),
        today=today.isoformat(),
    )


def excuse_failures(config: pytest.Config, exitstatus: int) -> int:
    """pytest's exit status once valid entries excused the failures they quarantine."""
    session = config.stash.get(QUARANTINE_KEY, None)
    return exitstatus if session is None else session.exit_status(exitstatus)


def excused_gates_of(quarantine: Quarantine | None, results: Any) -> frozenset[tuple[str, str]]:
    """The (gate, subject) pairs of ``results`` (GateResults) a valid entry excuses."""
    if quarantine is None:
        return frozenset()
    return excused_among(quarantine, ((r.gate, r.subject) for r in results))


def keep_excused_gates(
    quarantine: Quarantine, record: RunRecord, results: list[Any]
) -> list[Any]:
    """``results`` with the gates of the failures valid entries excuse kept, as missing
    (``core/quarantine_record.py``, ``excused_keep_gates``)."""
    from pytest_rtgov.core.quarantine_record import active_tests, excused_keep_gates

    excused = active_tests(quarantine, (t.nodeid for t in record.tests))
    return excused_keep_gates(results, record, excused)


def attach_section(config: pytest.Config, outcome: SessionOutcome) -> None:
    """The record's ``quarantine`` section: every entry, each matched test with its
    outcome, each matched gate result with its status (after the gate step)."""
    session = config.stash.get(QUARANTINE_KEY, None)
    if session is None or outcome.record is None:
        return
    record = outcome.record
    verdict = outcome.verdict
    section = build_section(
        session.quarantine,
        digest=session.digest,
        tests=((t.nodeid, t.outcome) for t in record.tests),
        results=verdict.gate_results() if verdict is not None else (),
        signatures_required=session.signatures_required,
        day=session.day,
    )
    outcome.record = replace(record, quarantine=section)


def expired_leaves(config: pytest.Config, record: RunRecord) -> list[bytes]:
    """The ``quarantine`` ledger leaves (action ``expired``, with this run's id) of the
    expired entries that name a test or gate of this session: found expired, they
    failed it (``core/quarantine_record.py``, ``session_problems``)."""
    from pytest_rtgov.core.quarantine import quarantine_leaf

    session = config.stash.get(QUARANTINE_KEY, None)
    section = record.quarantine
    if session is None or not section:
        return []
    used = {str(m.get("entry")) for m in (*section.get("tests", ()), *section.get("gates", ()))}
    return [
        quarantine_leaf("expired", checked, at=record.ended_at, run_id=record.run_id)
        for checked in session.quarantine.entries
        if checked.state == "expired" and checked.id in used
    ]
