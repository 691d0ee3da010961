"""A run record's quarantine section as every surface shows it: one row per quarantined
test and gate result, the entries that are not valid, and the lines each face prints.

The section is the plain dict the plugin writes into ``RunRecord.quarantine``
(docs/quarantine.md): the checked ``entries``, and the ``tests`` and ``gates`` they
matched, each with its ``quarantined-pass`` or ``quarantined-fail`` outcome. A
quarantined result keeps its real outcome (a test ``failed``, a gate ``breach``); only an
entry whose state is ``valid`` excuses a failure, so a row says both. Pure: values in,
text or plain data out; the terminal, the HTML report, the GitHub annotations and the
exports read it here, so they say the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape

from pytest_rtgov.core.quarantine import QUARANTINED_FAIL, QUARANTINED_PASS
from pytest_rtgov.core.records import RunRecord

__all__ = [
    "QUARANTINED_FAIL",
    "QUARANTINED_PASS",
    "QuarantineView",
    "QuarantinedRow",
    "html_context",
    "print_quarantine",
    "problem_text",
    "quarantine_markdown",
    "quarantine_view",
]

_STYLE = {QUARANTINED_PASS: "cyan", QUARANTINED_FAIL: "yellow"}


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return "" if value is None else str(value)


@dataclass(frozen=True, slots=True)
class QuarantinedRow:
    """One quarantined test or gate result of a run, with its entry's facts.

    ``subject`` is the test's node id or the gate result's subject; ``gate``, ``metric``
    and ``status`` (the gate result's real status) are empty for a test. ``state`` is
    the entry's state (``valid``, ``expired``, ``unsigned``, ``untrusted``, ``tampered``).
    """

    kind: str
    subject: str
    outcome: str
    entry: str
    owner: str
    issue: str
    expires: str
    state: str
    gate: str = ""
    metric: str = ""
    status: str = ""

    @property
    def failed(self) -> bool:
        return self.outcome == QUARANTINED_FAIL

    @property
    def excused(self) -> bool:
        """A failure the exit status ignores: only while the entry is valid."""
        return self.failed and self.state == "valid"

    @property
    def label(self) -> str:
        """``tests/x.py::t`` or ``gate NAME: SUBJECT METRIC``."""
        if self.kind == "test":
            return self.subject
        return f"gate {self.gate}: {self.subject} {self.metric}".rstrip()

    @property
    def who(self) -> str:
        """``owner X, issue Y, expires Z``."""
        return f"owner {self.owner}, issue {self.issue}, expires {self.expires}"

    def describe(self) -> str:
        """One line: outcome, what, whose, and whether the entry still excuses it."""
        line = f"{self.outcome} {self.label}: {self.who}"
        if self.state != "valid":
            line += f"; entry {self.state}: excuses nothing"
        elif self.failed:
            line += "; failure excused"
        return line

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__slots__}
        return data | {"excused": self.excused, "label": self.label, "who": self.who}


@dataclass(frozen=True, slots=True)
class QuarantineView:
    """The section read once: rows (tests by node id, then gates), its entries and
    those of them that are not valid."""

    file: str
    digest: str
    rows: tuple[QuarantinedRow, ...]
    entries: tuple[Mapping[str, Any], ...]
    signatures_required: bool = False

    @property
    def problems(self) -> tuple[Mapping[str, Any], ...]:
        """Entries that are not valid (expired, unsigned, untrusted, tampered)."""
        return tuple(e for e in self.entries if e.get("state") != "valid")

    @property
    def tests(self) -> tuple[QuarantinedRow, ...]:
        return tuple(r for r in self.rows if r.kind == "test")

    @property
    def gates(self) -> tuple[QuarantinedRow, ...]:
        return tuple(r for r in self.rows if r.kind == "gate")

    def fatal(self, entry: Mapping[str, Any]) -> bool:
        """Whether an entry that is not valid fails the session: an expired one that a
        test or gate of this run matched, or any other where signatures are required."""
        state = entry.get("state")
        if state == "valid":
            return False
        if state == "expired":
            return any(r.entry == _text(entry, "id") for r in self.rows)
        return self.signatures_required

    def for_test(self, nodeid: str) -> QuarantinedRow | None:
        return next((r for r in self.tests if r.subject == nodeid), None)

    def for_gate(self, gate: str, subject: str, metric: str) -> QuarantinedRow | None:
        return next(
            (
                r
                for r in self.gates
                if (r.gate, r.subject) == (gate, subject) and r.metric in ("", metric)
            ),
            None,
        )

    def count(self, kind: str, outcome: str) -> int:
        return sum(1 for r in self.rows if r.kind == kind and r.outcome == outcome)

    def summary(self) -> str:
        """``2 tests (1 quarantined-fail, 1 quarantined-pass), 1 gate (...); 1 entry expired``."""
        parts = []
        for kind, rows in (("test", self.tests), ("gate", self.gates)):
            if rows:
                outcomes = ", ".join(
                    f"{self.count(kind, o)} {o}"
                    for o in (QUARANTINED_FAIL, QUARANTINED_PASS)
                    if self.count(kind, o)
                )
                parts.append(f"{len(rows)} {kind}{'s' if len(rows) != 1 else ''} ({outcomes})")
        text = ", ".join(parts) or "nothing matched"
        states: dict[str, int] = {}
        for entry in self.problems:
            states[_text(entry, "state")] = states.get(_text(entry, "state"), 0) + 1
        for state, n in sorted(states.items()):
            text += f"; {n} entr{'ies' if n != 1 else 'y'} {state}"
        return text


def quarantine_view(record: RunRecord) -> QuarantineView | None:
    """The record's quarantine section, or None when the project had no quarantine file."""
    section = record.quarantine
    if not section:
        return None
    entries = tuple(dict(e) for e in section.get("entries", ()))
    states = {_text(e, "id"): _text(e, "state") for e in entries}
    rows: list[QuarantinedRow] = []
    for kind, key in (("test", "tests"), ("gate", "gates")):
        for item in section.get(key, ()):
            rows.append(
                QuarantinedRow(
                    kind=kind,
                    subject=_text(item, "nodeid" if kind == "test" else "subject"),
                    outcome=_text(item, "outcome"),
                    entry=_text(item, "entry"),
                    owner=_text(item, "owner"),
                    issue=_text(item, "issue"),
                    expires=_text(item, "expires"),
                    state=states.get(_text(item, "entry"), "unknown"),
                    gate=_text(item, "gate"),
                    metric=_text(item, "metric"),
                    status=_text(item, "status"),
                )
            )
    return QuarantineView(
        file=_text(section, "file"),
        digest=_text(section, "digest"),
        rows=tuple(rows),
        entries=entries,
        signatures_required=bool(section.get("signatures_required")),
    )


def problem_text(entry: Mapping[str, Any], view: QuarantineView | None = None) -> str:
    """One line on an entry that is not valid: what, its state, whose, why, and what it
    does to the session (``view``: the section it is in, which says whether this run
    used it and whether signatures were required)."""
    state = _text(entry, "state")
    line = (
        f"quarantine entry for {_text(entry, 'subject')} is {state}: "
        f"owner {_text(entry, 'owner')}, issue {_text(entry, 'issue')}, "
        f"expires {_text(entry, 'expires')}"
    )
    detail = _text(entry, "detail")
    line += (f" ({detail})" if detail else "") + "; it excuses nothing"
    if view is not None and view.fatal(entry):
        if state == "expired":
            line += " and fails the session: renew it with a new reason or remove it"
        else:
            line += (" and fails the session (signatures are required): remove it and add "
                     "it anew, signed by a keyring key")  # fmt: skip
    return line


def print_quarantine(console: Console, view: QuarantineView | None, *, markup: bool) -> None:
    """The terminal section: a rule, one line per quarantined test and gate result
    (failures yellow, passes cyan; an entry that excuses nothing red), then one red
    line per entry that is not valid. Nothing without a quarantine file."""
    if view is None:
        return
    title = f"rtgov quarantined: {view.summary()}"
    console.rule(escape(title) if markup else title, characters="-")
    for row in view.rows:
        style = "red" if row.failed and not row.excused else _STYLE.get(row.outcome, "")
        text = escape(row.describe())
        console.print(
            f"[{style}]{text}[/]" if markup and style else text, highlight=False, soft_wrap=True
        )
    for entry in view.problems:
        text = ("ERROR " if view.fatal(entry) else "WARNING ") + escape(problem_text(entry, view))
        console.print(
            f"[bold red]{text}[/]" if markup else text, highlight=False, soft_wrap=True
        )


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def quarantine_markdown(view: QuarantineView | None, *, limit: int = 30) -> list[str]:
    """The Markdown section: a heading with the counts, a table of quarantined results
    (outcome, what, owner, issue, expires, entry state) and a line per invalid entry."""
    if view is None:
        return []
    lines = ["", f"#### 🔒 Quarantined: {_cell(view.summary())}"]
    rows: Sequence[QuarantinedRow] = view.rows
    if rows:
        lines += [
            "",
            "| outcome | quarantined | owner | issue | expires | entry |",
            "|---|---|---|---|---|---|",
        ]
        for row in rows[:limit]:
            outcome = f"**{row.outcome}**" if row.failed else row.outcome
            state = row.state if row.state == "valid" else f"**{row.state}**"
            cells = [outcome, f"`{row.label}`", row.owner, row.issue, row.expires, state]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        if len(rows) > limit:
            lines.append(f"\n... and {len(rows) - limit} more (`rtgov show`).")
    if view.problems:
        lines.append("")
        lines += [f"- ❌ {_cell(problem_text(e, view))}" for e in view.problems]
    return lines


def html_context(view: QuarantineView | None) -> dict[str, Any]:
    """The HTML report's quarantine section as plain data (empty without a file)."""
    if view is None:
        return {}
    return {
        "summary": view.summary(),
        "file": view.file,
        "digest": view.digest,
        "rows": [r.to_dict() for r in view.rows],
        "problems": [
            {**e, "text": problem_text(e, view), "fatal": view.fatal(e)} for e in view.problems
        ],
        "excused": sum(1 for r in view.rows if r.excused),
    }
