"""The foreign-suite bench's parsing, pairing and code selection (benches/foreign_suites.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHES = Path(__file__).resolve().parents[2] / "benches"
sys.path.insert(0, str(BENCHES))

import foreign_suites as bench  # noqa: E402


def test_summary_line_counts_and_seconds():
    output = "\n".join(
        [
            "........x.s",
            "rtgov: report /tmp/s/report.html",
            "4628 passed, 256 skipped, 4 xfailed, 2 xpassed, 2 warnings in 64.31s (0:01:04)",
        ]
    )
    counts, seconds = bench.parse_summary(output)
    assert counts["passed"] == 4628 and counts["skipped"] == 256
    assert counts["xfailed"] == 4 and counts["xpassed"] == 2 and counts["failed"] == 0
    assert seconds == pytest.approx(64.31)


def test_summary_line_with_failures_and_errors():
    counts, _ = bench.parse_summary("1 failed, 3 passed, 2 errors in 0.50s\n")
    assert (counts["failed"], counts["passed"], counts["error"]) == (1, 3, 2)


def test_no_summary_line_is_an_error():
    with pytest.raises(SystemExit, match="no pytest summary line"):
        bench.parse_summary("INTERNALERROR> boom\n")


def _run(config: str, round_: int, wall: float, passed: int = 10, mode: str = "off") -> dict:
    return {
        "suite": "s",
        "config": config,
        "round": round_,
        "wall_s": wall,
        "cpu_s": wall / 2,
        "maxrss_kib": 1000 + (100 if config != "plain" else 0),
        "load_before": [1.0, 1.0, 1.0],
        "load_after": [2.0, 1.0, 1.0],
        "outcomes": {"passed": passed},
        "memory_mode": None if config == "plain" else mode,
    }


def test_ratios_are_paired_by_round_and_target_judged_on_their_median():
    plain = [_run("plain", 0, 10.0), _run("plain", 1, 20.0), _run("plain", 2, 10.0)]
    default = [_run("default", 0, 11.0), _run("default", 1, 21.0), _run("default", 2, 30.0)]
    row = bench.summarise("s", "default", default, plain)
    # paired: 1.1, 1.05, 3.0 -> median 1.1; unpaired medians would give 21/10 = 2.1
    assert row["wall_ratio_median"] == pytest.approx(1.1)
    assert row["wall_ratio_range"] == [1.05, 3.0]
    assert row["memory_delta_kib_median"] == 100
    assert row["meets_target"] is True
    assert row["outcomes_same_as_plain"] is True


def test_different_outcomes_are_reported():
    plain = [_run("plain", 0, 10.0), _run("plain", 1, 10.0)]
    other = [_run("memory=off", 0, 10.0), _run("memory=off", 1, 10.0, passed=9)]
    row = bench.summarise("s", "memory=off", other, plain)
    assert row["outcomes_same_as_plain"] is False
    assert row["outcomes_differing"] == [{"round": 1, "outcomes": {"passed": 9}}]
    assert "meets_target" not in row


def test_ref_measures_the_committed_plugin_not_the_working_tree(tmp_path):
    env, info = bench.plugin_source("HEAD", tmp_path)
    assert info["ref"] == bench.git("rev-parse", "HEAD")
    assert info["imported_from"].startswith(str(tmp_path))
    assert env["PYTHONPATH"].split(":")[0] == str(tmp_path / "code")


def test_peak_rss_of_a_mode_that_resets_it_is_not_compared():
    plain = [_run("plain", 0, 10.0)]
    auto = bench.summarise("s", "default", [_run("default", 0, 10.0, mode="auto")], plain)
    assert auto["memory_delta_kib_median"] is None
    assert "clear_refs" in auto["memory_note"]
    off = [_run("memory=off", 0, 10.0)]
    assert bench.summarise("s", "memory=off", off, plain)["memory_delta_kib_median"] == 100
