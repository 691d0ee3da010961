"""Gate quality on this machine: false alarms on unchanged code, detection of slowdowns.

Twenty numpy kernels, each repeating a small operation a fixed number of times
inside a test. Two kernels can be slowed by editing the code (the benchmark's only
"switch": the repeat count grows by 10% and by 25%; the change is left uncommitted so
that the A/B gate's baseline, HEAD, keeps the original).

For every session (fresh pytest process):
- pytest-rtgov: ``pytest --rtgov-gate`` with one A/B gate (wall_time, 5%, confidence
  0.99, Bonferroni over the 20 kernels);
- pytest-benchmark in the same round: ``--benchmark-json`` against a baseline saved
  once from the unchanged code; ``--benchmark-compare-fail=mean:5%`` and ``min:5%``
  are evaluated on that JSON exactly as the flag does ((current - base) / base > 5%).

Scenarios: ``unchanged`` and ``slowed`` (the +10% and +25% kernels), N sessions each,
alternated. Reports sessions failing, and per kernel how often it breached.

Usage: python benches/gate_quality.py [--sessions 20] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_KERNELS = 20
SLOW_10, SLOW_25 = "k07", "k13"

KERNELS = """
import numpy as np

RNG = np.random.Generator(np.random.PCG64(0))
A = RNG.standard_normal((96, 96))
V = RNG.standard_normal(20000)
REPEATS = {repeats}

def _op(i):
    kind = i % 5
    if kind == 0:
        return lambda: A @ A
    if kind == 1:
        return lambda: np.exp(A - A.max(axis=1, keepdims=True)).sum(axis=1)
    if kind == 2:
        return lambda: np.sort(V)
    if kind == 3:
        return lambda: np.cumsum(V)
    return lambda: (A - A.mean(axis=0)) / (A.std(axis=0) + 1e-5)

def kernel(name):
    op = _op(int(name[1:]))
    for _ in range(REPEATS[name]):
        op()
"""

TESTS = """
import pytest
from bench_kernels import kernel

NAMES = [f"k{i:02d}" for i in range(20)]

@pytest.mark.parametrize("name", NAMES)
def test_kernel(name):
    kernel(name)
"""

BENCH_TESTS = """
import pytest
from bench_kernels import kernel

NAMES = [f"k{i:02d}" for i in range(20)]

@pytest.mark.parametrize("name", NAMES)
def test_kernel(name, benchmark):
    benchmark(kernel, name)
"""

GATES = """
[defaults]
baseline = "baseline"
confidence = 0.99
ab_pairs = 20

[[gates]]
name = "kernel time"
metric = "wall_time"
tests = ["test_rtgov.py::*"]
max_regression_pct = 5
ab = true
"""


def repeats(slowed: bool) -> dict[str, int]:
    base = {f"k{i:02d}": 20 for i in range(N_KERNELS)}
    if slowed:
        base[SLOW_10], base[SLOW_25] = 22, 25  # +10% and +25% work
    return base


def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def run(cwd: Path, args: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=dict(os.environ, OPENBLAS_NUM_THREADS="1"),
    )
    return proc, time.perf_counter() - start


def rtgov_session(cwd: Path) -> dict[str, object]:
    proc, wall = run(cwd, ["test_rtgov.py", "--rtgov-gate"])
    if proc.returncode not in (0, 6):
        raise SystemExit(proc.stdout + proc.stderr)
    run_id = (cwd / ".rtgov" / "latest").read_text().strip()
    record = json.loads((cwd / ".rtgov" / "runs" / f"{run_id}.json").read_text())
    breached = sorted(
        g["subject"].split("[")[1].rstrip("]")
        for g in record["gate_results"]
        if g["status"] == "breach"
    )
    effects = {
        g["subject"].split("[")[1].rstrip("]"): g["relative"]
        for g in record["gate_results"]
        if g["gate"] == "kernel time"
    }
    return {
        "failed": proc.returncode == 6,
        "breached": breached,
        "effects": effects,
        "wall_s": wall,
    }


def benchmark_session(cwd: Path, base: dict[str, dict[str, float]]) -> dict[str, object]:
    out = cwd / "bench.json"
    proc, wall = run(cwd, ["test_bench.py", f"--benchmark-json={out}", "--benchmark-max-time=0.2"])
    if proc.returncode != 0:
        raise SystemExit(proc.stdout + proc.stderr)
    stats = {b["param"]: b["stats"] for b in json.loads(out.read_text())["benchmarks"]}
    result: dict[str, object] = {"wall_s": wall}
    for field in ("mean", "min"):
        breached = sorted(
            name
            for name, s in stats.items()
            if (s[field] - base[name][field]) / base[name][field] > 0.05
        )
        result[f"{field}:5%"] = {"failed": bool(breached), "breached": breached}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("benches/results/gate_quality.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    rss0 = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    sessions: dict[str, list[dict[str, object]]] = {"unchanged": [], "slowed": []}
    with tempfile.TemporaryDirectory(prefix="rtgov-gate-quality-") as tmp:
        cwd = Path(tmp)
        (cwd / "bench_kernels.py").write_text(KERNELS.format(repeats=repeats(False)))
        (cwd / "test_rtgov.py").write_text(TESTS)
        (cwd / "test_bench.py").write_text(BENCH_TESTS)
        (cwd / "gates.toml").write_text(GATES)
        git(cwd, "init", "-q")
        git(cwd, "add", ".")
        git(cwd, "commit", "-q", "-m", "kernels")
        out = cwd / "base.json"
        proc, _ = run(cwd, ["test_bench.py", f"--benchmark-json={out}", "--benchmark-max-time=0.2"])
        if proc.returncode != 0:
            raise SystemExit(proc.stdout + proc.stderr)
        base = {b["param"]: b["stats"] for b in json.loads(out.read_text())["benchmarks"]}
        for index in range(args.sessions):
            for scenario in ("unchanged", "slowed"):
                source = KERNELS.format(repeats=repeats(scenario == "slowed"))
                (cwd / "bench_kernels.py").write_text(source)
                session = {
                    "rtgov": rtgov_session(cwd),
                    "pytest-benchmark": benchmark_session(cwd, base),
                }
                sessions[scenario].append(session)
                rt = session["rtgov"]
                print(
                    f"{scenario:9s} {index + 1:2d}: rtgov failed={rt['failed']} {rt['breached']}; "
                    f"pytest-benchmark mean:5% breached "
                    f"{len(session['pytest-benchmark']['mean:5%']['breached'])}",
                    file=sys.stderr,
                )

    def summary(scenario: str) -> dict[str, object]:
        ss = sessions[scenario]
        out: dict[str, object] = {"sessions": len(ss)}
        rows = {
            "pytest-rtgov A/B 5%": [s["rtgov"] for s in ss],
            "pytest-benchmark mean:5%": [s["pytest-benchmark"]["mean:5%"] for s in ss],
            "pytest-benchmark min:5%": [s["pytest-benchmark"]["min:5%"] for s in ss],
        }
        for tool, results in rows.items():
            others = [k for r in results for k in r["breached"] if k not in (SLOW_10, SLOW_25)]
            out[tool] = {
                "sessions_failed": sum(1 for r in results if r["failed"]),
                "caught_plus10": sum(1 for r in results if SLOW_10 in r["breached"]),
                "caught_plus25": sum(1 for r in results if SLOW_25 in r["breached"]),
                "unchanged_kernel_breaches": len(others),
                "unchanged_kernel_checks": len(results) * (N_KERNELS - 2),
            }
        effects10 = [s["rtgov"]["effects"].get(SLOW_10) for s in ss]
        effects25 = [s["rtgov"]["effects"].get(SLOW_25) for s in ss]
        out["rtgov_measured_effect_plus10"] = [round(e, 4) for e in effects10 if e is not None]
        out["rtgov_measured_effect_plus25"] = [round(e, 4) for e in effects25 if e is not None]
        out["rtgov_session_wall_s_median"] = sorted(s["rtgov"]["wall_s"] for s in ss)[len(ss) // 2]
        out["benchmark_session_wall_s_median"] = sorted(
            s["pytest-benchmark"]["wall_s"] for s in ss
        )[len(ss) // 2]
        return out

    result = {
        "benchmark": "gate_quality",
        "command": "python benches/gate_quality.py " + " ".join(sys.argv[1:]),
        "kernels": N_KERNELS,
        "slowed": {SLOW_10: "+10% work", SLOW_25: "+25% work"},
        "unchanged": summary("unchanged"),
        "slowed_sessions": summary("slowed"),
        "wall_s": round(time.perf_counter() - started, 1),
        "children_maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss - rss0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(json.dumps({k: result[k] for k in ("unchanged", "slowed_sessions")}, indent=1))
    print(f"wrote {args.out} in {result['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
