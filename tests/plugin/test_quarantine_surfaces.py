"""Never silently green (issue 18): a session with a quarantined failing test and a
quarantined gate breach passes, and each output shows them with outcome, owner, issue
and expiry: the terminal, the HTML report, the GitHub annotations and step summary,
``rtgov export junit|prometheus|otlp|markdown``, and the ledger's verdict leaf covers the
record's quarantine section. The entries are signed with a key the test generates, which
the project's keyring trusts.

The HTML report's section is also opened in headless Chromium (as
tests/plugin/test_report_browser.py does; skipped without it).
"""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_rtgov.core.canonical import canonical_json
from pytest_rtgov.core.quarantine import QUARANTINE_FILE, Entry
from pytest_rtgov.store.keys import generate_key
from pytest_rtgov.store.ledger import Ledger
from pytest_rtgov.store.quarantine_file import sign_entry
from tests.conftest import latest_record
from tests.plugin._cli import cli

SUITE = """
import os, time
import pytest

def test_flaky():
    assert os.environ.get("FLAKY_PASSES") == "1", "lost the race again"

def test_plain():
    pass

@pytest.mark.rtgov(rounds=2)
def test_slow():
    time.sleep(0.001)
"""

# A wall-time budget no test holds (1 us: the test sleeps 1 ms): a deterministic breach.
GATES = """
[[gates]]
name = "time"
metric = "wall_time"
tests = ["test_q.py::test_slow"]
max = "1 us"
"""

TODAY = "2026-06-10"
FLAKY = "test_q.py::test_flaky"
SLOW = "test_q.py::test_slow"
OWNER, ISSUE, EXPIRES = "alice@example.com", "https://example.com/issues/42", "2026-06-14"


def _entry(subject: str) -> Entry:
    return Entry(
        subject=subject,
        owner=OWNER,
        reason="flaky on shared runners",
        issue=ISSUE,
        created="2026-06-01",
        expires=EXPIRES,
    )


@pytest.fixture
def project(pytester, monkeypatch):
    for name in ("RTGOV_TRUSTED_KEYS", "RTGOV_KEYRING_SHA256", "CI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RTGOV_TODAY", TODAY)
    pytester.makepyfile(test_q=SUITE)
    pytester.makefile(".toml", gates=GATES)
    root = pytester.path
    signer = generate_key("team.example/q", root / "team.key", root / "rtgov.keyring")
    envelopes = [sign_entry(_entry(s), signer) for s in (FLAKY, "gate:time")]
    document = {"version": 1, "entries": envelopes}
    (root / QUARANTINE_FILE).write_bytes(canonical_json(document))
    return pytester


def _export(project, fmt: str) -> str:
    out = project.path / f"export.{fmt}"
    assert cli(project, "export", "--format", fmt, "-o", str(out)) == 0
    return out.read_text(encoding="utf-8")


def test_a_quarantined_failure_leaves_the_session_green_and_shows_everywhere(
    project, monkeypatch
):
    summary = project.path / "step-summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = project.runpytest("--rtgov-gate", "-p", "no:randomly")
    result.assert_outcomes(passed=2, failed=1)  # it ran and failed: pytest says so
    out = result.stdout.str()
    assert result.ret == 0, out
    record = latest_record(project.path)
    section = record["quarantine"]
    ids = {e["subject"]: e["id"] for e in section["entries"]}
    assert [t["outcome"] for t in section["tests"]] == ["quarantined-fail"]
    assert [g["outcome"] for g in section["gates"]] == ["quarantined-fail"]
    who = f"owner {OWNER}, issue {ISSUE}, expires {EXPIRES}"

    # 1. the terminal: the quarantined section, and the breach counted apart
    result.stdout.fnmatch_lines(
        [
            "*rtgov quarantined: 1 test (1 quarantined-fail), 1 gate (1 quarantined-fail)*",
            f"quarantined-fail {FLAKY}: {who}; failure excused",
            f"quarantined-fail gate time: {SLOW} wall_time: {who}; failure excused",
        ]
    )
    result.stdout.fnmatch_lines(["*rtgov quarantined gate breaches*", "BREACH time: *"])
    result.stdout.fnmatch_lines(["rtgov gate: PASSED (1 checks, 0 breached, 1 quarantined,*"])

    # 2. the HTML report: the section and the badge on the test's row
    html = (project.path / ".rtgov" / "report.html").read_text()
    assert 'id="quarantine-table"' in html and f"<code>{FLAKY}</code>" in html
    assert f"<td>{OWNER}</td>" in html and f'<a href="{ISSUE}">' in html
    assert f"<td>{FLAKY} <span class=\"badge quarantined-fail\">" in html

    # 3. GitHub: a warning per quarantined failure, naming the entry; the step summary
    warnings = [line for line in result.stdout.lines if line.startswith("::warning")]
    flaky = next(w for w in warnings if f"quarantined-fail {FLAKY}" in w)
    assert flaky.startswith("::warning file=test_q.py,line=") and ids[FLAKY] in flaky
    assert OWNER in flaky and "issues/42" in flaky and EXPIRES in flaky
    assert any("quarantined gate breach" in w and ids["gate:time"] in w for w in warnings)
    assert not [line for line in result.stdout.lines if line.startswith("::error")]
    assert f"| **quarantined-fail** | `{FLAKY}` | {OWNER} |" in summary.read_text()

    # 4. JUnit: a flakyFailure (Surefire's), no failure, the entry as properties
    root = ET.fromstring(_export(project, "junit"))
    case = next(c for c in root.iter("testcase") if c.get("name") == "test_flaky")
    assert case.find("failure") is None
    (flaky_failure,) = case.findall("flakyFailure")
    assert flaky_failure.get("type") == "failed" and flaky_failure.get("message")
    assert EXPIRES in flaky_failure.find("stackTrace").text
    props = {p.get("name"): p.get("value") for p in case.find("properties")}
    assert props["rtgov.quarantine"] == ids[FLAKY]
    assert (props["rtgov.quarantine.owner"], props["rtgov.quarantine.issue"]) == (OWNER, ISSUE)
    assert props["rtgov.quarantine.expires"] == EXPIRES
    assert root.get("failures") == "0"
    slow = next(c for c in root.iter("testcase") if c.get("name") == "test_slow")
    assert slow.find("failure") is None and slow.find("flakyFailure") is not None

    # 5. Prometheus, OTLP, Markdown
    prometheus = _export(project, "prometheus")
    assert 'rtgov_quarantined_tests{backend="numpy",outcome="quarantined-fail"} 1.0' in prometheus
    assert 'rtgov_quarantined_gates{backend="numpy",outcome="quarantined-fail"} 1.0' in prometheus
    assert f'owner="{OWNER}"' in prometheus and f'expires="{EXPIRES}"' in prometheus
    otlp = json.loads(_export(project, "otlp"))
    (metrics,) = [s["metrics"] for s in otlp["resourceMetrics"][0]["scopeMetrics"]]
    (results,) = [m for m in metrics if m["name"] == "rtgov.quarantine.result"]
    attributes = [
        {a["key"]: a["value"].get("stringValue") for a in point["attributes"]}
        for point in results["gauge"]["dataPoints"]
    ]
    flaky_point = next(a for a in attributes if a["subject"] == FLAKY)
    assert flaky_point["rtgov.quarantine.entry"] == ids[FLAKY]
    assert flaky_point["rtgov.quarantine.owner"] == OWNER
    assert flaky_point["rtgov.quarantine.expires"] == EXPIRES
    markdown = _export(project, "markdown")
    assert "#### 🔒 Quarantined: 1 test (1 quarantined-fail), 1 gate" in markdown
    assert f"`gate time: {SLOW} wall_time`" in markdown

    # 6. the ledger: the run's verdict leaf covers the record, section included
    stored = (project.path / ".rtgov" / "runs" / f"{record['run_id']}.json").read_bytes()
    assert b'"quarantine":{' in stored
    leaves = [json.loads(f.payload) for f in Ledger(project.path / ".rtgov" / "ledger").frames()]
    (verdict,) = [v for v in leaves if v["kind"] == "verdict" and v["run_id"] == record["run_id"]]
    digest = hashlib.sha256(stored.rstrip(b"\n")).hexdigest()
    assert verdict["record_sha256"] == f"sha256:{digest}"
    assert cli(project, "verify") == 0


def test_the_report_section_in_a_browser(tmp_path: Path):
    from selenium.webdriver.common.by import By

    from pytest_rtgov.report.html import render_report, report_context
    from tests.plugin.test_report_browser import _driver
    from tests.unit.test_quarantine_surfaces import SOFTMAX, _fixture_record

    report = tmp_path / "report.html"
    report.write_text(render_report(report_context(_fixture_record())), encoding="utf-8")
    browser = _driver()
    try:
        browser.get(report.as_uri())
        banner = browser.find_element(By.ID, "verdict")
        assert "quarantined: 2 tests" in banner.text
        table = browser.find_element(By.ID, "quarantine-table")
        assert table.is_displayed()
        rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
        assert len(rows) == 3
        failed = next(r for r in rows if SOFTMAX in r.text and "gate" not in r.text)
        assert "quarantined-fail" in failed.text and "ana@example.com" in failed.text
        expired = table.find_element(By.CSS_SELECTOR, "tr.not-valid")
        assert "expired" in expired.text and "excuses nothing" in expired.text
        problems = browser.find_element(By.ID, "quarantine-problems")
        assert problems.is_displayed() and "unsigned" in problems.text
        # the test's row in the subject table carries the badge, shown without "show all"
        badge = browser.find_element(By.CSS_SELECTOR, "#subject-table .badge.quarantined-fail")
        assert badge.is_displayed() and badge.text == "quarantined-fail"
    finally:
        browser.quit()
