"""The Markdown export: a short summary for people and CI step summaries. Pure."""

from __future__ import annotations

from typing import Final

from pytest_rtgov.core.format import format_change, format_value
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.core.verdict import GATE_STATUSES, UNGATED, Verdict
from pytest_rtgov.report.export.common import _number, markdown_cell
from pytest_rtgov.report.quarantine import quarantine_markdown, quarantine_view
from pytest_rtgov.report.stages import stage_markdown

__all__ = ["to_markdown"]

_MARKDOWN_ROWS: Final = 30


def to_markdown(record: RunRecord) -> str:
    """A short summary for people and CI step summaries: verdict, then what breached
    (a quarantined breach says so), then the quarantined tests and gates."""
    verdict = Verdict.of_record(record)
    view = quarantine_view(record)
    status = verdict.status
    icon = {"passed": "✅", UNGATED: "📝"}.get(status, "❌")
    lines = [
        f"### {icon} rtgov: {status.upper()} (exit status {verdict.exit_status})",
        "",
        f"Run `{record.run_id}`, {record.mode} mode, backend {record.backend}, "
        f"{len(record.tests)} tests.",
    ]
    judged = [g for g in verdict.results if g.breached or g.status == "unconfirmed"]
    judged.sort(key=lambda g: (not g.breached, g.subject, g.metric))
    if judged:
        lines += [
            "",
            "| status | subject | metric | current | baseline | change | threshold | rule |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for g in judged[:_MARKDOWN_ROWS]:
            metric = g.metric
            quarantined = view.for_gate(g.gate, g.subject, metric) if view else None
            cells = [
                f"**{g.status}**" + (" (quarantined)" if quarantined else ""),
                f"`{g.subject}`",
                metric,
                format_value(metric, g.current),
                format_value(metric, g.baseline),
                format_change(metric, g.baseline, g.current, worse_relative=g.relative) or "-",
                format_value(metric, _number(g.threshold)),
                g.rule or "-",
            ]
            lines.append("| " + " | ".join(markdown_cell(c) for c in cells) + " |")
        if len(judged) > _MARKDOWN_ROWS:
            lines.append(f"\n... and {len(judged) - _MARKDOWN_ROWS} more (`rtgov show`).")
    if verdict.results:
        counts = {state: verdict.count(state) for state in GATE_STATUSES}
        shown = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
        # As the terminal's status line counts them: an excused breach apart.
        breached, excused = len(verdict.breaches), len(verdict.quarantined_breaches)
        excused_text = f", {excused} quarantined (excused)" if excused else ""
        lines += [
            "",
            f"{len(verdict.results)} gate checks, {breached} breached{excused_text}: {shown}.",
        ]
    outcomes: dict[str, int] = {}
    for test in record.tests:
        outcomes[test.outcome] = outcomes.get(test.outcome, 0) + 1
    if outcomes:
        lines.append("Tests: " + ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())) + ".")
    lines += stage_markdown(record, limit=_MARKDOWN_ROWS)
    lines += quarantine_markdown(view, limit=_MARKDOWN_ROWS)
    if verdict.notes:
        lines += ["", *(f"> {markdown_cell(note)}" for note in verdict.notes[:3])]
    return "\n".join(lines) + "\n"
