"""Same-process A/B timing gates: the baseline code at a git ref runs beside the current.

The kernel is a fixed amount of CPU work, and the gates judging a slowdown are on
``cpu_time``: a loaded machine descheduled a round at random, which stretches its wall
time but not its CPU time, and made the +60% slowdown below come out "unconfirmed" now
and then. The one A/B gate on ``wall_time`` (the terminal's medians) judges an effect of
a thousand times, which no load hides.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from pytest_rtgov.core.constants import EXIT_GATE_BREACHED
from tests._git import git

KERNEL = """
import time

def work(n):
    total = 0
    for i in range(n):
        total += i * i
    return total
"""

# An uncommitted change that adds a few operations per iteration (~+60% CPU time): well
# above the gate's 10% but small enough to need the same-process A/B to see it reliably.
SLOWER = "total += i * i * 1 ** 2 + 0 + 0 * i"

TEST = """
import pytest
from mykernel import work

@pytest.mark.rtgov(rounds=5)
def test_work():
    work(20000)

@pytest.mark.rtgov(rounds=5)
def test_other():
    sum(range(20000))
"""

GATES = """
[defaults]
baseline = "baseline"
ab_pairs = 15

[[gates]]
name = "time"
metric = "cpu_time"
tests = ["test_ab.py::*"]
max_regression_pct = 10
ab = true
"""


@pytest.fixture
def repo(pytester):
    pytester.makepyfile(mykernel=KERNEL, test_ab=TEST)
    pytester.makefile(".toml", gates=GATES)
    pytester.syspathinsert()
    git(pytester.path, "init", "-q")
    git(pytester.path, "add", ".")
    git(pytester.path, "commit", "-q", "-m", "base")
    return pytester


def results(pytester):
    base = pytester.path / ".rtgov"
    run_id = (base / "latest").read_text().strip()
    record = json.loads((base / "runs" / f"{run_id}.json").read_text())
    return record, {g["subject"]: g for g in record["gate_results"]}


def test_unchanged_code_passes_and_keeps_both_variants(repo):
    result = repo.runpytest_subprocess("--rtgov-gate", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    record, gates = results(repo)
    # No false alarm: nothing breached. A noisy first block that re-measurement clears is
    # "unconfirmed" by design (it does not fail the session), and a loaded CI machine
    # produces one now and then, so it is allowed here; a breach is not.
    assert {g["status"] for g in gates.values()} <= {"pass", "unconfirmed"}
    work = next(t for t in record["tests"] if t["nodeid"] == "test_ab.py::test_work")
    variants = [s["variant"] for s in work["samples"] if not s["warmup"]]
    # pairs up to a look of the sequential rule: 15, 30, ... (ab_pairs), at most 100
    assert variants.count("current") == variants.count("baseline")
    assert variants.count("current") in range(15, 101, 15)


def test_an_uncommitted_slowdown_is_caught_and_only_it(repo):
    (repo.path / "mykernel.py").write_text(KERNEL.replace("total += i * i", SLOWER))
    result = repo.runpytest_subprocess("--rtgov-gate", "-p", "no:cacheprovider")
    assert result.ret == EXIT_GATE_BREACHED, result.stdout.str()
    result.stdout.fnmatch_lines(["BREACH time: test_ab.py::test_work cpu_time", "*A/B*pairs*"])
    _, gates = results(repo)
    assert gates["test_ab.py::test_work"]["status"] == "breach"
    assert gates["test_ab.py::test_work"]["relative"] > 0.1
    # a 2x slowdown stops the sequential rule early: at its first look on a quiet machine,
    # a look or two later when another process disturbs a pair (any look before the last)
    look = re.search(r"look (\d) of 7, (\d+) pairs", gates["test_ab.py::test_work"]["reason"])
    assert look is not None and int(look[1]) < 7 and int(look[2]) == 15 * int(look[1])
    assert gates["test_ab.py::test_work"]["clock"] == "cpu_time"
    assert gates["test_ab.py::test_other"]["status"] == "pass"


def test_confirm_re_measures_a_breach(repo):
    repo.makefile(".toml", gates=GATES.replace("ab_pairs = 15", "ab_pairs = 15\nconfirm = 1"))
    (repo.path / "mykernel.py").write_text(KERNEL.replace("total += i * i", SLOWER))
    result = repo.runpytest_subprocess("--rtgov-gate", "-p", "no:cacheprovider")
    assert result.ret == EXIT_GATE_BREACHED, result.stdout.str()
    record, gates = results(repo)
    assert "confirmed by 1 re-run(s)" in gates["test_ab.py::test_work"]["reason"]
    work = next(t for t in record["tests"] if t["nodeid"] == "test_ab.py::test_work")
    assert {s["block"] for s in work["samples"]} == {0, 1}


def test_ab_under_xdist(repo):
    pytest.importorskip("xdist")
    (repo.path / "mykernel.py").write_text(KERNEL.replace("total += i * i", SLOWER))
    result = repo.runpytest_subprocess("--rtgov-gate", "-n", "2", "-p", "no:cacheprovider")
    assert result.ret == EXIT_GATE_BREACHED, result.stdout.str()
    _, gates = results(repo)
    assert gates["test_ab.py::test_work"]["status"] == "breach"


def test_a_test_new_since_the_ref_is_reported_new(repo):
    (repo.path / "test_new_ab.py").write_text(TEST.replace("test_work", "test_fresh"))
    repo.makefile(".toml", gates=GATES.replace('["test_ab.py::*"]', '["test_new_ab.py::*"]'))
    result = repo.runpytest_subprocess("--rtgov-gate", "-p", "no:cacheprovider", "test_new_ab.py")
    assert result.ret == 0, result.stdout.str()
    _, gates = results(repo)
    assert gates["test_new_ab.py::test_fresh"]["status"] == "new"
    assert "no baseline code" in gates["test_new_ab.py::test_fresh"]["reason"]


def test_unknown_ref_is_a_usage_error(repo):
    result = repo.runpytest_subprocess(
        "--rtgov-gate", "--rtgov-ab-ref=nope", "-p", "no:cacheprovider"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*cannot resolve git ref 'nope'*"])


def test_a_refresh_accepts_the_slower_code_for_accepted_ref_gates(repo):
    repo.makefile(
        ".toml",
        gates=GATES.replace('baseline = "baseline"', 'baseline = "baseline"\nab_ref = "accepted"'),
    )
    git(repo.path, "commit", "-q", "-am", "accepted ref")
    slower = KERNEL.replace("total += i * i", SLOWER)
    (repo.path / "mykernel.py").write_text(slower)
    assert (
        repo.runpytest_subprocess("--rtgov-gate", "-p", "no:cacheprovider").ret
        == EXIT_GATE_BREACHED
    )
    refreshed = repo.runpytest_subprocess(
        "--rtgov-gate",
        "--rtgov-update-baseline",
        "--rtgov-reason=slower but exact",
        "-p",
        "no:cacheprovider",
    )
    assert refreshed.ret == 0, refreshed.stdout.str()
    refreshed.stdout.fnmatch_lines(["*A/B baseline code is now refs/rtgov/accepted = *"])
    # the working tree is untouched and still uncommitted; the next run compares
    # against the accepted (slower) code and passes
    assert (repo.path / "mykernel.py").read_text() == slower
    again = repo.runpytest_subprocess("--rtgov-gate", "-p", "no:cacheprovider")
    assert again.ret == 0, again.stdout.str()


# A kernel about twenty times slower than KERNEL: a regression no noise can hide.
MUCH_SLOWER = KERNEL.replace("total += i * i", "total += sum(i * i for _ in range(20))")


def export_dir(repo):
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo.path, capture_output=True, text=True, check=True
    ).stdout.strip()
    return repo.path / ".rtgov" / "ab" / sha


@pytest.mark.parametrize(
    ("tamper", "named"),
    [
        # the exported kernel edited to be as slow as today's
        (lambda export: (export / "mykernel.py").write_text(MUCH_SLOWER), "mykernel.py"),
        # a file the commit does not have, that shadows its kernel (a package wins)
        (
            lambda export: (
                (export / "mykernel").mkdir(),
                (export / "mykernel" / "__init__.py").write_text(MUCH_SLOWER),
            ),
            "mykernel/__init__.py",
        ),
    ],
    ids=["edited", "added"],
)
def test_a_tampered_export_is_exported_again_and_the_regression_still_breaches(
    repo, tamper, named, monkeypatch
):
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)  # as on a developer's machine
    first = repo.runpytest_subprocess("--rtgov-gate", "-p", "no:cacheprovider")
    assert first.ret == 0, first.stdout.str()
    assert "A/B baseline code" not in first.stderr.str()
    export = export_dir(repo)
    assert not list(export.rglob("__pycache__"))  # importing the baseline wrote nothing there
    committed = (export / "mykernel.py").read_text()
    (repo.path / "mykernel.py").write_text(MUCH_SLOWER)  # a ~20x regression...
    tamper(export)  # ...that an edited baseline export would hide
    result = repo.runpytest_subprocess("--rtgov-gate", "-p", "no:cacheprovider")
    assert result.ret == EXIT_GATE_BREACHED, result.stdout.str()
    result.stderr.fnmatch_lines(
        [f"*warning: the A/B baseline code in {export} does not match commit*{named}*"]
    )
    _, gates = results(repo)
    assert gates["test_ab.py::test_work"]["status"] == "breach"
    assert (export / "mykernel.py").read_text() == committed
    assert not (export / "mykernel").exists()


def test_a_tampered_export_is_checked_by_the_controller_under_xdist(repo):
    pytest.importorskip("xdist")
    assert repo.runpytest_subprocess("--rtgov-gate", "-p", "no:cacheprovider").ret == 0
    (repo.path / "mykernel.py").write_text(MUCH_SLOWER)
    (export_dir(repo) / "mykernel.py").write_text(MUCH_SLOWER)
    result = repo.runpytest_subprocess("--rtgov-gate", "-n", "2", "-p", "no:cacheprovider")
    assert result.ret == EXIT_GATE_BREACHED, result.stdout.str()
    # one check, on the controller, before the workers start
    assert result.stderr.str().count("does not match commit") == 1
    _, gates = results(repo)
    assert gates["test_ab.py::test_work"]["status"] == "breach"


def _table_row(out: str, title: str, needle: str) -> list[str]:
    """The cells of the first row containing ``needle`` in the table titled ``title``."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(title))
    for line in lines[start + 1 :]:
        if needle in line:
            return [cell.strip() for cell in line.split("│")[1:-1]]
    raise AssertionError(f"no row with {needle!r} under {title!r} in:\n{out}")


def test_terminal_medians_of_an_ab_test_are_the_reports(repo):
    # The committed (baseline) code sleeps 20 ms, today's does not: a median that mixed
    # both variants would land between them, far from today's.
    (repo.path / "test_ab.py").write_text(TEST.replace("work(20000)", "work(200)"))
    (repo.path / "mykernel.py").write_text(
        KERNEL.replace("    return total", "    time.sleep(0.02)\n    return total")
    )
    git(repo.path, "commit", "-q", "-am", "slow baseline")
    (repo.path / "mykernel.py").write_text(KERNEL)
    gates = GATES.replace("ab_pairs = 15", "ab_pairs = 6").replace("cpu_time", "wall_time")
    repo.makefile(".toml", gates=gates)
    result = repo.runpytest_subprocess("--rtgov-gate", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    record, gates = results(repo)
    assert gates["test_ab.py::test_work"]["relative"] < -0.5  # today's code is faster

    from pytest_rtgov.core.delta_index import observations_of
    from pytest_rtgov.core.format import format_ns
    from pytest_rtgov.core.records import RunRecord

    run = RunRecord.from_dict(record)
    report = {(o.subject, o.metric): o.value for o in observations_of(run)}
    wall = report[("test_ab.py::test_work", "wall_time")]
    cpu = report[("test_ab.py::test_work", "cpu_time")]
    row = _table_row(result.stdout.str(), "slowest tests", "test_work")
    # Equal up to the last printed digit: the terminal rounds the median in ns, the
    # report's observation holds it in seconds (x.5 ns can round either way there).
    for shown, value in zip(row[2:4], (wall, cpu), strict=True):
        assert shown in {format_ns(value * 1e9 + d) for d in (-1, 0, 1)}, (row, value)
    assert wall < 0.01  # the baseline's 20 ms sleeps are not in it
    html = (repo.path / ".rtgov" / "report.html").read_text()
    assert f"{wall * 1e3:.4g}" in html  # the report's wall time column, in ms


# A CPU-bound kernel whose slower version does 1.5 times the iterations (not a sleep),
# gated on wall_time: the gate judges it on CPU time, which a loaded machine does not
# stretch, and says so. Rounds are short (memory capture off: a tenth of a millisecond),
# so that even on a loaded machine some of them ran without losing the core, which is
# what shows the code CPU-bound (docs/gates.md, "The clock").
LOOP = """
def work():
    total = 0
    for i in range(ITERATIONS):
        total += i * i
    return total
"""
CPU_TEST = """
from loop import work

def test_loop():
    work()
"""
WALL_GATES = """
[defaults]
baseline = "baseline"
ab_pairs = 10
ab_max_pairs = 60

[[gates]]
name = "loop time"
metric = "wall_time"
tests = ["test_loop.py::*"]
max_regression_pct = 10
ab = true
"""


@pytest.fixture
def loop_repo(pytester):
    pytester.makepyfile(loop=LOOP.replace("ITERATIONS", "3000"), test_loop=CPU_TEST)
    pytester.makefile(".toml", gates=WALL_GATES)
    pytester.syspathinsert()
    git(pytester.path, "init", "-q")
    git(pytester.path, "add", ".")
    git(pytester.path, "commit", "-q", "-m", "base")
    return pytester


def loop_pairs(record):
    (test,) = record["tests"]
    return sum(1 for s in test["samples"] if not s["warmup"] and s["variant"] == "baseline")


@pytest.mark.parametrize("iterations", [3000, 4500], ids=["unchanged", "1.5x"])
def test_a_cpu_bound_wall_time_gate_judges_on_cpu_time_and_stops_early(loop_repo, iterations):
    (loop_repo.path / "loop.py").write_text(LOOP.replace("ITERATIONS", str(iterations)))
    result = loop_repo.runpytest_subprocess(
        "--rtgov-gate", "--rtgov-memory", "off", "-p", "no:cacheprovider"
    )
    record, gates = results(loop_repo)
    gate = gates["test_loop.py::test_loop"]
    assert gate["clock"] == "cpu_time", gate["reason"]
    assert "on cpu_time (CPU-bound, single-threaded" in gate["reason"]
    if iterations == 3000:
        assert result.ret == 0, result.stdout.str()
        assert gate["status"] == "pass"
    else:
        assert result.ret == EXIT_GATE_BREACHED, result.stdout.str()
        assert gate["status"] == "breach" and 0.3 < gate["relative"] < 0.7
        # a clear case: decided before the cap of 60 pairs
        assert loop_pairs(record) < 60 and f"{loop_pairs(record)} pairs" in gate["reason"]


JITTER_TEST = """
import random
import time

def test_jitter():
    time.sleep(random.random() * 0.002)
"""


def test_the_time_cap_stops_an_undecided_test_after_its_first_look(pytester):
    pytester.makepyfile(test_jitter=JITTER_TEST)
    pytester.makefile(
        ".toml",
        gates=WALL_GATES.replace(
            "ab_pairs = 10", "ab_pairs = 6\nab_max_seconds = 0.001\nmin_samples = 2"
        )
        .replace("test_loop.py", "test_jitter.py"),
    )
    git(pytester.path, "init", "-q")
    git(pytester.path, "add", ".")
    git(pytester.path, "commit", "-q", "-m", "base")
    result = pytester.runpytest_subprocess("--rtgov-gate", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    record, gates = results(pytester)
    gate = gates["test_jitter.py::test_jitter"]
    assert gate["clock"] == "wall_time"  # it sleeps: wall time judges
    assert loop_pairs(record) == 6  # the first look is measured in full, then the cap
    assert "look 1 of 10, 6 pairs" in gate["reason"], gate["reason"]
    if "clearly within" not in gate["reason"]:
        assert "measuring stopped before the cap: ab_max_seconds" in gate["reason"]


ALLOCATING = """
import numpy as np
import pytest

@pytest.mark.rtgov(rounds=3)
def test_alloc():
    np.ones(1 << 17).sum()  # 1 MiB
"""

MEMORY_AB_GATES = """
[defaults]
baseline = "baseline"
ab_pairs = 5

[[gates]]
name = "time"
metric = "cpu_time"
tests = ["test_alloc.py::*"]
max_regression_pct = 500
ab = true

[[gates]]
name = "memory"
metric = "peak_memory"
tests = ["test_alloc.py::*"]
max = "16 MiB"
"""


@pytest.mark.parametrize("mode", ["tracemalloc", "auto"])
def test_ab_pairs_are_timed_untraced_but_the_first_measures_peak_memory(pytester, mode):
    """Tracing slows every allocation, so it would inflate an allocating edit's effect:
    only the first measured pair runs under the memory probe, and the memory gate reads
    the test's peak from it."""
    pytester.makepyfile(test_alloc=ALLOCATING)
    pytester.makefile(".toml", gates=MEMORY_AB_GATES)
    git(pytester.path, "init", "-q")
    git(pytester.path, "add", ".")
    git(pytester.path, "commit", "-q", "-m", "base")
    args = ("--rtgov-gate", "-p", "no:cacheprovider", "--rtgov-memory", mode)
    assert pytester.runpytest_subprocess(*args).ret == 0
    record, _ = results(pytester)
    (test,) = record["tests"]
    measured = [s for s in test["samples"] if not s["warmup"]]
    with_peak = [s for s in measured if s.get("peak_memory_bytes") is not None]
    assert sorted(s["variant"] for s in with_peak) == ["baseline", "current"]
    assert all(s["memory_probe"] == "tracemalloc" for s in with_peak)
    assert all(s["peak_memory_bytes"] >= 1 << 20 for s in with_peak)
    assert {s.get("memory_probe") for s in measured if s not in with_peak} == {None}
    assert len(measured) > len(with_peak) >= 2
    memory = [g for g in record["gate_results"] if g["metric"] == "peak_memory"]
    assert [g["status"] for g in memory] == ["pass"] and memory[0]["current"] >= 1 << 20
