"""The HTML gate report in a real browser: headless Chromium driven by chromedriver.

Chromium and chromedriver come from Debian (``apt-get install chromium chromium-driver``;
``.ci/run`` installs them). Without them the test skips, unless
``RTGOV_REQUIRE_BROWSER=1`` (set by ``.ci/run``) makes that a failure. The browser
runs with a dead proxy, so a report that needed the network would show it.

The kernel is a fixed amount of CPU work gated on ``cpu_time``, which a loaded machine
does not stretch: the breach the report shows is the code's, never the machine's.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pytest_rtgov.core.constants import EXIT_GATE_BREACHED

ARTIFACTS = Path(os.environ.get("RTGOV_TEST_ARTIFACTS", "test-artifacts")).resolve()

SUITE = """
import os
import pytest

SLOW = float(os.environ.get("SUITE_SLOW", "1"))

@pytest.mark.rtgov(rounds=7, warmup=1)
def test_kernel():  # CPU work: a few ms of CPU time, times SLOW
    total = 0
    for i in range(int(40_000 * SLOW)):
        total += i * i

@pytest.mark.parametrize("i", range(30))
def test_accuracy(rtgov, i):
    rtgov.record("val_accuracy", 0.95, higher_is_better=True)
"""

GATES = """
[defaults]
baseline = "baseline"

[[gates]]
name = "kernel time"
metric = "cpu_time"
tests = ["test_suite.py::test_kernel"]
max_regression_pct = 30

[[gates]]
name = "accuracy"
metric = "val_accuracy"
tests = ["test_suite.py::*"]
min = 0.9
"""


def _driver():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not (chromium and chromedriver):
        if os.environ.get("RTGOV_REQUIRE_BROWSER") == "1":
            pytest.fail("RTGOV_REQUIRE_BROWSER=1 but chromium/chromedriver are not installed")
        pytest.skip("needs Debian's chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--proxy-server=127.0.0.1:9",  # networking off: any request would fail
        "--window-size=1280,2000",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(chromedriver), options=options)


@pytest.fixture(scope="module")
def browser():
    driver = _driver()
    yield driver
    driver.quit()


def test_a_breach_is_the_first_thing_the_report_shows_and_the_filter_works(
    pytester, monkeypatch, browser
):
    from selenium.webdriver.common.by import By

    pytester.makepyfile(test_suite=SUITE)
    pytester.makefile(".toml", gates=GATES)
    pytester.runpytest("--rtgov-gate").assert_outcomes(passed=31)
    monkeypatch.setenv("SUITE_SLOW", "10")  # ten times the CPU work: +900%, not 30%
    result = pytester.runpytest("--rtgov-gate")
    assert result.ret == EXIT_GATE_BREACHED
    report = pytester.path / ".rtgov" / "report.html"
    html = report.read_text()
    assert "<link" not in html and "src=" not in html  # no external assets at all

    browser.get(report.as_uri())
    verdict = browser.find_element(By.ID, "verdict")
    assert verdict.is_displayed()
    assert "BREACHED" in verdict.text and "exit status 6" in verdict.text
    # The first table of the page is the breaches, and its row names the kernel.
    first_table = browser.find_elements(By.TAG_NAME, "table")[0]
    assert first_table.get_attribute("id") == "breach-table"
    row = first_table.find_element(By.CSS_SELECTOR, "tbody tr.breach")
    assert row.is_displayed() and "test_kernel" in row.text and "kernel time" in row.text
    assert "% (worse)" in row.text  # the change says which way it went
    chart = browser.find_element(By.CSS_SELECTOR, "#trends svg")
    assert chart.is_displayed() and "cpu_time" in chart.find_element(
        By.TAG_NAME, "title"
    ).get_attribute("textContent")
    # axes: CPU times with their unit on the y axis, runs numbered on the x axis
    y_ticks = [t.text for t in chart.find_elements(By.CSS_SELECTOR, "g.y-axis text.tick")]
    assert y_ticks and all(t.split()[-1] in ("ns", "us", "ms", "s") for t in y_ticks), y_ticks
    x_ticks = [t.text for t in chart.find_elements(By.CSS_SELECTOR, "g.x-axis text.tick")]
    assert x_ticks == ["1", "2"], x_ticks

    rows = browser.find_elements(By.CSS_SELECTOR, "#subject-table tbody tr")
    visible = [r for r in rows if r.is_displayed()]
    assert [r.text.split()[0] for r in visible] == ["test_suite.py::test_kernel"]  # changed only
    browser.find_element(By.ID, "filter").send_keys("accuracy[1")
    visible = [r.text for r in rows if r.is_displayed()]
    assert visible and all("accuracy[1" in text for text in visible)
    assert len(visible) == 11  # i = 1 and 10..19

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report-breach.png"
    browser.get(report.as_uri())
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def test_a_replay_page_shows_the_first_divergence_first(pytester, monkeypatch, browser):
    """``rtgov replay``'s page (docs/replay.md), in a browser: the verdict, then the
    first divergence with its element, then what is downstream of it."""
    from selenium.webdriver.common.by import By

    from tests.plugin._cli import cli
    from tests.plugin.test_replay import TEST

    monkeypatch.delenv("DEMO_FAULT", raising=False)
    pytester.makepyfile(test_demo=TEST)
    assert pytester.runpytest("--rtgov", "-p", "no:cacheprovider").ret == 0
    monkeypatch.setenv("DEMO_FAULT", "17:1")
    assert cli(pytester, "replay", "latest") == 6
    page = next((pytester.path / ".rtgov" / "replays").glob("*/replay.html"))
    html = page.read_text()
    assert "<link" not in html and "src=" not in html  # no external assets

    browser.get(page.as_uri())
    verdict = browser.find_element(By.ID, "replay-verdict")
    assert verdict.is_displayed() and "diverged" in verdict.text.lower()
    first = browser.find_element(By.ID, "first-divergence")
    downstream = browser.find_element(By.ID, "downstream")
    assert "test_demo.py::test_forward" in first.text
    assert first.location["y"] < downstream.location["y"]  # first, then downstream
    table = browser.find_element(By.ID, "first-divergence-table").text
    assert "hidden" in table and "17" in table and "[2, 1]" in table
