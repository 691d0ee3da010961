"""A replay's verdict for people: terminal lines and an HTML section or page, the first
divergence first.

Reads the canonical form of a replay result (``core.replay.ReplayResult.to_dict()``,
the ``replay`` leaf's content), so a stored verdict renders as a fresh one does.
Order: the outcome; the first divergence (test or stage, checkpoint, occurrence, index,
expected, actual, ULP, mismatches, and the drifted fields as candidate causes); then
what is downstream of it, the environment drift, and the counts. Pure: values in, text
out.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.text import Text

from pytest_rtgov.core.format import format_digest
from pytest_rtgov.core.replay import STATUSES, ReplayResult

__all__ = [
    "print_replay",
    "render_html",
    "render_replay_page",
    "render_replay_section",
    "render_terminal",
    "replay_context",
    "replay_lines",
]

SHOWN = 20  # downstream checkpoints listed in the terminal before "and N more"
_STYLE = {
    "identical": "green",
    "within_tolerance": "green",
    "diverged": "bold red",
    "not_comparable": "yellow",
    "refused": "bold red",
}


def _data(result: ReplayResult | Mapping[str, Any]) -> Mapping[str, Any]:
    return result.to_dict() if isinstance(result, ReplayResult) else result


def _label(token: str) -> str:
    return token.replace("_", " ")


def _where(item: Mapping[str, Any]) -> str:
    """``logits`` or ``logits #2`` (its third occurrence in the owner)."""
    occurrence = int(item.get("occurrence", 0))
    return f"{item['checkpoint']} #{occurrence}" if occurrence else str(item["checkpoint"])


def _first_rows(first: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The first divergence as (label, text) rows, in the order people read them."""
    rows = [
        ("checkpoint", f"{first['checkpoint']} ({first['kind']}), occurrence {first['occurrence']}")
    ]
    if first.get("index") is not None:
        position = ", ".join(str(i) for i in first["position"])
        rows.append(("index", f"{first['index']} (flat), [{position}]"))
        rows.append(("expected", str(first["expected"])))
        rows.append(("actual", str(first["actual"])))
        if first.get("ulp") is not None:
            rows.append(("ULP", f"{first['ulp']} (max {first['max_ulp']} over the array)"))
        rows.append(("mismatches", f"{first['mismatches']} of {first['size']} elements"))
    elif not first.get("kept"):
        rows.append(("kept", "no: digests only"))
    if first.get("dtype") or first.get("shape") is not None:
        rows.append(("array", f"{first.get('dtype')} {first.get('shape')}"))
    rows.append(("reason", str(first.get("reason", ""))))
    if first.get("rule"):
        rows.append(("rule", str(first["rule"])))
    digests = [first.get("expected_sha256"), first.get("actual_sha256")]
    rows.append(
        ("digests", " -> ".join(format_digest(d) if d else "(none)" for d in digests))
    )
    causes = first.get("candidate_causes") or []
    if causes:
        rows.append(("candidate causes", f"{', '.join(causes)} (environment drift)"))
    return rows


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{counts.get(s, 0)} {_label(s)}" for s in STATUSES)


def _headline(data: Mapping[str, Any]) -> str:
    line = f"rtgov replay: {_label(data['outcome'])} (exit {data['exit_code']})"
    return f"{line}: {data['reason']}" if data.get("reason") else line


def replay_lines(result: ReplayResult | Mapping[str, Any], *, shown: int = SHOWN) -> list[str]:
    """The terminal section as plain lines."""
    data = _data(result)
    lines = [_headline(data)]
    first = data.get("first_divergence")
    if first:
        lines.append(f"first divergence: {first['role']} {first['owner']}")
        width = max(len(label) for label, _ in _first_rows(first))
        lines += [f"  {label.ljust(width)}  {text}" for label, text in _first_rows(first)]
    downstream = data.get("downstream") or []
    if downstream:
        lines.append(f"downstream of it ({len(downstream)}):")
        for item in downstream[:shown]:
            lines.append(
                f"  {item['role']} {item['owner']} :: {_where(item)}  "
                f"{_label(item['status'])}: {item['reason']}"
            )
        if len(downstream) > shown:
            lines.append(f"  ... and {len(downstream) - shown} more")
    drift = data.get("drift") or []
    if drift:
        allowed = " (allowed: --allow-env-drift)" if data.get("allow_env_drift") else ""
        lines.append(f"environment drift{allowed}:")
        lines += [f"  {d['field']}: {d['recorded']!r} -> {d['replayed']!r}" for d in drift]
    lines.append(f"checkpoints: {_counts(data.get('counts') or {})}")
    return lines


def render_terminal(result: ReplayResult | Mapping[str, Any]) -> str:
    """:func:`replay_lines` as one text."""
    return "\n".join(replay_lines(result))


def print_replay(console: Console, result: ReplayResult | Mapping[str, Any]) -> None:
    """:func:`replay_lines` on a rich console, the outcome line coloured."""
    data = _data(result)
    lines = replay_lines(data)
    console.print(Text(lines[0], style=_STYLE.get(data["outcome"], "")), soft_wrap=True)
    for line in lines[1:]:
        console.print(Text(line), soft_wrap=True)


def replay_context(result: ReplayResult | Mapping[str, Any]) -> dict[str, Any]:
    """What the template shows: the same content as the terminal, every downstream
    checkpoint listed."""
    data = _data(result)
    first = data.get("first_divergence")
    code = data.get("code") or {}
    facts = [
        (label, str(value))
        for label, value in (
            ("run", data.get("run_id")),
            ("replay", data.get("replay_id")),
            ("at", data.get("at")),
            ("selection", data.get("selection")),
            ("code", " ".join(str(v) for v in (code.get("commit"), code.get("how")) if v)),
            ("policy", format_digest("sha256:" + data["policy_sha256"])
             if data.get("policy_sha256") else None),
        )
        if value
    ]
    return {
        "facts": facts,
        "outcome": data["outcome"],
        "headline": _headline(data).removeprefix("rtgov replay: "),
        "first": first,
        "first_rows": _first_rows(first) if first else [],
        "downstream": [
            {**item, "where": _where(item), "status_label": _label(item["status"])}
            for item in data.get("downstream") or []
        ],
        "drift": list(data.get("drift") or []),
        "allow_env_drift": bool(data.get("allow_env_drift")),
        "counts": _counts(data.get("counts") or {}),
    }


@functools.cache
def _template() -> Any:
    from pytest_rtgov.report.html import templates

    return templates().get_template("replay.html.j2")


def render_replay_section(result: ReplayResult | Mapping[str, Any]) -> str:
    """The replay as an HTML ``<section id="replay">``, for a report that embeds it."""
    return str(_template().render(page=False, title="", **replay_context(result)))


def render_replay_page(
    result: ReplayResult | Mapping[str, Any], *, title: str | None = None
) -> str:
    """The replay as a self-contained HTML page (titled by the replayed run when the
    data names it: the ``replay`` leaf's summary does)."""
    data = _data(result)
    if title is None:
        title = f"rtgov replay of run {data['run_id']}" if data.get("run_id") else "rtgov replay"
    return str(_template().render(page=True, title=title, **replay_context(data)))


render_html = render_replay_page
