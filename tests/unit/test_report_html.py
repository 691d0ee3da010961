"""The HTML report's and the Markdown export's honest output: changes read better or
worse in the metric's direction, and trend charts have axes with values in their units
and dated runs.

The record is the committed fixture record judged by real gates: the accuracy gate
breaches on a drop from 0.99 to 0.958, the softmax gate on a wall-time regression.
"""

from __future__ import annotations

import dataclasses
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pytest_rtgov.core.delta_index import DeltaIndex, Observation, RunInfo
from pytest_rtgov.core.gates import evaluate_gates
from pytest_rtgov.core.gates_config import Gate, GatesConfig
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.core.stats import summarize
from pytest_rtgov.core.subjects import BaselineView
from pytest_rtgov.report.html import render_report, report_context

FIXTURE = Path(__file__).parents[2] / "fixtures" / "records" / "run-v1.json"
SOFTMAX = "tests/workload/test_kernel_perf.py::test_softmax"
ACCURACY = "tests/workload/test_validation.py::test_val_accuracy"


def _judged() -> RunRecord:
    record = RunRecord.from_dict(json.loads(FIXTURE.read_text()), source=str(FIXTURE))
    wall = summarize(next(t for t in record.tests if t.nodeid == SOFTMAX).samples)
    assert wall is not None
    gates = GatesConfig(
        source="gates.toml",
        min_samples=1000,  # no significance tests: effect thresholds only
        gates=(
            Gate(name="softmax", metric="wall_time", tests=(SOFTMAX,), max_regression_pct=10),
            Gate(name="accuracy", metric="val_accuracy", tests=(ACCURACY,), max_regression=0.02),
        ),
    )
    baseline = BaselineView(
        # the softmax kernel took half its time in the baseline: +100% (worse)
        measurements={SOFTMAX: {"wall_time": [wall.wall_median_ns * 1e-9 / 2]}},
        metrics={ACCURACY: {"val_accuracy": [0.99]}},
    )
    results, _ = evaluate_gates(gates, record, baseline)
    assert [r.status for r in results] == ["breach", "breach"]
    return dataclasses.replace(
        record,
        mode="gate",
        exit_status=6,
        gate_results=tuple(r.to_dict() for r in results),
        verdict={
            "status": "breached",
            "exit_status": 6,
            "breaches": 2,
            "unconfirmed": 0,
            "gates_evaluated": 2,
            "notes": [],
            "baseline_action": None,
        },
    )


def _info(run_id: str, started_at: str) -> RunInfo:
    return RunInfo(run_id, started_at, "ab" * 20, "main", False, "", "fp", "numpy", "passed", 0)


@pytest.fixture(scope="module")
def html() -> str:
    record = _judged()
    index = DeltaIndex()
    for day, (wall, accuracy) in enumerate([(1e-3, 0.99), (1.2e-3, 0.985)], start=20):
        index.add_run(
            _info(f"run-{day}", f"2026-11-{day}T10:00:00.000Z"),
            [
                Observation(SOFTMAX, "wall_time", wall),
                Observation(ACCURACY, "val_accuracy", accuracy),
            ],
        )
    index.add_record(record)
    return render_report(report_context(record, index=index))


class _Svg(HTMLParser):
    """The text of each chart's axes: {"y-axis": [(class, text)], "x-axis": [...]}."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: list[dict[str, list[tuple[str, str]]]] = []
        self.group: str | None = None
        self.text_class: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "svg" and found.get("role") == "img" and "aria-labelledby" in found:
            if str(found["aria-labelledby"]).startswith("ct"):
                self.charts.append({"y-axis": [], "x-axis": []})
        elif tag == "g" and found.get("class") in ("y-axis", "x-axis"):
            self.group = found["class"]
        elif tag == "text" and self.group is not None:
            self.text_class = found.get("class") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "g":
            self.group = None
        elif tag == "text":
            self.text_class = None

    def handle_data(self, data: str) -> None:
        if self.group is not None and self.text_class is not None and self.charts:
            self.charts[-1][self.group].append((self.text_class, data))


def _cells(html: str, table: str) -> list[list[str]]:
    body = html.split(f'<table id="{table}">', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body, flags=re.S)
    return [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, flags=re.S) for row in rows]


def test_a_drop_in_accuracy_reads_as_a_drop_and_worse(html):
    head, *rows = _cells(html, "breach-table")
    change = head.index("change")
    by_metric = {row[2]: row[change] for row in rows}
    assert by_metric["val_accuracy"] == "-3.2% (worse)"  # 0.99 -> 0.958, never "+3.2%"
    assert by_metric["wall_time"] == "+100.0% (worse)"
    # the subject table's deltas column (changes of 5% or more) says the same
    assert "wall_time +100.0% (worse)" in html
    assert not re.search(r">\+3\.2%", html)


def test_trend_charts_have_axes_with_units_and_dated_runs(html):
    parser = _Svg()
    parser.feed(html)
    assert len(parser.charts) == 2  # softmax wall time and accuracy, three runs each
    for chart in parser.charts:
        y_ticks = [text for kind, text in chart["y-axis"] if kind == "tick"]
        x_ticks = [text for kind, text in chart["x-axis"] if kind == "tick"]
        titles = [text for kind, text in chart["y-axis"] + chart["x-axis"] if kind == "title"]
        assert len(y_ticks) >= 3, chart
        assert x_ticks[0] == "1" and x_ticks[-1] == "3", chart
        assert "run (1 = oldest, 3 = latest), 2026-11-20 to 2026-11-22" in titles, titles
    wall, accuracy = sorted(parser.charts, key=lambda c: str(c["y-axis"]), reverse=True)
    wall_ticks = [text for kind, text in wall["y-axis"] if kind == "tick"]
    # values with their unit on the y axis: "1.2 ms", "800 us"
    assert all(re.fullmatch(r"-?\d+(\.\d+)? (ns|us|ms|s)", t) for t in wall_ticks), wall_ticks
    assert ("title", "wall_time (s)") in wall["y-axis"]
    assert ("title", "val_accuracy") in accuracy["y-axis"]  # recorded with no unit
    accuracy_ticks = [float(t) for kind, t in accuracy["y-axis"] if kind == "tick"]
    assert min(accuracy_ticks) <= 0.96 and max(accuracy_ticks) >= 0.98, accuracy_ticks


def test_the_markdown_export_says_the_same_change():
    from pytest_rtgov.report.export import export

    text = export(_judged(), "markdown").decode()
    assert "| current | baseline | change | threshold |" in text
    assert "| val_accuracy | 0.958 | 0.99 | -3.2% (worse) | 0.97 |" in text
    assert "| wall_time |" in text and "| +100.0% (worse) |" in text
