"""Overhead of pytest-rtgov's measurement, side by side with pytest-memray and pytest-benchmark.

Generates two suites in a temporary directory: 500 trivial tests and 100 small numpy
kernel tests. Runs each configuration in a fresh pytest process, alternating
configurations round by round (A B C ... A B C ...), and reports medians:

- ``loop_s``: the duration of pytest's run-test loop, timed by a tiny conftest plugin
  (interpreter start-up and collection excluded: they are the same for every config
  and dominate whole-process noise);
- ``process_s``: the whole process, wall clock;
- ``maxrss_kib``: the process's peak resident set;
- ``added_us_per_test``: the median over rounds of (loop_s - loop_s of "plain" in the
  same round) / tests, with the quartiles of those paired differences beside it;
- ``added_us_per_test_min``: (min loop_s - min loop_s of "plain") / tests, the
  least-disturbed estimate (as ``timeit`` recommends) on a machine with noisy neighbours;
- ``memory_delta_kib``: maxrss_kib - maxrss_kib of "plain".

Usage: python benches/overhead.py [--repeats N] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFTEST = """
import json, os, resource, time
import pytest

@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session):
    start = time.perf_counter()
    try:
        return (yield)
    finally:
        loop = time.perf_counter() - start
        out = os.environ.get("BENCH_OUT")
        if out and not hasattr(session.config, "workerinput"):
            with open(out, "w") as fh:
                json.dump({"loop_s": loop,
                           "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}, fh)
"""

TRIVIAL = """
import pytest

@pytest.mark.parametrize("i", range(500))
def test_trivial(i):
    assert i >= 0
"""

KERNELS_BODY = """
import numpy as np
import pytest

RNG = np.random.Generator(np.random.PCG64(0))
A = RNG.standard_normal((64, 64))
V = RNG.standard_normal(4096)
KERNELS = {
    "matmul": lambda: A @ A,
    "softmax": lambda: np.exp(A - A.max(axis=1, keepdims=True)).sum(axis=1),
    "cumsum": lambda: np.cumsum(V),
    "sort": lambda: np.sort(V),
    "norm": lambda: (A - A.mean(axis=1, keepdims=True)) / (A.std(axis=1, keepdims=True) + 1e-5),
}
CASES = [(name, i) for i in range(20) for name in KERNELS]
"""

KERNELS_PLAIN = (
    KERNELS_BODY
    + """
@pytest.mark.parametrize(("name", "i"), CASES)
def test_kernel(name, i):
    KERNELS[name]()
"""
)

KERNELS_BENCHMARK = (
    KERNELS_BODY
    + """
@pytest.mark.parametrize(("name", "i"), CASES)
def test_kernel(name, i, benchmark):
    benchmark(KERNELS[name])
"""
)

# name -> (pytest arguments, which kernel file variant, suites it applies to)
CONFIGS: dict[str, tuple[list[str], str, tuple[str, ...]]] = {
    "plain": ([], "plain", ("trivial", "kernels")),
    "rtgov memory=off": (["--rtgov", "--rtgov-memory=off"], "plain", ("trivial", "kernels")),
    "rtgov memory=tracemalloc (default)": (["--rtgov"], "plain", ("trivial", "kernels")),
    "rtgov memory=rss": (["--rtgov", "--rtgov-memory=rss"], "plain", ("trivial", "kernels")),
    "rtgov memory=memray": (["--rtgov", "--rtgov-memory=memray"], "plain", ("trivial", "kernels")),
    "pytest-memray --memray": (["--memray"], "plain", ("trivial", "kernels")),
    "pytest-benchmark (defaults)": ([], "benchmark", ("kernels",)),
    "pytest-benchmark --benchmark-disable": (
        ["--benchmark-disable"],
        "benchmark",
        ("kernels",),
    ),
}
N_TESTS = {"trivial": 500, "kernels": 100}
SLOW = {"rtgov memory=memray", "pytest-memray --memray", "pytest-benchmark (defaults)"}


def _write_suites(root: Path) -> dict[tuple[str, str], Path]:
    dirs = {}
    for suite, variant, body in (
        ("trivial", "plain", TRIVIAL),
        ("kernels", "plain", KERNELS_PLAIN),
        ("kernels", "benchmark", KERNELS_BENCHMARK),
    ):
        d = root / f"{suite}-{variant}"
        d.mkdir()
        (d / "conftest.py").write_text(CONFTEST)
        (d / f"test_{suite}.py").write_text(body)
        dirs[(suite, variant)] = d
    return dirs


def _run_once(directory: Path, args: list[str], state: Path) -> dict[str, float]:
    out = directory / "bench-out.json"
    out.unlink(missing_ok=True)
    env = dict(os.environ, BENCH_OUT=str(out), OPENBLAS_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--rtgov-dir={state}",
        *args,
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=directory, env=env, capture_output=True, text=True)
    process_s = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {directory}:\n{proc.stdout}\n{proc.stderr}")
    data = json.loads(out.read_text())
    data["process_s"] = process_s
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="rounds for fast configs")
    parser.add_argument("--slow-repeats", type=int, default=3, help="rounds for slow configs")
    parser.add_argument("--out", type=Path, default=Path("benches/results/overhead.json"))
    parser.add_argument("--seed", type=int, default=20261122, help="seed of the run order")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="rtgov-bench-") as tmp:
        root = Path(tmp)
        dirs = _write_suites(root)
        jobs = [(suite, name) for name, (_, _, suites) in CONFIGS.items() for suite in suites]
        for round_index in range(max(args.repeats, args.slow_repeats)):
            order = list(jobs)
            rng.shuffle(order)
            for suite, name in order:
                limit = args.slow_repeats if name in SLOW else args.repeats
                if round_index >= limit:
                    continue
                pytest_args, variant, _ = CONFIGS[name]
                result = _run_once(dirs[(suite, variant)], pytest_args, root / "state")
                runs.setdefault((suite, name), []).append(result)
                print(
                    f"round {round_index + 1}: {suite:8s} {name:38s} loop {result['loop_s']:.3f}s",
                    file=sys.stderr,
                )
    rows = []
    for suite in ("trivial", "kernels"):
        plain = runs[(suite, "plain")]
        plain_rss = statistics.median(r["maxrss_kib"] for r in plain)
        n = N_TESTS[suite]
        for name in CONFIGS:
            if (suite, name) not in runs:
                continue
            rs = runs[(suite, name)]
            paired = sorted(
                (r["loop_s"] - p["loop_s"]) / n * 1e6 for r, p in zip(rs, plain, strict=False)
            )
            quartiles = statistics.quantiles(paired, n=4) if len(paired) > 1 else paired * 3
            rss = statistics.median(r["maxrss_kib"] for r in rs)
            rows.append(
                {
                    "suite": suite,
                    "tests": n,
                    "config": name,
                    "args": CONFIGS[name][0],
                    "runs": len(rs),
                    "loop_s": round(statistics.median(r["loop_s"] for r in rs), 4),
                    "process_s": round(statistics.median(r["process_s"] for r in rs), 4),
                    "maxrss_kib": int(rss),
                    "added_us_per_test": round(statistics.median(paired), 1),
                    "added_us_per_test_q1_q3": [round(quartiles[0], 1), round(quartiles[2], 1)],
                    "added_us_per_test_min": round(
                        (min(r["loop_s"] for r in rs) - min(p["loop_s"] for p in plain)) / n * 1e6,
                        1,
                    ),
                    "memory_delta_kib": int(rss - plain_rss),
                    "loop_s_all": [round(r["loop_s"], 4) for r in rs],
                }
            )
    import numpy

    result = {
        "benchmark": "overhead",
        "command": "python benches/overhead.py " + " ".join(sys.argv[1:]),
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": numpy.__version__,
            "platform": platform.platform(),
            "OPENBLAS_NUM_THREADS": "1",
        },
        "seed": args.seed,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(
        f"{'suite':8s} {'config':38s} {'loop s':>8s} {'us/test':>9s} {'q1..q3':>15s} "
        f"{'min-based':>9s} {'mem KiB':>9s}"
    )
    for row in rows:
        q1, q3 = row["added_us_per_test_q1_q3"]
        print(
            f"{row['suite']:8s} {row['config']:38s} {row['loop_s']:8.3f} "
            f"{row['added_us_per_test']:9.1f} {f'{q1:.1f}..{q3:.1f}':>15s} "
            f"{row['added_us_per_test_min']:9.1f} {row['memory_delta_kib']:9d}"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
