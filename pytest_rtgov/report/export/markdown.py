"""The Markdown export: a short summary for people and CI step summaries. Pure."""

from __future__ import annotations

from typing import Final

from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.report.export.common import (
    _BREACHED,
    VERDICT_STATES,
    _format,
    _number,
    _verdict,
)

__all__ = ["to_markdown"]

_MARKDOWN_ROWS: Final = 30


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(record: RunRecord) -> str:
    """A short summary for people and CI step summaries: verdict, then what breached."""
    verdict = _verdict(record)
    status = str(verdict["status"])
    icon = {"passed": "✅", "recorded": "📝"}.get(status, "❌")
    lines = [
        f"### {icon} rtgov: {status.upper()} (exit status {verdict['exit_status']})",
        "",
        f"Run `{record.run_id}`, {record.mode} mode, backend {record.backend}, "
        f"{len(record.tests)} tests.",
    ]
    judged = [g for g in record.gate_results if g.get("status") in (*_BREACHED, "unconfirmed")]
    judged.sort(
        key=lambda g: (g.get("status") not in _BREACHED, str(g["subject"]), str(g["metric"]))
    )
    if judged:
        lines += [
            "",
            "| status | subject | metric | current | baseline | threshold | rule |",
            "|---|---|---|---|---|---|---|",
        ]
        for g in judged[:_MARKDOWN_ROWS]:
            metric = str(g["metric"])
            cells = [
                f"**{g['status']}**",
                f"`{g['subject']}`",
                metric,
                _format(metric, g.get("current")),
                _format(metric, g.get("baseline")),
                _format(metric, _number(g.get("threshold"))),
                str(g.get("rule") or "-"),
            ]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        if len(judged) > _MARKDOWN_ROWS:
            lines.append(f"\n... and {len(judged) - _MARKDOWN_ROWS} more (`rtgov show`).")
    if record.gate_results:
        counts = {state: 0 for state in VERDICT_STATES}
        for g in record.gate_results:
            counts[str(g.get("status"))] = counts.get(str(g.get("status")), 0) + 1
        shown = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
        lines += ["", f"{len(record.gate_results)} gate checks: {shown}."]
    outcomes: dict[str, int] = {}
    for test in record.tests:
        outcomes[test.outcome] = outcomes.get(test.outcome, 0) + 1
    if outcomes:
        lines.append("Tests: " + ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())) + ".")
    notes = verdict.get("notes") or []
    if notes:
        lines += ["", *(f"> {_cell(str(note))}" for note in notes[:3])]
    return "\n".join(lines) + "\n"
