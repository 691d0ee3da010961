"""The ``@stage`` fixtures a session used, as the report layer shows them: rows, the
terminal section, the layered stage graph of the HTML report and the Markdown lines.

Everything is read from the run record: each fixture setup's ``stage`` event
(``plugin/stage_session.py``) and its sample's wall time, which is the time of the body
(an execution) or of the verified hit (key, lookup, hashing and loading). Pure: values in,
text or plain data out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.text import Text

from pytest_rtgov.core.format import format_ns
from pytest_rtgov.core.records import RunRecord

__all__ = [
    "OUTCOMES",
    "StageRow",
    "print_stages",
    "stage_counts",
    "stage_graph",
    "stage_markdown",
    "stage_rows",
]

# Every outcome an event can have; a stage node shows the worst of its setups' outcomes.
OUTCOMES = ("hit", "stored", "recheck", "miss", "refused")
KEY_SHOWN = 12
_STYLE = {"hit": "green", "stored": "cyan", "recheck": "magenta", "miss": "yellow"}
_NODE_W, _NODE_H, _COL, _ROW, _PAD = 170, 48, 230, 66, 12


@dataclass(frozen=True, slots=True)
class StageRow:
    """One ``@stage`` fixture setup of a session."""

    stage: str
    outcome: str
    wall_ns: int
    key: str
    reason: str
    finding: str
    fatal: bool
    worker: str
    nodeid: str
    upstream: tuple[str, ...]

    @property
    def executed(self) -> bool:
        """The body ran (every outcome but a hit)."""
        return self.outcome != "hit"

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "outcome": self.outcome,
            "time": format_ns(self.wall_ns),
            "key": self.key[:KEY_SHOWN],
            "reason": self.reason,
            "finding": self.finding,
            "fatal": self.fatal,
            "worker": self.worker,
            "nodeid": self.nodeid,
            "upstream": list(self.upstream),
        }


def stage_rows(record: RunRecord) -> list[StageRow]:
    """Every stage setup, in the record's canonical order (fixtures, then setups)."""
    rows = []
    for entry in record.fixtures:
        for setup in entry.setups:
            event: Mapping[str, Any] | None = setup.stage
            if not event:
                continue
            rows.append(
                StageRow(
                    stage=str(event.get("stage", entry.name)),
                    outcome=str(event.get("outcome", "")),
                    # a hit's cost: the key and the check before the region, then the load
                    wall_ns=setup.sample.wall_ns
                    + (int(event.get("key_ns", 0)) if event.get("key_before_region") else 0),
                    key=str(event.get("key", "")),
                    reason=str(event.get("reason", "") or ""),
                    finding=str(event.get("finding", "") or ""),
                    fatal=bool(event.get("fatal", False)),
                    worker=setup.worker,
                    nodeid=entry.nodeid,
                    upstream=tuple(str(u) for u in event.get("upstream", ())),
                )
            )
    return rows


def stage_counts(rows: Iterable[StageRow]) -> str:
    """``4 hit, 0 executed``, with the executed outcomes when there are any:
    ``1 hit, 3 executed (2 stored, 1 refused)``."""
    rows = list(rows)
    hits = sum(1 for r in rows if not r.executed)
    executed = [r.outcome for r in rows if r.executed]
    text = f"{hits} hit, {len(executed)} executed"
    if executed:
        parts = [f"{executed.count(o)} {o}" for o in OUTCOMES if o in executed]
        parts += sorted({f"{executed.count(o)} {o}" for o in executed if o not in OUTCOMES})
        text += f" ({', '.join(parts)})"
    findings = sum(1 for r in rows if r.finding)
    if findings:
        text += f", {findings} nondeterminism finding{'s' if findings > 1 else ''}"
    return text


def print_stages(console: Console, record: RunRecord, *, compact: bool = False) -> None:
    """The terminal section: ``rtgov stages: N hit, M executed``, then (unless
    ``compact``) one line per setup: name, outcome, time, key, reason. Refused entries
    are red (bold where they fail the session), findings yellow. Nothing without stages."""
    rows = stage_rows(record)
    if not rows:
        return
    worst = "bold red" if any(r.fatal for r in rows) else None
    if worst is None and any(r.outcome == "refused" or r.finding for r in rows):
        worst = "yellow"
    console.print(Text(f"rtgov stages: {stage_counts(rows)}", style=worst or ""), soft_wrap=True)
    if compact:
        return
    several = len(record.workers) > 1
    names = [f"{r.stage} [{r.worker}]" if several else r.stage for r in rows]
    width = max(len(n) for n in names)
    outcome_width = max(len(r.outcome) for r in rows)
    for name, row in zip(names, rows, strict=True):
        style = "bold red" if row.fatal else "red" if row.outcome == "refused" else ""
        line = Text("  ")
        line.append(name.ljust(width), style=style)
        line.append("  ")
        line.append(row.outcome.ljust(outcome_width), style=style or _STYLE.get(row.outcome, ""))
        line.append(f"  {format_ns(row.wall_ns):>10}  key {row.key[:KEY_SHOWN]}")
        if row.reason:
            line.append(f"  {row.reason}", style=style)
        console.print(line, soft_wrap=True)
        if row.finding:
            console.print(Text(f"    {row.finding}", style="yellow"), soft_wrap=True)


def _depths(order: list[str], upstream: Mapping[str, set[str]]) -> dict[str, int]:
    """Each stage's column: 0 without upstream stages, else one after its deepest."""
    depths: dict[str, int] = {}

    def depth(name: str, seen: frozenset[str]) -> int:
        if name in depths:
            return depths[name]
        ups = [u for u in upstream.get(name, ()) if u in upstream and u not in seen]
        found = 1 + max((depth(u, seen | {name}) for u in ups), default=-1)
        depths[name] = found
        return found

    for name in order:
        depth(name, frozenset())
    return depths


def _route(source: tuple[int, int], target: tuple[int, int]) -> str:
    """An SVG path from a box's right side to another's left side that crosses no box:
    straight to the next column, else through the gaps: along the lane under the source's
    row, between the boxes of the columns it passes."""
    (ux, uy), (x, y) = source, target
    x1, y1, x2, y2 = ux + _NODE_W, uy + _NODE_H // 2, x - 4, y + _NODE_H // 2
    if x - ux <= _COL:
        return f"M{x1},{y1} L{x2},{y2}"
    gap = (_COL - _NODE_W) // 3
    lane = uy + _NODE_H + (_ROW - _NODE_H) // 2
    return f"M{x1},{y1} H{x1 + gap} V{lane} H{x - gap} V{y2} H{x2}"


def stage_graph(rows: list[StageRow]) -> dict[str, Any] | None:
    """The stage graph as plain data for an inline SVG: one node per stage name (its
    setups' outcomes, the worst one colouring it), columns by depth, upstream on the
    left, an edge from each upstream stage to the stage that requested it."""
    if not rows:
        return None
    order: list[str] = []
    upstream: dict[str, set[str]] = {}
    outcomes: dict[str, list[str]] = {}
    keys: dict[str, set[str]] = {}
    reasons: dict[str, list[str]] = {}
    for r in rows:
        if r.stage not in upstream:
            order.append(r.stage)
            upstream[r.stage], outcomes[r.stage] = set(), []
            keys[r.stage], reasons[r.stage] = set(), []
        upstream[r.stage].update(r.upstream)
        outcomes[r.stage].append(r.outcome)
        keys[r.stage].add(r.key[:KEY_SHOWN])
        reasons[r.stage] += [t for t in (r.reason, r.finding) if t]
    depths = _depths(order, upstream)
    columns: dict[int, list[str]] = {}
    for name in order:
        columns.setdefault(depths[name], []).append(name)
    place: dict[str, tuple[int, int]] = {}
    for col, names in columns.items():
        for i, name in enumerate(names):
            place[name] = (_PAD + col * _COL, _PAD + i * _ROW)
    nodes = []
    for name in order:
        x, y = place[name]
        seen = list(dict.fromkeys(outcomes[name]))
        rank = [OUTCOMES.index(o) if o in OUTCOMES else len(OUTCOMES) for o in seen]
        worst = seen[rank.index(max(rank))]
        detail = f"key {', '.join(sorted(keys[name]))}"
        if reasons[name]:
            detail += "; " + "; ".join(dict.fromkeys(reasons[name]))
        nodes.append(
            {"name": name, "x": x, "y": y, "outcome": worst, "label": ", ".join(seen),
             "detail": detail}
        )
    edges = []
    for name in order:
        for up in sorted(upstream[name]):
            if up in place:
                edges.append({"source": up, "target": name, "d": _route(place[up], place[name])})
    links = [f"{e['source']} -> {e['target']}" for e in edges]
    summary = "; ".join(f"{n['name']} {n['label']}" for n in nodes)
    return {
        "nodes": nodes,
        "edges": edges,
        "w": _PAD * 2 + max(depths.values()) * _COL + _NODE_W,
        "h": _PAD * 2 + max(len(c) for c in columns.values()) * _ROW,  # a lane below the last
        "node_w": _NODE_W,
        "node_h": _NODE_H,
        "summary": f"{summary}" + (f" (edges: {', '.join(links)})" if links else ""),
    }


def stage_markdown(record: RunRecord, *, limit: int = 30) -> list[str]:
    """The Markdown export's lines: the counts, then a table of the setups (none
    without stages)."""
    # here, not at the top: report/export imports this module (its markdown table)
    from pytest_rtgov.report.export.common import markdown_cell

    rows = stage_rows(record)
    if not rows:
        return []
    lines = [
        "",
        f"Stages: {stage_counts(rows)}.",
        "",
        "| stage | outcome | time | key | reason |",
        "|---|---|---|---|---|",
    ]
    for r in rows[:limit]:
        outcome = f"**{r.outcome}**" if r.outcome == "refused" or r.finding else r.outcome
        reason = "; ".join(t for t in (r.reason, r.finding) if t) or "-"
        cells = [f"`{r.stage}`", outcome, format_ns(r.wall_ns), f"`{r.key[:KEY_SHOWN]}`", reason]
        lines.append("| " + " | ".join(markdown_cell(c) for c in cells) + " |")
    if len(rows) > limit:
        lines.append(f"\n... and {len(rows) - limit} more (`rtgov show`).")
    return lines
