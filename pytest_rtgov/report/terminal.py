"""Compact rich rendering of a run record: slowest tests and fixtures, memory, metrics.

Rendering returns a string; writing it is the caller's business (pytest's terminal
reporter, or the CLI's stdout).
"""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.core.stats import summarize

__all__ = [
    "format_bytes",
    "format_ns",
    "render_results",
    "render_run",
    "render_summary",
    "render_verdict",
]

TOP = 5


def format_ns(ns: float | None) -> str:
    """Nanoseconds in the largest fitting unit.

    >>> format_ns(1_500_000)
    '1.50 ms'
    """
    if ns is None:
        return "-"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.2f} {unit}"
    return f"{ns:.0f} ns"


def format_bytes(n: float | None) -> str:
    """Bytes in binary units.

    >>> format_bytes(3 * 1024 * 1024)
    '3.0 MiB'
    """
    if n is None:
        return "-"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def _rows(record: RunRecord) -> list[tuple[str, str, object]]:
    """(kind, subject, summary) for every test and fixture setup with samples."""
    rows: list[tuple[str, str, object]] = []
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


def _tables(record: RunRecord, limit: int) -> list[Table]:
    rows = _rows(record)
    tables: list[Table] = []
    for kind, title in (("test", "slowest tests"), ("fixture", "slowest fixture setups")):
        chosen = sorted(
            (r for r in rows if r[0] == kind),
            key=lambda r: -r[2].wall_median_ns,  # type: ignore[attr-defined]
        )[:limit]
        if not chosen:
            continue
        table = Table(title=title, title_justify="left", expand=False)
        for col in ("subject", "n", "wall (median)", "cpu (median)", "peak mem"):
            table.add_column(col, justify="left" if col == "subject" else "right")
        for _, subject, s in chosen:
            table.add_row(
                escape(subject),
                str(s.n),  # type: ignore[attr-defined]
                format_ns(s.wall_median_ns),  # type: ignore[attr-defined]
                format_ns(s.cpu_median_ns),  # type: ignore[attr-defined]
                format_bytes(s.peak_memory_max),  # type: ignore[attr-defined]
            )
        tables.append(table)
    with_memory = [r for r in rows if r[2].peak_memory_max is not None]  # type: ignore[attr-defined]
    if with_memory:
        table = Table(title=f"largest peak memory ({record.memory_mode})", title_justify="left")
        table.add_column("subject")
        table.add_column("peak mem", justify="right")
        for kind, subject, s in sorted(
            with_memory,
            key=lambda r: -r[2].peak_memory_max,  # type: ignore[attr-defined]
        )[:limit]:
            label = subject if kind == "test" else f"{subject} (setup)"
            table.add_row(escape(label), format_bytes(s.peak_memory_max))  # type: ignore[attr-defined]
        tables.append(table)
    metrics = [(t.nodeid, m) for t in record.tests for m in t.metrics]
    metrics += [
        (f"{fx.name} [{s.worker}]", m)
        for fx in record.fixtures
        for s in fx.setups
        for m in s.metrics
    ]
    if metrics:
        table = Table(title="recorded metrics", title_justify="left")
        for col in ("subject", "metric", "value"):
            table.add_column(col, justify="right" if col == "value" else "left")
        for subject, m in metrics[: limit * 4]:
            value = m.value if isinstance(m.value, str) else f"{m.value:.6g}"
            table.add_row(escape(subject), escape(m.name), escape(f"{value} {m.unit}".strip()))
        tables.append(table)
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
    (and the ledger line, when given)."""
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
    return buffer.getvalue()


_STATUS_STYLE = {
    "breach": "bold red",
    "missing": "bold red",
    "unconfirmed": "magenta",
    "new": "yellow",
    "pass": "green",
}


def _value(metric: str, value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value[:19] + "…" if len(value) > 20 else value
    if metric in ("wall_time", "cpu_time", "gpu_time"):
        return format_ns(float(value) * 1e9)  # type: ignore[arg-type]
    if metric in ("peak_memory", "gpu_memory"):
        return format_bytes(float(value))  # type: ignore[arg-type]
    return f"{value:.6g}"


def _print_result(console: Console, r: object, markup: bool) -> None:
    label = r.status.upper()  # type: ignore[attr-defined]
    if markup:
        label = f"[{_STATUS_STYLE.get(r.status, '')}]{label}[/]"  # type: ignore[attr-defined]
    console.print(
        f"{label} {escape(r.gate)}: {escape(r.subject)} {escape(r.metric)}",  # type: ignore[attr-defined]
        highlight=False,
        soft_wrap=True,
    )
    if r.relative is not None:  # type: ignore[attr-defined]
        rel = r.relative  # type: ignore[attr-defined]
        change = "+inf" if rel == float("inf") else f"{rel * 100:+.1f}% worse"
        if r.delta is not None:  # type: ignore[attr-defined]
            sign = "+" if r.delta >= 0 else "-"  # type: ignore[attr-defined]
            change += f", {sign}{_value(r.metric, abs(r.delta))}"  # type: ignore[attr-defined]
    else:
        change = ""
    evidence = f"baseline {_value(r.metric, r.baseline)} -> current {_value(r.metric, r.current)}"  # type: ignore[attr-defined]
    if change:
        evidence += f" ({change})"
    evidence += f"; rule: {r.rule}"  # type: ignore[attr-defined]
    if r.reason:  # type: ignore[attr-defined]
        evidence += f"; {r.reason}"  # type: ignore[attr-defined]
    console.print("    " + escape(evidence), highlight=False, soft_wrap=True)


def render_verdict(
    verdict: object,
    *,
    markup: bool,
    width: int = 100,
    show_all: bool = False,
    compact: bool = False,
    overridden: tuple[int, str] | None = None,
) -> str:
    """The gate verdict: breaches first with their evidence, notes, a one-line status.

    ``overridden``: the session's exit status and why, when something after the verdict
    (the ledger append) changed it; the status line then shows that one.

    One block per result rather than a table: gate evidence has long node ids and
    reasons that a table would truncate on an 80-column CI log.
    """
    console, buffer = _console(markup, width)
    results = list(verdict.results)  # type: ignore[attr-defined]
    failing = ("breach", "missing")
    sections = [
        ("rtgov gate breaches", [r for r in results if r.status in failing]),
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
    for note in verdict.notes:  # type: ignore[attr-defined]
        console.print(f"rtgov: note: {escape(note)}", highlight=False, soft_wrap=True)
    new = sum(1 for r in results if r.status == "new")
    breaches = sum(1 for r in results if r.status in failing)
    unconfirmed = sum(1 for r in results if r.status == "unconfirmed")
    status = verdict.status  # type: ignore[attr-defined]
    judged = "accepted" if verdict.baseline_action == "updated" else "breached"  # type: ignore[attr-defined]
    line = (
        f"rtgov gate: {status.upper()} ({len(results)} checks, {breaches} {judged}, "
        f"{unconfirmed} unconfirmed, {new} new) "
        f"exit status {verdict.exit_status}"  # type: ignore[attr-defined]
    )
    failed_after = overridden is not None and overridden[0] != verdict.exit_status  # type: ignore[attr-defined]
    if overridden is not None and failed_after:
        line = line.rsplit(" exit status ", 1)[0] + f" exit status {overridden[0]}: {overridden[1]}"
    style = "bold green" if status == "passed" and not failed_after else "bold red"
    console.print(
        f"[{style}]{escape(line)}[/]" if markup else line, highlight=False, soft_wrap=True
    )
    return buffer.getvalue()


def render_results(results: list, empty: list[str], *, markup: bool, width: int = 120) -> str:
    """Every gate result, one line each (``rtgov baseline diff``)."""
    console, buffer = _console(markup, width)
    for r in results:
        change = ""
        if r.relative is not None:
            change = " (+inf)" if r.relative == float("inf") else f" ({r.relative * 100:+.1f}%)"
        console.print(
            f"{r.status:8s} {escape(r.gate)}: {escape(r.subject)} {escape(r.metric)}: "
            f"{escape(_value(r.metric, r.baseline))} -> {escape(_value(r.metric, r.current))}"
            f"{change}  \\[{escape(r.rule)}] {escape(r.reason)}",
            highlight=False,
            soft_wrap=True,
        )
    for name in empty:
        console.print(f"note: gate {escape(name)!s} selected nothing in this run", highlight=False)
    return buffer.getvalue()
