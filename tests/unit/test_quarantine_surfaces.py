"""Every surface shows a run's quarantine section (docs/quarantine.md): the terminal,
the HTML report, the GitHub annotations, JUnit, Prometheus, OTLP and Markdown.

The record is the committed fixture record judged by real gates (tests/unit/
test_export.py), with a quarantine section as the plugin writes it: the softmax test
failed under a valid entry, its "softmax budget" breach is quarantined by a valid gate
entry, the accuracy test passed under an expired one, and an unsigned entry matched
nothing.
"""

from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.report.ci import annotations
from pytest_rtgov.report.export import export
from pytest_rtgov.report.html import render_report, report_context
from pytest_rtgov.report.quarantine import quarantine_view
from pytest_rtgov.report.terminal import render_run, render_summary
from tests.unit.test_export import ACCURACY, FIXTURE, SOFTMAX, _judged

E_TEST, E_GATE, E_OLD, E_BAD = (f"sha256:{c * 64}" for c in "abcd")
WHO = {"owner": "ana@example.com", "issue": "https://example.com/issues/7"}


def _entry(entry_id: str, subject: str, state: str, expires: str) -> dict[str, Any]:
    return {
        "id": entry_id,
        "subject": subject,
        **WHO,
        "reason": "flaky on shared runners",
        "created": "2026-11-20",
        "expires": expires,
        "evidence": [],
        "state": state,
        "keyid": None if state == "unsigned" else "k1",
        "detail": "" if state == "valid" else f"{state} detail",
    }


def _who(entry_id: str, expires: str) -> dict[str, str]:
    return {"entry": entry_id, **WHO, "expires": expires}


SECTION = {
    "file": "rtgov.quarantine.json",
    "digest": "sha256:" + "e" * 64,
    "signatures_required": False,
    "entries": [
        _entry(E_GATE, "gate:softmax budget", "valid", "2026-12-04"),
        _entry(E_BAD, "tests/other.py::test_x", "unsigned", "2026-12-04"),
        _entry(E_TEST, SOFTMAX, "valid", "2026-12-04"),
        _entry(E_OLD, ACCURACY, "expired", "2026-11-29"),
    ],
    "tests": [
        {"nodeid": SOFTMAX, "outcome": "quarantined-fail", **_who(E_TEST, "2026-12-04")},
        {"nodeid": ACCURACY, "outcome": "quarantined-pass", **_who(E_OLD, "2026-11-29")},
    ],
    "gates": [
        {
            "gate": "softmax budget",
            "subject": SOFTMAX,
            "metric": "wall_time",
            "status": "breach",
            "outcome": "quarantined-fail",
            **_who(E_GATE, "2026-12-04"),
        }
    ],
}


def with_quarantine(record: RunRecord, section: dict[str, Any]) -> RunRecord:
    return dataclasses.replace(record, quarantine=section)


def _fixture_record() -> RunRecord:
    judged = _judged(RunRecord.from_dict(json.loads(FIXTURE.read_text()), source=str(FIXTURE)))
    tests = tuple(
        dataclasses.replace(t, outcome="failed") if t.nodeid == SOFTMAX else t
        for t in judged.tests
    )
    return with_quarantine(dataclasses.replace(judged, tests=tests), SECTION)


@pytest.fixture(scope="module")
def record() -> RunRecord:
    return _fixture_record()


def test_the_view_reads_rows_states_and_problems(record):
    view = quarantine_view(record)
    assert view is not None
    softmax = view.for_test(SOFTMAX)
    assert softmax is not None and softmax.excused and softmax.state == "valid"
    accuracy = view.for_test(ACCURACY)
    assert accuracy is not None and not accuracy.failed and accuracy.state == "expired"
    gate = view.for_gate("softmax budget", SOFTMAX, "wall_time")
    assert gate is not None and gate.excused
    assert [e["state"] for e in view.problems] == ["unsigned", "expired"]
    assert view.summary() == (
        "2 tests (1 quarantined-fail, 1 quarantined-pass), 1 gate (1 quarantined-fail); "
        "1 entry expired; 1 entry unsigned"
    )
    assert quarantine_view(dataclasses.replace(record, quarantine={})) is None


def test_terminal_section_even_when_compact(record):
    for compact in (False, True):
        text = render_summary(record, record_path=None, markup=False, compact=compact)
        assert "rtgov quarantined: 2 tests" in text
        assert f"quarantined-fail {SOFTMAX}: owner ana@example.com, issue " in text
        assert "expires 2026-12-04; failure excused" in text
        assert f"quarantined-pass {ACCURACY}" in text and "entry expired: excuses nothing" in text
        assert "quarantined-fail gate softmax budget" in text
        assert "WARNING quarantine entry for tests/other.py::test_x is unsigned" in text
        # the expired entry matched a test of this run: it fails the session
        assert f"ERROR quarantine entry for {ACCURACY} is expired" in text
    assert "rtgov quarantined:" in render_run(record, markup=False)
    plain = dataclasses.replace(record, quarantine={})
    assert "quarantined" not in render_summary(plain, record_path=None, markup=False)


def test_github_annotations(record):
    lines = annotations(record, {SOFTMAX: ("tests/workload/test_kernel_perf.py", 12)})
    warnings = [line for line in lines if line.startswith("::warning")]
    test_warning = next(line for line in warnings if "quarantined failure" in line)
    assert "file=tests/workload/test_kernel_perf.py,line=12" in test_warning
    assert "owner ana@example.com" in test_warning and "expires 2026-12-04" in test_warning
    assert "issues/7" in test_warning and E_TEST in test_warning
    gate_warning = next(line for line in warnings if "quarantined gate breach" in line)
    assert "softmax budget" in gate_warning and E_GATE in gate_warning
    assert not any("softmax budget" in line for line in lines if line.startswith("::error"))
    errors = [line for line in lines if line.startswith("::error file=rtgov.quarantine.json")]
    assert len(errors) == 2
    assert any("is expired" in e and "owner ana@example.com" in e for e in errors)
    assert any("is unsigned" in e for e in errors)
    assert any(line.startswith("::notice") and ACCURACY in line for line in lines)


def test_an_entry_that_is_not_valid_leaves_the_failure_an_error(record):
    section = json.loads(json.dumps(SECTION))
    section["entries"][2]["state"] = "untrusted"
    lines = annotations(with_quarantine(record, section), {})
    assert any(
        line.startswith("::error") and "untrusted entry" in line and SOFTMAX in line
        for line in lines
    )


def test_junit_flaky_failure_as_surefire_writes_it(record):
    root = ET.fromstring(export(record, "junit"))
    (suite,) = root.findall("testsuite")
    cases = {(c.get("classname"), c.get("name")): c for c in suite.findall("testcase")}
    softmax = cases[("tests.workload.test_kernel_perf", "test_softmax")]
    assert softmax.find("failure") is None
    flaky = softmax.findall("flakyFailure")
    assert len(flaky) == 2 and all(f.get("type") and f.get("message") for f in flaky)
    texts = [f.find("stackTrace").text for f in flaky]
    assert any("softmax budget" in t and "<= 1 ns" in t for t in texts)
    assert any(t.startswith(f"quarantined-fail {SOFTMAX}") for t in texts)
    props = {p.get("name"): p.get("value") for p in softmax.find("properties")}
    assert props["rtgov.quarantine"] == E_TEST
    assert props["rtgov.quarantine.owner"] == "ana@example.com"
    assert props["rtgov.quarantine.issue"] == WHO["issue"]
    assert props["rtgov.quarantine.expires"] == "2026-12-04"
    assert props["rtgov.quarantine.outcome"] == "quarantined-fail"
    assert props["rtgov.quarantine[softmax budget]"] == E_GATE
    accuracy = cases[("tests.workload.test_validation", "test_val_accuracy")]
    acc = {p.get("name"): p.get("value") for p in accuracy.find("properties")}
    assert acc["rtgov.quarantine.state"] == "expired"
    # the softmax case is not a failure any more; the breached fixture still is
    assert suite.get("failures") == "1"
    # Surefire's order inside a testcase: properties, failure, flakyFailure, skipped...
    assert [c.tag for c in softmax] == ["properties", "flakyFailure", "flakyFailure"]


def test_junit_failure_under_an_entry_that_is_not_valid(record):
    section = json.loads(json.dumps(SECTION))
    section["entries"][2]["state"] = "expired"
    root = ET.fromstring(export(with_quarantine(record, section), "junit"))
    softmax = next(c for c in root.iter("testcase") if c.get("name") == "test_softmax")
    failure = softmax.find("failure")
    assert failure is not None and "entry expired: excuses nothing" in failure.text
    assert [c.tag for c in softmax] == ["properties", "failure", "flakyFailure"]


def test_prometheus(record):
    from prometheus_client.parser import text_string_to_metric_families

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(export(record, "prometheus").decode())
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        wanted = {**labels, "backend": "numpy"}
        return samples[(name, tuple(sorted(wanted.items())))]

    assert value("rtgov_quarantined_tests", outcome="quarantined-fail") == 1
    assert value("rtgov_quarantined_tests", outcome="quarantined-pass") == 1
    assert value("rtgov_quarantined_gates", outcome="quarantined-fail") == 1
    assert value("rtgov_quarantine_excused_failures") == 2
    assert (
        value(
            "rtgov_quarantined_result",
            subject=SOFTMAX,
            gate="",
            metric="",
            entry=E_TEST,
            outcome="quarantined-fail",
        )
        == 1
    )
    info = value(
        "rtgov_quarantine_entry_info",
        entry=E_OLD,
        subject=ACCURACY,
        owner="ana@example.com",
        issue=WHO["issue"],
        expires="2026-11-29",
        state="expired",
    )
    assert info == 1
    name = "rtgov_quarantine_entry_expires_timestamp_seconds"
    assert value(name, entry=E_OLD, subject=ACCURACY) == 1795910400  # 2026-11-29T00:00:00Z


def test_otlp_attributes(record):
    data = json.loads(export(record, "otlp"))
    metrics = data["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]

    def attrs(point: dict[str, Any]) -> dict[str, Any]:
        return {a["key"]: next(iter(a["value"].values())) for a in point["attributes"]}

    results = next(m for m in metrics if m["name"] == "rtgov.quarantine.result")
    by_subject = {
        (a["subject"], a.get("gate", "")): (p, a)
        for p in results["gauge"]["dataPoints"]
        for a in [attrs(p)]
    }
    point, softmax = by_subject[(SOFTMAX, "")]
    assert point["asInt"] == "1" and softmax["rtgov.quarantine.entry"] == E_TEST
    assert softmax["rtgov.quarantine.owner"] == "ana@example.com"
    assert softmax["rtgov.quarantine.expires"] == "2026-12-04"
    assert softmax["rtgov.quarantine.excused"] == "true"
    _, accuracy = by_subject[(ACCURACY, "")]
    assert accuracy["rtgov.quarantine.state"] == "expired"
    assert by_subject[(SOFTMAX, "softmax budget")][1]["rtgov.quarantine.entry"] == E_GATE
    wall = next(m for m in metrics if m["name"] == "rtgov.wall_time")
    judged = [attrs(p) for p in wall["gauge"]["dataPoints"] if attrs(p)["subject"] == SOFTMAX]
    assert judged and all(a["rtgov.quarantine.entry"] == E_GATE for a in judged)


def test_markdown_section(record):
    text = export(record, "markdown").decode()
    assert "#### 🔒 Quarantined: 2 tests" in text
    assert f"| **quarantined-fail** | `{SOFTMAX}` | ana@example.com |" in text
    assert "**expired**" in text and "is unsigned" in text
    assert "**breach** (quarantined)" in text
    assert "1 breached, 1 quarantined (excused)" in text  # as the terminal counts them


def test_html_section_and_badges(record):
    html = render_report(report_context(record))
    assert 'id="quarantine-table"' in html and 'href="#quarantine"' in html
    assert html.count('<span class="badge quarantined-fail">') >= 3  # table x2, subject row
    assert f"<td><code>{SOFTMAX}</code>" in html
    assert 'id="quarantine-problems"' in html and "is unsigned" in html
    assert 'title="owner ana@example.com' in html  # the breach row's badge
    plain = render_report(report_context(dataclasses.replace(record, quarantine={})))
    assert 'id="quarantine' not in plain and "badge quarantined" not in plain


def test_the_verdict_lists_a_quarantined_breach_apart(record):
    from pytest_rtgov.core.verdict import Verdict
    from pytest_rtgov.report.terminal import render_verdict

    text = render_verdict(Verdict.of_record(record), markup=False)
    breaches, _, rest = text.partition("rtgov quarantined gate breaches")
    assert "data" in breaches and "softmax budget" not in breaches
    assert "BREACH softmax budget" in rest
    assert "(5 checks, 1 breached, 1 quarantined, 0 unconfirmed, 1 new)" in text


def test_json_export_carries_the_section(record):
    data = json.loads(export(record, "json"))
    assert data["quarantine"] == SECTION
    plain = dataclasses.replace(record, quarantine={})
    assert "quarantine" not in json.loads(export(plain, "json"))


def test_junit_an_excused_setup_error_is_a_flaky_error(record):
    tests = tuple(
        dataclasses.replace(t, outcome="error") if t.nodeid == SOFTMAX else t
        for t in record.tests
    )
    root = ET.fromstring(export(dataclasses.replace(record, tests=tests), "junit"))
    softmax = next(c for c in root.iter("testcase") if c.get("name") == "test_softmax")
    assert [c.tag for c in softmax] == ["properties", "flakyFailure", "flakyError"]
    assert softmax.find("flakyError").get("type") == "error"
    assert root.get("errors") == "0"
