"""The self-contained HTML gate report, rendered at generation time with jinja2.

One file, no network and no external assets: styles and a few lines of script are
inline, charts are inline SVG with a text alternative each and axes (values with their
unit on the y axis, runs numbered oldest to latest with their dates on the x axis),
tables are real tables. Changes read as the value moved and say better or worse
(``core.format.format_change``).
What comes first is what a reviewer needs first: the verdict with its exit status,
then the breached and unconfirmed gates with their evidence, then everything else.

:func:`report_context` turns a record (plus optional history and ledger facts) into
plain data; :func:`render_report` turns that into HTML. Neither touches the disk.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup, escape

from pytest_rtgov.core.delta_index import MEASURED, DeltaIndex, Observation, observations_of
from pytest_rtgov.core.format import format_change, format_value
from pytest_rtgov.core.metrics import BUILTIN_METRICS, CALIBRATED_SUFFIX, metric_unit
from pytest_rtgov.core.provenance import provenance
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.core.subjects import subject_id
from pytest_rtgov.core.verdict import BREACHING, GateResult, Verdict
from pytest_rtgov.report.quarantine import html_context, quarantine_view
from pytest_rtgov.report.stages import stage_counts, stage_graph, stage_rows

__all__ = ["render_report", "report_context"]

_FIRST = (*BREACHING, "unconfirmed")
_SERIES_LIMIT = 60  # runs per trend chart
_CHART_W, _CHART_H, _PAD = 400, 170, 6
_LEFT, _BOTTOM = 80, 40  # room for the y axis's tick labels, the x axis's and its title
_X_TICKS = 5


def _fmt(metric: str, value: Any) -> str:
    """``core.format.format_value``, with an empty cell for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return format_value(metric, value)


def _column(metric: str, value: Any) -> str:
    """One unit per table column (ms, MiB), so that columns sort as numbers."""
    if not isinstance(value, (int, float)) or math.isnan(value):
        return ""
    builtin = BUILTIN_METRICS.get(metric)
    if builtin is not None and not builtin.is_time:
        return f"{value / 2**20:.4g}"
    return f"{value * 1e3:.4g}"


def _change(result: GateResult) -> str:
    """A gate's change as the value moved, better or worse (``core.format``)."""
    return format_change(
        result.metric, result.baseline, result.current, worse_relative=result.relative
    )


def _nice_ticks(low: float, high: float) -> list[float]:
    """Three to six round values (1, 2 or 5 times a power of ten apart) in [low, high]."""
    span = high - low
    if not span > 0 or not math.isfinite(span):
        return [low]
    power = 10 ** math.floor(math.log10(span))
    for step in (power * m for m in (5, 2, 1, 0.5, 0.2, 0.1)):
        first = math.ceil(low / step) * step
        ticks = [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]
        if len(ticks) >= 3:
            break
    return [round(t, 12) for t in ticks]


def _day_time(stamp: str) -> tuple[str, str]:
    """(date, hh:mm) of a record's ISO 8601 time."""
    day, _, clock = stamp.partition("T")
    return day, clock[:5]


def _x_title(runs: Sequence[str]) -> str:
    """The x axis's title: runs numbered oldest to latest, and the dates they span."""
    (first_day, first_time), (last_day, last_time) = _day_time(runs[0]), _day_time(runs[-1])
    title = f"run (1 = oldest, {len(runs)} = latest)"
    if not first_day or not last_day:
        return title
    if first_day == last_day:
        span = f"{first_day} {first_time} to {last_time}".strip()
    else:
        span = f"{first_day} to {last_day}"
    return f"{title}, {span}"


def _chart(
    metric: str,
    points: Sequence[tuple[str, float, str]],
    baseline: Any,
    threshold: Any,
    *,
    unit: str = "",
    started: Sequence[str] = (),
) -> dict[str, Any]:
    """An SVG polyline of a series with axes, the baseline line and the threshold band.

    The y axis's ticks are round values in the metric's units (``format_value``: ms,
    MiB, calibration ratios, or the recorded unit); the x axis numbers the runs oldest
    to latest and its title gives the dates (``started``: each run's start time).
    """
    values = [v for _, v, _ in points]
    extra = [x for x in (baseline, threshold) if isinstance(x, (int, float)) and math.isfinite(x)]
    low, high = min(values + extra), max(values + extra)
    span = (high - low) or abs(high) or 1.0
    low, high = low - span * 0.08, high + span * 0.08
    right, top, bottom = _CHART_W - _PAD, _PAD, _CHART_H - _BOTTOM

    def y(v: float) -> float:
        return round(bottom - (v - low) / (high - low) * (bottom - top), 1)

    step = (right - _LEFT - _PAD) / max(len(points) - 1, 1)
    coords = [(round(_LEFT + _PAD + i * step, 1), y(v)) for i, (_, v, _) in enumerate(points)]
    band = None
    if extra and isinstance(threshold, (int, float)) and isinstance(baseline, (int, float)):
        upper, lower = sorted((y(threshold), y(baseline)))
        band = {"y": upper, "h": round(lower - upper, 1)}
    bad = [c for c, (_, _, verdict) in zip(coords, points, strict=True) if verdict in _FIRST]
    builtin = metric in BUILTIN_METRICS or metric.endswith(CALIBRATED_SUFFIX)
    suffix = f" {unit}" if unit and not builtin else ""
    y_ticks = [
        {"y": y(v), "label": _fmt(metric, v) + suffix} for v in _nice_ticks(low, high)
    ]
    shown_unit = metric_unit(metric, unit)
    last = len(points) - 1
    shown = sorted({round(i * last / (_X_TICKS - 1)) for i in range(_X_TICKS)} if last else {0})
    x_ticks = [{"x": coords[i][0], "label": str(i + 1)} for i in shown]
    latest = values[-1]
    summary = (
        f"{metric} over {len(points)} runs: first {_fmt(metric, values[0])}, "
        f"min {_fmt(metric, min(values))}, max {_fmt(metric, max(values))}, "
        f"latest {_fmt(metric, latest)}"
        + (f"; baseline {_fmt(metric, baseline)}" if isinstance(baseline, (int, float)) else "")
        + (f"; threshold {_fmt(metric, threshold)}" if isinstance(threshold, (int, float)) else "")
        + (f"; {len(bad)} run(s) breached" if bad else "")
    )
    return {
        "w": _CHART_W,
        "h": _CHART_H,
        "left": _LEFT,
        "right": right,
        "top": top,
        "bottom": bottom,
        "polyline": " ".join(f"{x},{yv}" for x, yv in coords),
        "points": coords,
        "bad": bad,
        "baseline_y": y(baseline) if isinstance(baseline, (int, float)) else None,
        "threshold_y": y(threshold) if isinstance(threshold, (int, float)) else None,
        "band": band,
        "y_ticks": y_ticks,
        "y_title": f"{metric} ({shown_unit})" if shown_unit else metric,
        "x_ticks": x_ticks,
        "x_title": _x_title(started) if len(started) == len(points) else "run",
        "summary": summary,
    }


def _units(record: RunRecord) -> dict[tuple[str, str], str]:
    """(subject, metric) -> the unit a test or fixture recorded the metric in."""
    units = {(subject_id(t), m.name): m.unit for t in record.tests for m in t.metrics}
    for fx in record.fixtures:
        for m in (m for setup in fx.setups for m in setup.metrics):
            units.setdefault((subject_id(fx), m.name), m.unit)
    return units


def report_context(
    record: RunRecord,
    *,
    observations: list[Observation] | None = None,
    index: DeltaIndex | None = None,
    ledger: Mapping[str, Any] | None = None,
    lineage: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Plain data for the template: verdict, gates, subjects, charts, provenance."""
    verdict = Verdict.of_record(record)
    gates = [r.to_dict() for r in verdict.results]
    for g, result in zip(gates, verdict.results, strict=True):
        g["current_s"] = _fmt(g["metric"], g.get("current"))
        g["baseline_s"] = _fmt(g["metric"], g.get("baseline"))
        g["threshold_s"] = _fmt(g["metric"], g.get("threshold"))
        g["relative_s"] = _change(result)
    first = [g for g in gates if g["status"] in _FIRST]
    first.sort(key=lambda g: (_FIRST.index(g["status"]), g["subject"], g["metric"]))
    evidence: dict[str, str] = {}
    for t in record.tests:
        for s in t.samples:
            if s.evidence:
                evidence.setdefault(t.nodeid, s.evidence)
    view = quarantine_view(record)
    for g in first:
        g["evidence"] = evidence.get(g["subject"], "")
        quarantined = view.for_gate(g["gate"], g["subject"], g["metric"]) if view else None
        g["quarantined"] = quarantined.to_dict() if quarantined else None

    by_subject: dict[str, dict[str, Any]] = {}
    gate_status: dict[str, str] = {}
    for g in gates:
        prev = gate_status.get(g["subject"])
        if prev is None or (g["status"] in _FIRST and prev not in _FIRST):
            gate_status[g["subject"]] = g["status"]
    gate_rel = {(r.subject, r.metric): r for r in verdict.results}
    if observations is None:
        observations = observations_of(record)
    for obs in observations:
        row = by_subject.setdefault(
            obs.subject, {"subject": obs.subject, "cells": {}, "metrics": [], "deltas": []}
        )
        value = obs.text if obs.text is not None else obs.value
        if obs.metric in MEASURED:
            row["cells"][obs.metric] = _column(obs.metric, value)
        elif not obs.metric.startswith("artifact:"):
            row["metrics"].append(f"{obs.metric}={_fmt(obs.metric, value)}")
        judged = gate_rel.get((obs.subject, obs.metric))
        rel = judged.relative if judged is not None else None
        if judged is not None and rel is not None and math.isfinite(rel) and abs(rel) >= 0.05:
            row["deltas"].append(f"{obs.metric} {_change(judged)}")
    for q in view.tests if view else ():  # a failed test may have measured nothing
        by_subject.setdefault(
            q.subject, {"subject": q.subject, "cells": {}, "metrics": [], "deltas": []}
        )
    rows = []
    for subject in sorted(by_subject):
        row = by_subject[subject]
        status_of = gate_status.get(subject, "")
        row["status"] = status_of
        quarantined = view.for_test(subject) if view else None
        row["quarantine"] = quarantined.outcome if quarantined else ""
        row["changed"] = status_of in _FIRST or status_of == "new" or bool(row["deltas"])
        row["changed"] = row["changed"] or quarantined is not None
        row["metrics"] = "; ".join(row["metrics"])
        row["deltas"] = "; ".join(row["deltas"])
        rows.append(row)

    charts = []
    units = _units(record)
    if index is not None:
        seen = set()
        for g in sorted(
            gates, key=lambda g: (g["status"] not in _FIRST, g["subject"], g["metric"])
        ):
            key = (g["subject"], g["metric"])
            if key in seen or not isinstance(g.get("current"), (int, float)):
                continue
            seen.add(key)
            history = [
                (info, float(v), verdict_)
                for info, v, verdict_ in index.series(*key)
                if isinstance(v, (int, float))
            ][-_SERIES_LIMIT:]
            if len(history) < 2:
                continue
            chart = _chart(
                g["metric"],
                [(info.run_id, v, verdict_) for info, v, verdict_ in history],
                g.get("baseline"),
                g.get("threshold"),
                unit=units.get(key, ""),
                started=[info.started_at for info, _, _ in history],
            )
            chart.update(
                subject=g["subject"], metric=g["metric"], gate=g["gate"], status=g["status"]
            )
            charts.append(chart)
    memory = []
    raw = {o.subject: o.value for o in observations if o.metric == "peak_memory"}
    top = sorted(raw.items(), key=lambda kv: -kv[1])[:15]
    if top:
        biggest = top[0][1] or 1.0
        memory = [
            {"subject": s, "text": _fmt("peak_memory", v), "w": round(300 * v / biggest, 1)}
            for s, v in top
        ]
    prov = provenance(record)
    notes = list(verdict.notes)
    stages = stage_rows(record)
    return {
        "run_id": record.run_id,
        "mode": record.mode,
        "status": verdict.status,
        "exit_status": verdict.exit_status,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "verdict": verdict,
        "first": first,
        "gates": gates,
        "rows": rows,
        "changed_count": sum(r["changed"] for r in rows),
        "charts": charts,
        "memory": memory,
        "provenance": prov,
        "environment": sorted(prov["environment"].items()),
        "notes": notes,
        "incomparable": [n for n in notes if n.startswith("NOT COMPARABLE")],
        "ledger": dict(ledger or {}),
        "lineage": dict(lineage or {}),
        "tests": len(record.tests),
        "fixtures": len(record.fixtures),
        "stages": [r.to_dict() for r in stages],
        "stage_counts": stage_counts(stages) if stages else "",
        "stage_graph": stage_graph(stages),
        "quarantine": html_context(view),
    }


# One row of the subject table, every value escaped (markupsafe's escape, as the
# template's autoescape): formatting rows here rather than in a template loop saves
# ~20 us a row, and a report lists every test.
_ROW = (
    '<tr data-c="%d" class="%s"><td>%s%s</td><td>%s</td><td class="n">%s</td>'
    '<td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td>'
    "<td>%s</td><td>%s</td></tr>\n"
)


def _badge(outcome: str) -> Markup:
    """The quarantine badge of a subject row (``quarantined-pass``/``-fail``), or nothing."""
    if not outcome:
        return Markup("")
    return Markup(' <span class="badge %s">%s</span>') % (outcome, outcome)


def rows_html(rows: Sequence[Mapping[str, Any]]) -> Markup:
    """The subject table's body rows, escaped."""
    out = []
    wall, cpu, memory, gpu_time, gpu_memory = MEASURED  # the table's column order
    for r in rows:
        cell = r["cells"].get
        status = escape(r["status"])
        out.append(
            _ROW
            % (
                1 if r["changed"] else 0,
                status,
                escape(r["subject"]),
                _badge(r.get("quarantine", "")),
                status,
                escape(cell(wall, "")),
                escape(cell(cpu, "")),
                escape(cell(memory, "")),
                escape(cell(gpu_time, "")),
                escape(cell(gpu_memory, "")),
                escape(r["metrics"]),
                escape(r["deltas"]),
            )
        )
    return Markup("".join(out))


@functools.cache
def templates() -> Any:
    """The jinja2 environment of every page rtgov writes (report/templates/): escaping
    on, undefined names an error."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("pytest_rtgov.report", "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


@functools.cache
def _template() -> Any:
    """The compiled template, once per process (compiling it takes ~50 ms)."""
    return templates().get_template("report.html.j2")


def render_report(context: Mapping[str, Any]) -> str:
    return _template().render(**context, rows_html=rows_html(context["rows"]))
