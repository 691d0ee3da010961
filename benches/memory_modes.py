"""Per-test cost of the memory modes: the default ``auto`` against ``off`` and ``tracemalloc``.

Generates two suites in a temporary directory and runs each in a fresh pytest process
per configuration (plain pytest; ``--rtgov`` with ``--rtgov-memory`` auto, off, rss and
tracemalloc), alternating configurations round by round in a shuffled order:

- ``trivial``: 500 empty tests (the cost per region);
- ``numeric``: 100 tests, each a loop of small ``numpy.linalg`` calls (solve, inv, det,
  qr, eigvalsh, svd on 8x8 to 32x32 matrices) as numpy's own linalg tests make them:
  thousands of small allocations per test, where tracemalloc's hook on every
  allocation costs most.

Measured, per configuration: pytest's run-test loop (a conftest wrapper times it,
start-up, collection and the session's end excluded) in wall time and in CPU time
(``time.process_time``: what load on the machine inflates least), and the whole
process's CPU time (user + system, ``RUSAGE_CHILDREN``: the session's end included).
Reported: the median over rounds of the paired difference to plain pytest in the same
round, per test, and the ratio of the medians to plain's. ``os.getloadavg()`` before
and after.

Usage: python benches/memory_modes.py [--repeats N] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import loop_timer

CONFTEST = loop_timer("memory_modes.py", "a conftest", "BENCH_OUT")

TRIVIAL = """
import pytest

@pytest.mark.parametrize("i", range(500))
def test_trivial(i):
    assert i >= 0
"""

NUMERIC = """
import numpy as np
import pytest

@pytest.mark.parametrize("i", range(100))
def test_linalg(i):
    rng = np.random.default_rng(i)
    for n in (8, 16, 32) * 20:
        a = rng.standard_normal((n, n)) + n * np.eye(n)
        b = rng.standard_normal(n)
        x = np.linalg.solve(a, b)
        assert np.allclose(a @ x, b)
        np.linalg.inv(a)
        np.linalg.det(a)
        np.linalg.qr(a)
        np.linalg.eigvalsh(a + a.T)
        np.linalg.svd(a, compute_uv=False)
"""

SUITES = {"trivial": (TRIVIAL, 500), "numeric": (NUMERIC, 100)}
CONFIGS: dict[str, list[str]] = {
    "plain": [],
    "rtgov memory=off": ["--rtgov", "--rtgov-memory=off"],
    "rtgov memory=auto (default)": ["--rtgov"],
    "rtgov memory=rss": ["--rtgov", "--rtgov-memory=rss"],
    "rtgov memory=tracemalloc": ["--rtgov", "--rtgov-memory=tracemalloc"],
}


def _run_once(directory: Path, args: list[str], state: Path) -> dict[str, float]:
    out = directory / "bench-out.json"
    out.unlink(missing_ok=True)
    env = dict(os.environ, BENCH_OUT=str(out), OPENBLAS_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"]
    cmd += [f"--rtgov-dir={state}", "--rtgov-report=off", *args] if args else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=directory, env=env, capture_output=True, text=True)
    process_s = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {directory}:\n{proc.stdout}{proc.stderr}")
    data = json.loads(out.read_text())
    data["process_s"] = process_s
    data["cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("benches/results/memory_modes.json"))
    parser.add_argument("--seed", type=int, default=20261130, help="seed of the run order")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    load_before = os.getloadavg()
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="rtgov-memory-modes-") as tmp:
        root = Path(tmp)
        dirs = {}
        for suite, (body, _) in SUITES.items():
            d = dirs[suite] = root / suite
            d.mkdir()
            (d / "conftest.py").write_text(CONFTEST)
            (d / f"test_{suite}.py").write_text(body)
        jobs = [(suite, name) for suite in SUITES for name in CONFIGS]
        for round_index in range(args.repeats):
            order = list(jobs)
            rng.shuffle(order)
            for suite, name in order:
                result = _run_once(dirs[suite], CONFIGS[name], root / "state")
                runs.setdefault((suite, name), []).append(result)
                print(
                    f"round {round_index + 1}: {suite:8s} {name:30s} loop {result['loop_s']:.3f}s"
                    f" cpu {result['cpu_s']:.3f}s",
                    file=sys.stderr,
                )
    rows = []
    for suite, (_, n) in SUITES.items():
        plain = runs[(suite, "plain")]
        for name in CONFIGS:
            rs = runs[(suite, name)]
            pairs = list(zip(rs, plain, strict=True))
            rows.append(
                {
                    "suite": suite,
                    "tests": n,
                    "config": name,
                    "args": CONFIGS[name],
                    "loop_s_median": statistics.median(r["loop_s"] for r in rs),
                    "cpu_s_median": statistics.median(r["cpu_s"] for r in rs),
                    "added_us_per_test_loop": statistics.median(
                        (r["loop_s"] - p["loop_s"]) / n * 1e6 for r, p in pairs
                    ),
                    "loop_cpu_s_median": statistics.median(r["loop_cpu_s"] for r in rs),
                    "added_us_per_test_loop_cpu": statistics.median(
                        (r["loop_cpu_s"] - p["loop_cpu_s"]) / n * 1e6 for r, p in pairs
                    ),
                    "added_us_per_test_process_cpu": statistics.median(
                        (r["cpu_s"] - p["cpu_s"]) / n * 1e6 for r, p in pairs
                    ),
                    "loop_cpu_ratio_to_plain": statistics.median(r["loop_cpu_s"] for r in rs)
                    / statistics.median(p["loop_cpu_s"] for p in plain),
                    "process_cpu_ratio_to_plain": statistics.median(r["cpu_s"] for r in rs)
                    / statistics.median(p["cpu_s"] for p in plain),
                    "loop_ratio_to_plain": statistics.median(
                        r["loop_s"] / p["loop_s"] for r, p in pairs
                    ),
                }
            )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    result = {
        "benchmark": "memory_modes",
        "commit": commit,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "repeats": args.repeats,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{'suite':8s} {'config':30s} {'loop cpu us/test':>16s} {'x plain':>8s} "
        f"{'process cpu x plain':>19s}"
    )
    for row in rows:
        print(
            f"{row['suite']:8s} {row['config']:30s} {row['added_us_per_test_loop_cpu']:16.1f} "
            f"{row['loop_cpu_ratio_to_plain']:8.2f} {row['process_cpu_ratio_to_plain']:19.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
