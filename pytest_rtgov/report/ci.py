"""GitHub Actions: the step summary, one ``::error`` annotation per breached gate and
one annotation per quarantined result or invalid quarantine entry.

An edge: it reads the environment it is handed and appends to the step summary file.
The text comes from :mod:`pytest_rtgov.report.export.markdown` and from
:func:`annotations`, which is pure.

Workflow commands are escaped as the Actions toolkit does (``@actions/core``,
``command.ts``): ``%``, CR and LF in the message; also ``:`` and ``,`` in properties.

>>> escape_data("50% slower\\nsee log")
'50%25 slower%0Asee log'
>>> escape_property("a.py::test, x")
'a.py%3A%3Atest%2C x'
"""

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.core.subjects import subject_id
from pytest_rtgov.core.verdict import Verdict
from pytest_rtgov.report.export import ExportError, describe_result, to_markdown
from pytest_rtgov.report.quarantine import QuarantineView, problem_text, quarantine_view

__all__ = [
    "annotations",
    "escape_data",
    "escape_property",
    "github_actions",
    "location_of",
]

Location = tuple[str, int | None]


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _command(kind: str, message: str, **properties: Any) -> str:
    shown = ",".join(
        f"{key}={escape_property(str(value))}"
        for key, value in properties.items()
        if value is not None and value != ""
    )
    return f"::{kind}{' ' + shown if shown else ''}::{escape_data(message)}"


def location_of(
    record: RunRecord, subject: str, locations: Mapping[str, tuple[str, int | None]]
) -> Location | None:
    """Where to annotate a subject: its own location; for a test without one, the file
    of its node id; for a fixture without one, the file of the first test that
    requested it (no line); else None (an annotation without a file)."""
    if subject in locations:
        path, line = locations[subject]
        return str(path), line
    if not subject.startswith("fixture:"):
        path = subject.split("::", 1)[0]
        return (path, None) if path else None
    requesters = sorted(
        setup.requested_by
        for fixture in record.fixtures
        if subject_id(fixture) == subject
        for setup in fixture.setups
        if setup.requested_by
    )
    for nodeid in requesters:
        found = locations.get(nodeid)
        path = str(found[0]) if found else nodeid.split("::", 1)[0]
        if path:
            return path, None
    return None


def annotations(record: RunRecord, locations: Mapping[str, tuple[str, int | None]]) -> list[str]:
    """``::error`` per breached (or missing) gate and ``::warning`` per unconfirmed one.

    Quarantine (docs/quarantine.md): a quarantined failure (a test or a gate breach)
    whose entry is valid is a ``::warning`` naming the entry's owner, issue and expiry, a
    quarantined pass a ``::notice``; a failure whose entry is not valid stays an
    ``::error``, and every entry that is not valid (expired, unsigned, untrusted,
    tampered) is an ``::error`` on the quarantine file.
    """
    view = quarantine_view(record)
    lines = []
    for result in Verdict.of_record(record).results:
        if not result.breached and result.status != "unconfirmed":
            continue
        where = location_of(record, result.subject, locations)
        path, line = where if where else (None, None)
        message = describe_result(result)
        quarantined = view.for_gate(result.gate, result.subject, result.metric) if view else None
        if quarantined is not None and result.breached:
            kind = "warning" if quarantined.excused else "error"
            title = f"rtgov quarantined gate breach ({quarantined.state} entry)"
            message += f"; {quarantined.describe()}; entry {quarantined.entry}"
        elif result.status == "unconfirmed":
            kind, title = "warning", "rtgov gate breach not confirmed"
        else:
            kind, title = "error", "rtgov gate breached"
        lines.append(_command(kind, message, file=path, line=line, title=title))
    return lines + _quarantine_annotations(record, view, locations)


def _quarantine_annotations(
    record: RunRecord,
    view: QuarantineView | None,
    locations: Mapping[str, tuple[str, int | None]],
) -> list[str]:
    """A quarantined test's annotation, and an ``::error`` per entry that is not valid."""
    if view is None:
        return []
    lines = []
    for row in view.tests:
        where = location_of(record, row.subject, locations)
        path, line = where if where else (None, None)
        if not row.failed:
            kind, title = "notice", "rtgov quarantined test passed"
        elif row.excused:
            kind, title = "warning", "rtgov quarantined failure (excused)"
        else:
            kind, title = "error", f"rtgov quarantined failure ({row.state} entry)"
        message = f"{row.describe()}; entry {row.entry}"
        lines.append(_command(kind, message, file=path, line=line, title=title))
    for entry in view.problems:
        title = f"rtgov quarantine entry {entry.get('state')}"
        lines.append(_command("error", problem_text(entry, view), file=view.file, title=title))
    return lines


def github_actions(
    record: RunRecord,
    *,
    environ: Mapping[str, str],
    locations: Mapping[str, tuple[str, int | None]],
    out: TextIO | None = None,
) -> None:
    """On GitHub Actions (``GITHUB_ACTIONS=true``): append the Markdown summary to
    ``$GITHUB_STEP_SUMMARY`` (when set) and print the annotations to ``out``
    (default: stdout). Elsewhere: nothing.

    ``locations`` maps test node ids (and optionally fixture subject ids,
    ``fixture:<scope node id>::<name>``) to ``(path relative to the repository root,
    1-based line or None)``. Raises :class:`ExportError` when the summary file
    cannot be written.
    """
    if environ.get("GITHUB_ACTIONS") != "true":
        return
    summary = environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            with Path(summary).open("a", encoding="utf-8") as handle:
                handle.write(to_markdown(record) + "\n")
        except OSError as exc:
            raise ExportError(
                f"cannot append the rtgov summary to GITHUB_STEP_SUMMARY={summary}: {exc}"
            ) from exc
    stream = out if out is not None else sys.stdout
    lines = annotations(record, locations)
    if lines:
        # A workflow command counts only at the start of a line, and pytest's progress
        # line (``test_x.py F.  [100%]``) may not have ended yet: end it first.
        print(file=stream)
    for line in lines:
        print(line, file=stream)
    stream.flush()
