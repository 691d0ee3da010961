"""``--rtgov-determinism-check``: each test run twice in one process, checkpoints compared.

Per test, as pytest-rerunfailures runs an attempt: first an unlogged run
(``runtestprotocol(item, nextitem=item.parent, log=False)``: no report reaches any
plugin; the test's own node is torn down, its parents stay set up; what it measured is
dropped, ``Capture.forget_unlogged``), then the normal logged,
measured run. Every checkpoint of the test and of its function-scoped fixture setups is
seen in both runs (``Checkpoints.tap``) and compared by (owner, name, occurrence): a
digest that differs, or a checkpoint only one run captured, is a finding. Fixtures of a
wider scope (``@stage`` fixtures among them) are set up once, by the first run, and so
are not compared (``--rtgov-stage-recheck`` re-executes stages). Under xdist each worker
checks its own tests and sends its findings back in ``workeroutput``
(``plugin/transport.py``). Findings make a session that passed exit 6, as a breached
gate does; a gated session's verdict carries them as notes (``plugin/finish.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pytest_rtgov.core.constants import ExitCode
from pytest_rtgov.core.records import escape_text

__all__ = ["FINDINGS_KEY", "WORKER_OUTPUT", "DeterminismCheck", "compare", "session_problems"]

# the session's findings: {"test", "owner", "checkpoint", "occurrence", "first", "second"}
FINDINGS_KEY: pytest.StashKey[list[dict[str, Any]]] = pytest.StashKey()
WORKER_OUTPUT = "rtgov_determinism"


class _Tap:
    """The digests one run captured, by (owner, checkpoint name), in capture order."""

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], list[str]] = {}

    def __call__(self, owner: str | None, checkpoint: dict[str, Any]) -> None:
        if owner is not None:  # None: a wider-scoped fixture's, set up once
            self.seen.setdefault((owner, checkpoint["name"]), []).append(checkpoint["sha256"])


def compare(
    test: str, first: dict[tuple[str, str], list[str]], second: dict[tuple[str, str], list[str]]
) -> list[dict[str, Any]]:
    """Every occurrence whose digest differs between the two runs, in capture order
    (``None``: that run did not capture it).

    >>> compare("t", {("test", "h"): ["sha256:a", "sha256:b"]}, {("test", "h"): ["sha256:a"]})
    [{'test': 't', 'owner': 'test', 'checkpoint': 'h', 'occurrence': 1, 'first': 'sha256:b', \
'second': None}]
    """
    findings = []
    for owner, name in dict.fromkeys([*first, *second]):
        a, b = first.get((owner, name), []), second.get((owner, name), [])
        for index in range(max(len(a), len(b))):
            one = a[index] if index < len(a) else None
            two = b[index] if index < len(b) else None
            if one != two:
                findings.append(
                    {"test": test, "owner": owner, "checkpoint": name, "occurrence": index,
                     "first": one, "second": two}
                )
    return findings


class DeterminismCheck:
    """The check's hooks: the two runs of each test here, the summary on the controller."""

    __slots__ = ("capture", "config", "findings")

    def __init__(self, config: pytest.Config, capture: Any) -> None:
        self.config = config
        self.capture = capture
        self.findings = config.stash.setdefault(FINDINGS_KEY, [])

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: Any) -> Iterator[None]:
        from _pytest.runner import runtestprotocol

        checkpoints = self.capture.checkpoints
        first = checkpoints.tap = _Tap()
        try:
            # torn down to its parent: function fixtures go, wider ones stay set up
            runtestprotocol(item, nextitem=item.parent, log=False)  # type: ignore[arg-type]
        finally:
            checkpoints.tap = None
            self.capture.forget_unlogged()
        second = checkpoints.tap = _Tap()
        try:
            return (yield)
        finally:
            checkpoints.tap = None
            self.findings.extend(compare(escape_text(item.nodeid), first.seen, second.seen))

    def pytest_sessionfinish(self) -> None:
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:  # an xdist worker: its findings to the controller
            workeroutput[WORKER_OUTPUT] = list(self.findings)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if hasattr(self.config, "workerinput"):
            return
        findings = self.findings
        if not findings:
            terminalreporter.write_line("rtgov determinism check: every checkpoint identical")
            return
        terminalreporter.section("rtgov determinism check", sep="-", red=True)
        for line in finding_lines(findings):
            terminalreporter.write_line(line)


def finding_lines(findings: list[dict[str, Any]]) -> list[str]:
    """One line per finding: test, checkpoint, occurrence, both digests; by test (as the
    record orders tests, whichever xdist worker finished first), in capture order."""
    return [
        f"determinism check: {f['test']}: {f['owner']} checkpoint {f['checkpoint']!r} "
        f"occurrence {f['occurrence']}: first run {_short(f['first'])}, second run "
        f"{_short(f['second'])}"
        for f in sorted(findings, key=lambda f: str(f["test"]))
    ]


def _short(digest: str | None) -> str:
    return "not captured" if digest is None else digest[:19]


def session_problems(config: pytest.Config, status: int, lines: list[str]) -> tuple[int, list[str]]:
    """The session's findings added to ``lines``; a passing session exits 6 with any."""
    findings = config.stash.get(FINDINGS_KEY, None)
    if not findings:
        return status, lines
    if status == ExitCode.OK:
        status = int(ExitCode.GATE_BREACHED)
    return status, [*lines, f"determinism check: {len(findings)} checkpoints differ "
                    "between two runs of their test", *finding_lines(findings)]  # fmt: skip
