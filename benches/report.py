"""Size and opening time of the HTML gate report for 5,000 tests.

Builds a synthetic gated run of 5,000 tests (each with 3 rounds and a recorded metric;
10 gates, 2 breached) and a history of 30 runs for the trend charts; renders the
report; then opens it in headless Chromium (Debian's chromium and chromedriver via
selenium, networking off) and reads the Navigation Timing of each load.

Usage: python benches/report.py [--tests 5000] [--out benches/results/report.json]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pytest_rtgov.core.delta_index import DeltaIndex, observations_of, run_info
from pytest_rtgov.core.records import Metric, RunRecord, Sample, TestEntry
from pytest_rtgov.report.html import render_report, report_context

SEED = 20261122


def synthetic_run(tests: int, run: int, rng: random.Random) -> RunRecord:
    entries = []
    for i in range(tests):
        base = 1e-3 * (1 + (i % 50))
        slow = 1.5 if (run == 29 and i < 2) else 1.0  # the breach of the last run
        samples = tuple(
            Sample(
                wall_ns=int(base * slow * rng.uniform(0.95, 1.05) * 1e9),
                cpu_ns=int(base * slow * 1e9),
                peak_memory_bytes=4096 * (1 + i % 100),
            )
            for _ in range(3)
        )
        entries.append(
            TestEntry(
                nodeid=f"tests/test_mod{i // 100:02d}.py::test_case_{i:05d}",
                outcome="passed",
                worker="gw0",
                rounds=3,
                warmup=0,
                samples=samples,
                metrics=(Metric("val_accuracy", round(0.9 + rng.random() * 0.05, 4), "", True),),
            )
        )
    gates = []
    for g in range(10):
        node = entries[g].nodeid
        current = statistics.median(s.wall_ns for s in entries[g].samples) / 1e9
        baseline = 1e-3 * (1 + g % 50)
        breach = current > baseline * 1.3
        gates.append(
            {
                "gate": "kernel time",
                "subject": node,
                "metric": "wall_time",
                "status": "breach" if breach else "pass",
                "rule": "regression <= 30%",
                "current": current,
                "baseline": baseline,
                "threshold": baseline * 1.3,
                "delta": current - baseline,
                "relative": current / baseline - 1,
                "p_value": 0.001 if breach else 0.6,
                "reason": "",
            }
        )
    breaches = sum(g["status"] == "breach" for g in gates)
    return RunRecord(
        run_id=f"20261122T{run:06d}Z-bench",
        started_at="2026-11-22T00:00:00Z",
        ended_at="2026-11-22T00:05:00Z",
        mode="gate",
        pytest_args=("--rtgov-gate",),
        memory_mode="tracemalloc",
        backend="numpy",
        workers=("gw0",),
        environment={"python": "3.11", "cpu_model": "bench"},
        tests=tuple(entries),
        fixtures=(),
        exit_status=6 if breaches else 0,
        gate_results=tuple(gates),
        verdict={
            "status": "breached" if breaches else "passed",
            "exit_status": 6 if breaches else 0,
            "breaches": breaches,
            "unconfirmed": 0,
            "gates_evaluated": 10,
            "notes": [],
        },
    )


def open_times(path: Path, repeats: int) -> list[dict[str, float]] | str:
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        return "chromium/chromedriver not installed"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--proxy-server=127.0.0.1:9",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    rows = []
    try:
        for _ in range(repeats):
            driver.get("about:blank")
            started = time.perf_counter()
            driver.get(path.as_uri())
            wall = time.perf_counter() - started
            timing = driver.execute_script(
                "const n = performance.getEntriesByType('navigation')[0];"
                "const p = performance.getEntriesByName('first-contentful-paint')[0];"
                "return [n.domContentLoadedEventEnd, n.loadEventEnd, p ? p.startTime : null];"
            )
            rows.append(
                {
                    "driver_get_s": wall,
                    "dom_content_loaded_ms": timing[0],
                    "load_event_end_ms": timing[1],
                    "first_contentful_paint_ms": timing[2],
                }
            )
    finally:
        driver.quit()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=5000)
    parser.add_argument("--history", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benches/results/report.json"))
    args = parser.parse_args()
    rng = random.Random(SEED)
    index = DeltaIndex()
    runs = [synthetic_run(args.tests, r, rng) for r in range(args.history)]
    for r in runs:
        index.add_run(run_info(r), observations_of(r))
    record = runs[-1]
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        html = render_report(report_context(record, index=index, ledger={"checkpoint": "x"}))
        timings.append(time.perf_counter() - started)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory(prefix="rtgov-report-") as tmp:
        path = Path(tmp) / "report.html"
        path.write_text(html, encoding="utf-8")
        opened = open_times(path, args.repeats)
    size = len(html.encode("utf-8"))
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "seed": SEED,
        "tests": args.tests,
        "history_runs": args.history,
        "size_bytes": size,
        "render_s": {
            "median": statistics.median(timings),
            "min": min(timings),
            "max": max(timings),
        },
        "render_peak_rss_delta_kib": rss1 - rss0,
        "open": opened,
        "targets": {"size_bytes_max": 1_500_000, "open_s_max": 2.0},
    }
    if isinstance(opened, list):
        loads = [row["load_event_end_ms"] for row in opened]
        result["open_load_event_end_ms"] = {
            "median": statistics.median(loads),
            "min": min(loads),
            "max": max(loads),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "open"}, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
