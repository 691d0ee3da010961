"""The terminal summary: the session's outcome as the last lines a reader sees.

On the controller only; it reads the :class:`~pytest_rtgov.plugin.finish.SessionOutcome`
the session end stored in ``config.stash[OUTCOME_KEY]``. The tables, the ledger line,
the breaches and notes come in pytest's terminal summary (where pytest-cov prints its
report); the verdict's status line, ``rtgov gate: BREACHED (...) exit status 6`` in bold
red, comes last of all, after pytest's own ``N passed in 0.1s`` line (green when every
test passed), so a gate's failure is the last line and the last colour a reader sees.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from pytest_rtgov.plugin.finish import SessionOutcome
from pytest_rtgov.plugin.settings import OUTCOME_KEY, Settings

__all__ = ["Summary", "ledger_line"]


class Summary:
    """The controller's ``pytest_terminal_summary``."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        outcome = self.config.stash.get(OUTCOME_KEY, None)
        if outcome is None or outcome.record is None:
            return
        from pytest_rtgov.report.terminal import render_summary, render_verdict

        config = self.config
        verdict = outcome.verdict
        verbosity = config.get_verbosity()
        if verbosity < -1 and verdict is None:
            return
        writer = config.get_terminal_writer()
        if verbosity >= -1:
            terminalreporter.write(
                render_summary(
                    outcome.record,
                    record_path=outcome.record_path,
                    markup=writer.hasmarkup,
                    width=writer.fullwidth,
                    compact=verbosity < 0,
                    ledger_line=ledger_line(outcome, self.settings),
                )
            )
        if verdict is not None:
            terminalreporter.write(
                render_verdict(
                    verdict,
                    markup=writer.hasmarkup,
                    width=writer.fullwidth,
                    show_all=config.getoption("rtgov_show") == "all" or verbosity > 0,
                    compact=verbosity < -1,
                    closing=False,  # printed after pytest's summary line
                )
            )

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(self) -> Generator[None, None, None]:
        """Around pytest's terminal reporter (also a wrapper, without ``tryfirst``), so
        this runs after it printed its summary line: the verdict's line comes last."""
        try:
            return (yield)
        finally:
            self._verdict_line()

    def _verdict_line(self) -> None:
        outcome = self.config.stash.get(OUTCOME_KEY, None)
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if outcome is None or outcome.record is None or outcome.verdict is None:
            return
        if reporter is None:
            return
        from pytest_rtgov.report.terminal import render_verdict_line

        verdict = outcome.verdict
        overridden = None
        if outcome.exit_status != verdict.exit_status:  # the record was not written
            overridden = (outcome.exit_status, "the run record was not written (above)")
        writer = self.config.get_terminal_writer()
        reporter.write(
            render_verdict_line(
                verdict, markup=writer.hasmarkup, width=writer.fullwidth, overridden=overridden
            )
        )


def ledger_line(outcome: SessionOutcome, settings: Settings) -> str | None:
    """What the ledger did with this session's leaves, for the summary."""
    if outcome.ledger_error is not None:
        return f"rtgov: ledger NOT appended: {outcome.ledger_error}"
    result = outcome.ledger
    if result is None:
        return None
    signing = settings.signing
    who = signing.verifier.name
    if signing.local:  # `rtgov init` puts it in the keyring; a session alone does not
        listed = settings.trust.is_trusted(signing.verifier)
        who += " (local key, in the keyring)" if listed else " (local key, not in any keyring)"
    line = (
        f"rtgov: ledger {result.size} leaves, root {result.root.hex()[:16]}..., "
        f"checkpoint {result.checkpoint_path} signed by {who}"
    )
    if result.set_aside is not None:
        line += f"; an interrupted append was set aside in {result.set_aside}"
    if result.invalid is not None:
        line += (
            f"\nrtgov: WARNING: leaves from {result.invalid.index} on were not signed but "
            f"set aside in {result.invalid.path}: {result.invalid.reason}"
        )
    if outcome.report_path is not None:
        line += f"\nrtgov: report {outcome.report_path}"
    return line
