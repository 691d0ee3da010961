"""Compact rich rendering of a run record: slowest tests and fixtures, memory, metrics.

Rendering returns a string; writing it is the caller's business (pytest's terminal
reporter, or the CLI's stdout).
"""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from pytest_rtgov.core.format import (
    format_bytes,
    format_change,
    format_ns,
    format_value,
    shorten_ids,
)
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.core.stats import SampleSummary, summarize
from pytest_rtgov.core.verdict import BREACHING, GateResult, Verdict
from pytest_rtgov.report.quarantine import print_quarantine, quarantine_view
from pytest_rtgov.report.stages import print_stages

__all__ = [
    "render_results",
    "render_run",
    "render_summary",
    "render_verdict",
    "render_verdict_line",
]

TOP = 5
_SUBJECT_MIN = 16  # below this a subject column folds more than it shows


def _subject_table(
    title: str, subjects: list[str], columns: tuple[str, ...], *, left: int = 1
) -> tuple[Group, Table, list[str]]:
    """A heading and a table whose first column lists ``subjects`` without the prefix
    their node ids share; the other columns never wrap, the first ``left`` are left-aligned.

    The prefix (a directory, a module) is shown once, in the heading. The rest of each
    node id is never cut: the subject column takes the room the other columns leave
    (short headers keep that room large: about 36 of 80 columns for the timing tables),
    and a longer id folds onto a second line rather than ending in an ellipsis.
    """
    prefix, short = shorten_ids(subjects)
    heading = Text(f"{title} in {prefix}" if prefix else title, overflow="fold")
    table = Table(expand=False)
    table.add_column(columns[0], overflow="fold", min_width=_SUBJECT_MIN)
    for index, col in enumerate(columns[1:], start=1):
        table.add_column(col, justify="left" if index < left else "right", no_wrap=True)
    return Group(heading, table), table, short


def _rows(record: RunRecord) -> list[tuple[str, str, SampleSummary]]:
    """(kind, subject, summary) for every test and fixture setup with samples that count."""
    rows: list[tuple[str, str, SampleSummary]] = []
    for test in record.tests:
        summary = summarize(test.samples)
        if summary is not None:
            rows.append(("test", test.nodeid, summary))
    for fx in record.fixtures:
        for setup in fx.setups:
            summary = summarize([setup.sample])
            if summary is not None:
                where = f"{fx.nodeid}::" if fx.nodeid else ""
                rows.append(("fixture", f"{where}{fx.name} [{setup.worker}]", summary))
    return rows


def _tables(record: RunRecord, limit: int) -> list[Group]:
    rows = _rows(record)
    tables: list[Group] = []
    for kind, title in (
        ("test", "slowest tests (medians)"),
        ("fixture", "slowest fixture setups (medians)"),
    ):
        chosen = sorted((r for r in rows if r[0] == kind), key=lambda r: -r[2].wall_median_ns)
        chosen = chosen[:limit]
        if not chosen:
            continue
        shown, table, names = _subject_table(
            title,
            [subject for _, subject, _ in chosen],
            (kind, "n", "wall", "cpu", "peak mem"),
        )
        for name, (_, _, s) in zip(names, chosen, strict=True):
            table.add_row(
                escape(name),
                str(s.n),
                format_ns(s.wall_median_ns),
                format_ns(s.cpu_median_ns),
                format_bytes(s.peak_memory_max),
            )
        tables.append(shown)
    with_memory = [r for r in rows if r[2].peak_memory_max is not None]
    if with_memory:
        chosen = sorted(with_memory, key=lambda r: -(r[2].peak_memory_max or 0))[:limit]
        labels = [s if kind == "test" else f"{s} (setup)" for kind, s, _ in chosen]
        shown, table, names = _subject_table(
            f"largest peak memory ({record.memory_mode})", labels, ("subject", "peak mem")
        )
        for name, (_, _, s) in zip(names, chosen, strict=True):
            table.add_row(escape(name), format_bytes(s.peak_memory_max))
        tables.append(shown)
    metrics = [(t.nodeid, m) for t in record.tests for m in t.metrics]
    metrics += [
        (f"{fx.name} [{s.worker}]", m)
        for fx in record.fixtures
        for s in fx.setups
        for m in s.metrics
    ]
    metrics = metrics[: limit * 4]
    if metrics:
        shown, table, names = _subject_table(
            "recorded metrics",
            [subject for subject, _ in metrics],
            ("subject", "metric", "value"),
            left=2,  # values are numbers and short digests
        )
        for name, (_, m) in zip(names, metrics, strict=True):
            value = f"{format_value(m.name, m.value)} {m.unit}".strip()
            table.add_row(escape(name), escape(m.name), escape(value))
        tables.append(shown)
    return tables


def _console(markup: bool, width: int) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        force_terminal=markup,
        no_color=not markup,
        color_system="standard" if markup else None,
        width=max(width, 60),
        _environ={},
    )
    return console, buffer


def render_summary(
    record: RunRecord,
    *,
    record_path: Path | None,
    markup: bool,
    width: int = 100,
    compact: bool = False,
    ledger_line: str | None = None,
) -> str:
    """The end-of-session summary; ``compact`` (pytest -q) keeps only the record line
    (and the ledger line, when given) and the quarantined results, which are never left
    out (a quarantined failure must not look green)."""
    console, buffer = _console(markup, width)
    if not compact:
        console.rule("[bold]pytest-rtgov[/bold]" if markup else "pytest-rtgov")
        for table in _tables(record, TOP):
            console.print(table)
    where = f" written to {record_path}" if record_path else ""
    console.print(
        f"rtgov: run {record.run_id} ({record.mode}, {len(record.tests)} tests, "
        f"{len(record.fixtures)} fixtures, memory={record.memory_mode}){where}",
        highlight=False,
        soft_wrap=True,
    )
    print_stages(console, record, compact=compact)
    print_quarantine(console, quarantine_view(record), markup=markup)  # even when compact
    if ledger_line:
        console.print(ledger_line, highlight=False, soft_wrap=True, markup=False)
    return buffer.getvalue()


def render_run(record: RunRecord, *, markup: bool, width: int = 120) -> str:
    """Everything in a record as tables, for ``rtgov show``."""
    console, buffer = _console(markup, width)
    console.print(
        f"run {record.run_id}  mode={record.mode}  exit={record.exit_status}  "
        f"backend={record.backend}  memory={record.memory_mode}  "
        f"workers={','.join(record.workers)}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"started {record.started_at}  ended {record.ended_at}", highlight=False)
    for table in _tables(record, limit=len(record.tests) + len(record.fixtures) * 8 + 1):
        console.print(table)
    print_stages(console, record)
    print_quarantine(console, quarantine_view(record), markup=markup)
    return buffer.getvalue()


_STATUS_STYLE = {
    "breach": "bold red",
    "missing": "bold red",
    "unconfirmed": "magenta",
    "new": "yellow",
    "pass": "green",
}


def _print_result(console: Console, r: GateResult, markup: bool) -> None:
    label = r.status.upper()
    if markup:
        label = f"[{_STATUS_STYLE.get(r.status, '')}]{label}[/]"
    console.print(
        f"{label} {escape(r.gate)}: {escape(r.subject)} {escape(r.metric)}",
        highlight=False,
        soft_wrap=True,
    )
    before, after = format_value(r.metric, r.baseline), format_value(r.metric, r.current)
    evidence = f"baseline {before} -> current {after}"
    change = format_change(
        r.metric, r.baseline, r.current, worse_relative=r.relative, absolute=True
    )
    if change:
        evidence += f": {change}"
    evidence += f"; rule: {r.rule}"
    if r.reason:
        evidence += f"; {r.reason}"
    console.print("    " + escape(evidence), highlight=False, soft_wrap=True)


def render_verdict(
    verdict: Verdict,
    *,
    markup: bool,
    width: int = 100,
    show_all: bool = False,
    compact: bool = False,
    overridden: tuple[int, str] | None = None,
    closing: bool = True,
) -> str:
    """The gate verdict: breaches first with their evidence, notes, a one-line status.

    ``overridden``: the session's exit status and why, when something after the verdict
    (the ledger append) changed it; the status line then shows that one. ``closing``
    False leaves the status line out: a pytest session prints it last of all, after
    pytest's own summary line (:func:`render_verdict_line`).

    One block per result rather than a table: gate evidence has long node ids and
    reasons that a table would truncate on an 80-column CI log.
    """
    console, buffer = _console(markup, width)
    results = list(verdict.results)
    failing = BREACHING
    counted = verdict.breaches  # a breach a valid quarantine entry excuses is not counted
    sections = [
        ("rtgov gate breaches", [r for r in results if r.status in failing and r in counted]),
        (
            "rtgov quarantined gate breaches (excused by a valid entry: not failing)",
            [r for r in results if r.status in failing and r not in counted],
        ),
        (
            "rtgov unconfirmed (breached, then passed re-measurement: not failing)",
            [r for r in results if r.status == "unconfirmed"],
        ),
    ]
    if show_all:
        sections.append(
            (
                "rtgov other gate checks",
                [r for r in results if r.status not in (*failing, "unconfirmed")],
            )
        )
    for title, shown in sections if not compact else []:
        if not shown:
            continue
        console.rule(title, characters="-")
        for r in sorted(shown, key=lambda r: (r.subject, r.metric, r.gate)):
            _print_result(console, r, markup)
    for note in verdict.notes:
        console.print(f"rtgov: note: {escape(note)}", highlight=False, soft_wrap=True)
    if closing:
        console.print(_verdict_line(verdict, markup, overridden), highlight=False, soft_wrap=True)
    return buffer.getvalue()


def _verdict_line(verdict: Verdict, markup: bool, overridden: tuple[int, str] | None) -> str:
    results = verdict.results
    new = sum(1 for r in results if r.status == "new")
    breaches = len(verdict.breaches)  # those that count: not the quarantined ones
    quarantined = sum(1 for r in results if r.status in BREACHING) - breaches
    unconfirmed = sum(1 for r in results if r.status == "unconfirmed")
    status = verdict.status
    judged = f"{breaches} breached" + (f", {quarantined} quarantined" if quarantined else "")
    if verdict.baseline_action == "updated":  # an update: what it accepted, and not
        accepted = breaches if verdict.accepted is None else verdict.accepted
        judged = f"{breaches - accepted} breached, {accepted} accepted"
        judged = judged if accepted < breaches else f"{accepted} accepted"
    line = (
        f"rtgov gate: {status.upper()} ({len(results)} checks, {judged}, "
        f"{unconfirmed} unconfirmed, {new} new) "
        f"exit status {verdict.exit_status}"
    )
    failed_after = overridden is not None and overridden[0] != verdict.exit_status
    if overridden is not None and failed_after:
        line = line.rsplit(" exit status ", 1)[0] + f" exit status {overridden[0]}: {overridden[1]}"
    style = "bold green" if status == "passed" and not failed_after else "bold red"
    return f"[{style}]{escape(line)}[/]" if markup else escape(line)


def render_verdict_line(
    verdict: Verdict,
    *,
    markup: bool,
    width: int = 100,
    overridden: tuple[int, str] | None = None,
) -> str:
    """The verdict's one status line, ``rtgov gate: STATUS (...) exit status N``: bold
    green when the gate passed, else bold red (the last line of a pytest session)."""
    console, buffer = _console(markup, width)
    console.print(_verdict_line(verdict, markup, overridden), highlight=False, soft_wrap=True)
    return buffer.getvalue()


def render_results(
    results: list[GateResult], empty: list[str], *, markup: bool, width: int = 120
) -> str:
    """Every gate result, one line each (``rtgov baseline diff``)."""
    console, buffer = _console(markup, width)
    for r in results:
        change = format_change(r.metric, r.baseline, r.current, worse_relative=r.relative)
        change = f" ({change})" if change else ""
        console.print(
            f"{r.status:8s} {escape(r.gate)}: {escape(r.subject)} {escape(r.metric)}: "
            f"{escape(format_value(r.metric, r.baseline))} -> "
            f"{escape(format_value(r.metric, r.current))}"
            f"{change}  \\[{escape(r.rule)}] {escape(r.reason)}",
            highlight=False,
            soft_wrap=True,
        )
    for name in empty:
        console.print(f"note: gate {escape(name)!s} selected nothing in this run", highlight=False)
    return buffer.getvalue()
