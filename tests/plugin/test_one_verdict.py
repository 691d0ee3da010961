"""One run reads the same verdict everywhere: the terminal, ``rtgov show``, the HTML
report, every export format and the GitHub step summary (issue 12, item 1).

Each face is parsed into (status, exit status, breaches); all must agree. The breach is
a recorded metric under a budget, so nothing here depends on timing or machine load.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_rtgov.core.constants import EXIT_GATE_BREACHED
from tests.plugin._cli import cli

SUITE = """
def test_accuracy(rtgov):
    rtgov.record("val_accuracy", 0.5, higher_is_better=True)

def test_loss(rtgov):
    rtgov.record("val_loss", 0.1, higher_is_better=False)
"""

GATES = """
[defaults]
baseline = "baseline"

[[gates]]
name = "accuracy"
metric = "val_accuracy"
tests = ["test_suite.py::test_accuracy"]
min = 0.9

[[gates]]
name = "loss"
metric = "val_loss"
tests = ["test_suite.py::test_loss"]
max = 1.0
"""

Face = tuple[str, int, int]  # status, exit status, breaches


def _terminal(text: str) -> Face | None:
    found = re.search(r"rtgov gate: (\S+) \(\d+ checks, (\d+) breached.*exit status (\d+)", text)
    if found is None:
        return None
    return found.group(1).lower(), int(found.group(3)), int(found.group(2))


def _html(text: str) -> Face:
    found = re.search(
        r"Verdict: (\S+) &middot; exit status (\d+)\s*(?:&middot; (\d+) breached)?", text
    )
    assert found is not None, text[:2000]
    return found.group(1).lower(), int(found.group(2)), int(found.group(3) or 0)


def _json(path: Path) -> Face:
    doc = json.loads(path.read_text())
    breaches = sum(1 for row in doc["metrics"] if row["verdict"] in ("breach", "missing"))
    assert doc["verdict"]["breaches"] == breaches
    assert doc["verdict"]["exit_status"] == doc["exit_status"]
    return doc["verdict"]["status"], doc["exit_status"], doc["verdict"]["breaches"]


def _prometheus(path: Path) -> Face:
    from prometheus_client.parser import text_string_to_metric_families

    families = text_string_to_metric_families(path.read_text())
    samples = {s.name: s for family in families for s in family.samples}
    return (
        samples["rtgov_run_info"].labels["verdict"],
        int(samples["rtgov_run_exit_status"].value),
        int(samples["rtgov_run_gate_breaches"].value),
    )


def _otlp(path: Path) -> Face:
    doc = json.loads(path.read_text())
    resource = doc["resourceMetrics"][0]
    attributes = {a["key"]: a["value"] for a in resource["resource"]["attributes"]}
    points = {
        m["name"]: int(m["gauge"]["dataPoints"][0]["asInt"])
        for m in resource["scopeMetrics"][0]["metrics"]
        if m["name"].startswith("rtgov.run.")
    }
    return (
        attributes["rtgov.verdict"]["stringValue"],
        points["rtgov.run.exit_status"],
        points["rtgov.run.gate_breaches"],
    )


def _junit(path: Path) -> Face:
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None
    props = {p.get("name"): p.get("value") for p in suite.find("properties") or ()}
    rtgov_failures = suite.findall("testcase/failure[@type='rtgov']")
    return str(props["rtgov.verdict"]), int(str(props["rtgov.exit_status"])), len(rtgov_failures)


def _markdown(text: str) -> Face:
    head = re.search(r"rtgov: (\S+) \(exit status (\d+)\)", text)
    assert head is not None, text
    counted = re.search(r"gate checks, (\d+) breached", text)
    return head.group(1).lower(), int(head.group(2)), int(counted.group(1)) if counted else 0


def _session(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mode: str) -> dict:
    """One session with every face on; what each face says."""
    out = pytester.path / "out"
    out.mkdir()
    summary = pytester.path / "step-summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.delenv("CI", raising=False)
    formats = dict(json="json", prometheus="prom", otlp="json", junit="xml", markdown="md")
    exports = [f"--rtgov-export={fmt}:{out / f'{fmt}.{ext}'}" for fmt, ext in formats.items()]
    result = pytester.runpytest(mode, "-p", "no:randomly", *exports)
    faces: dict = {"ret": int(result.ret), "terminal": _terminal(result.stdout.str())}
    faces["html"] = _html((pytester.path / ".rtgov" / "report.html").read_text())
    faces["json"] = _json(out / "json.json")
    faces["prometheus"] = _prometheus(out / "prometheus.prom")
    faces["otlp"] = _otlp(out / "otlp.json")
    faces["junit"] = _junit(out / "junit.xml")
    faces["markdown"] = _markdown((out / "markdown.md").read_text())
    faces["github"] = _markdown(summary.read_text())
    faces["annotations"] = result.stdout.str().count("::error ")
    return faces


def test_a_gated_breach_reads_the_same_everywhere(pytester, monkeypatch, capsys):
    pytester.makepyfile(test_suite=SUITE)
    pytester.makefile(".toml", gates=GATES)
    faces = _session(pytester, monkeypatch, "--rtgov-gate")
    expected = ("breached", EXIT_GATE_BREACHED, 1)
    assert faces["ret"] == EXIT_GATE_BREACHED
    for face in ("terminal", "html", "json", "prometheus", "otlp", "junit", "markdown", "github"):
        assert faces[face] == expected, (face, faces)
    assert faces["annotations"] == 1
    capsys.readouterr()
    assert cli(pytester, "show", "latest") == 0
    assert _terminal(capsys.readouterr().out) == expected


def test_an_ungated_run_reads_recorded_everywhere(pytester, monkeypatch, capsys):
    pytester.makepyfile(test_suite=SUITE)
    faces = _session(pytester, monkeypatch, "--rtgov")
    expected = ("recorded", 0, 0)
    assert faces["ret"] == 0
    assert faces["terminal"] is None  # no gate, no verdict line
    for face in ("html", "json", "prometheus", "otlp", "junit", "markdown", "github"):
        assert faces[face] == expected, (face, faces)
    assert faces["annotations"] == 0
    capsys.readouterr()
    assert cli(pytester, "show", "latest") == 0
    assert _terminal(capsys.readouterr().out) is None
