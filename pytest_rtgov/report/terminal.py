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

__all__ = ["format_bytes", "format_ns", "render_run", "render_summary"]

TOP = 5


def format_ns(ns: float | None) -> str:
    """>>> format_ns(1_500_000)
    '1.50 ms'
    """
    if ns is None:
        return "-"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.2f} {unit}"
    return f"{ns:.0f} ns"


def format_bytes(n: float | None) -> str:
    """>>> format_bytes(3 * 1024 * 1024)
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
) -> str:
    """The end-of-session summary; ``compact`` (pytest -q) keeps only the record line."""
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
