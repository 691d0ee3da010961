"""Gate quality as users meet it: false alarms, catches and reported effects of real edits.

The workload is this repository's own (``tests/workload/test_kernel_perf.py`` gated by
``gates.toml``), plus three synthetic kernels appended to that file in the copy. The
slowdowns are real code edits of the kernels (``benches/_gate_edits.py``: for each kernel
one edit of about +10% and one of about +25%), whose true effect is timed standalone
first, in each condition: the current and the edited test body alternated in one
process, median of paired ratios, CPU and wall time, in 3 fresh processes (median).

A session: a fresh ``git clone`` of the code at ``--ref`` (committed, so the A/B gate has
a reference), the edits applied uncommitted, then, as a user runs it,
``OPENBLAS_NUM_THREADS=1 python -m pytest tests/workload/test_kernel_perf.py --rtgov-gate``;
the verdict of each kernel's A/B gate is read from the run record. Then pytest-benchmark
on the same kernels in the same copy (``tests/workload/test_kernel_bench.py``, which
benchmarks the same test bodies), compared with a baseline saved once
(``--benchmark-compare=0001 --benchmark-compare-fail=mean:10%``, the real flag) and,
from its JSON, with the previous unchanged session's. Several kernels are edited in
one session (``GROUPS``: no edit touches another edited kernel's test), each judged
apart. Conditions: ``quiet``, and ``hog`` (``python -c 'while True: pass'`` started
before the session and killed by its pid after); ``os.getloadavg()`` is recorded.

Usage: python benches/gate_quality.py [--sessions 20] [--conditions quiet,hog]
       [--kernels gelu,...] [--quick] [--ref REV] [--before PATH] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import tomllib

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _gate_edits as edits
import _gate_summary as summary
from _hog import hog

ROOT = Path(__file__).resolve().parents[1]
COPIED = [
    ".gitignore", "pyproject.toml", "gates.toml", "rtgov.keyring", "fixtures", "kernels",
    "pytest_rtgov", "tests/__init__.py", "tests/conftest.py", "tests/workload",
]  # fmt: skip
GATE_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
BENCH_TESTS = '''"""pytest-benchmark on the test bodies of test_kernel_perf.py (gate_quality.py)."""

import inspect

import pytest

from tests.workload import test_kernel_perf as perf
from tests.workload.test_kernel_perf import arrays  # noqa: F401

NAMES = {names!r}


@pytest.mark.parametrize("name", NAMES)
def test_bench(name, benchmark, request):
    fn = getattr(perf, "test_" + name)
    args = [request.getfixturevalue(a) for a in inspect.signature(fn).parameters]
    benchmark(fn, *args)
'''


def git(cwd: Path, *args: str) -> str:
    ident = ["-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    proc = subprocess.run(["git", *ident, *args], cwd=cwd, check=True, capture_output=True)
    return proc.stdout.decode().strip()


def pytest_run(cwd: Path, args: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    env = dict(os.environ, **GATE_ENV, PYTHONPATH=str(cwd))
    for name in ("CI", "GITHUB_ACTIONS", "RTGOV_SIGNING_KEY"):
        env.pop(name, None)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=cwd, capture_output=True, text=True, env=env,
    )  # fmt: skip
    return proc, time.perf_counter() - start


def make_code_tree(tmp: Path, ref: str, kernels: list[str]) -> tuple[Path, str]:
    """The workload and plugin at ``ref`` (plus synthetic kernels), committed in a new repo."""
    sha = git(ROOT, "rev-parse", ref)
    tree = tmp / "code"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", sha, *COPIED], cwd=ROOT, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    if any(k.startswith("s_") for k in kernels):
        edits.add_synthetic(tree)
    names = [edits.BY_KERNEL[k].test[len("test_") :] for k in edits.BY_KERNEL]
    if not any(k.startswith("s_") for k in kernels):
        names = [n for n in names if not n.startswith("s_")]
    (tree / "tests/workload/test_kernel_bench.py").write_text(BENCH_TESTS.format(names=names))
    git(tree, "init", "-q")
    git(tree, "add", "-A")
    git(tree, "commit", "-q", "-m", f"gate-quality workload at {sha}")
    return tree, sha


def clone(tree: Path, dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    git(tree.parent, "clone", "-q", str(tree), str(dest))
    return dest


def scenarios(kernels: list[str]) -> list[tuple[str, str, tuple[str, ...]]]:
    """(name, size, edited kernels): unchanged first, then each group at each size."""
    out: list[tuple[str, str, tuple[str, ...]]] = [("unchanged", "", ())]
    for size in ("+10%", "+25%"):
        for group in edits.GROUPS:
            chosen = tuple(k for k in group if k in kernels)
            if chosen:
                out.append((f"{size} {'+'.join(chosen)}", size, chosen))
    return out


def true_effects(
    tree: Path, tmp: Path, kernels: list[str], pairs: int, processes: int
) -> dict[str, Any]:
    """Each edit's effect on its target test body, timed standalone in ``processes`` fresh
    processes (memory layout differs between processes); the median of their medians."""
    out: dict[str, Any] = {}
    script = str(ROOT / "benches" / "_gate_edits.py")
    for _, size, chosen in scenarios(kernels)[1:]:
        edited = clone(tree, tmp / "effect")
        edits.apply(edited, chosen, size)
        tests = [edits.BY_KERNEL[k].test for k in chosen]
        runs = []
        for _ in range(processes):
            proc = subprocess.run(
                [sys.executable, script, "measure", str(tree), str(edited), str(pairs), *tests],
                capture_output=True, text=True, env=dict(os.environ, **GATE_ENV), check=False,
            )  # fmt: skip
            if proc.returncode:
                raise SystemExit(proc.stderr)
            runs.append(json.loads(proc.stdout))
        for k in chosen:
            per = [r[edits.BY_KERNEL[k].test] for r in runs]
            out.setdefault(k, {})[size] = {
                "cpu_effect": statistics.median(p["cpu_effect"] for p in per),
                "wall_effect": statistics.median(p["wall_effect"] for p in per),
                "processes": per,
                "loadavg_1m": round(os.getloadavg()[0], 2),
            }
            print(f"true effect {size} {k}: {out[k][size]['cpu_effect']:+.3f} cpu", file=sys.stderr)
    return out


def ab_gates(cwd: Path) -> set[str]:
    gates = tomllib.loads((cwd / "gates.toml").read_text()).get("gates", [])
    return {g["name"] for g in gates if g.get("ab")}


def rtgov_session(cwd: Path) -> dict[str, Any]:
    proc, wall = pytest_run(cwd, [edits.PERF, "--rtgov-gate"])
    if proc.returncode not in (0, 6):
        raise SystemExit(f"rtgov session exit {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    run_id = (cwd / ".rtgov" / "latest").read_text().strip()
    record = json.loads((cwd / ".rtgov" / "runs" / f"{run_id}.json").read_text())
    names, kernels, other = ab_gates(cwd), {}, []
    by_test = {e.test: e.kernel for e in edits.EDITS}
    for g in record["gate_results"]:
        test = g["subject"].split("::")[-1]
        if g["gate"] in names and test in by_test:
            keep = ("status", "relative", "p_value", "metric", "clock", "reason", "current")
            kernels[by_test[test]] = {k: g.get(k) for k in keep}
        elif g["status"] in ("breach", "missing"):
            other.append(f"{g['gate']}: {g['subject']}")
    return {
        "exit_status": proc.returncode,
        "wall_s": round(wall, 2),
        "kernels": kernels,
        "other_breaches": other,
    }


def bench_session(cwd: Path, storage: Path, max_time: float, save: bool = False) -> dict[str, Any]:
    out = cwd / "bench.json"
    args = [
        "tests/workload/test_kernel_bench.py",
        f"--benchmark-storage=file://{storage}",
        f"--benchmark-json={out}",
        f"--benchmark-max-time={max_time}",
    ]
    if save:
        args.append("--benchmark-save=base")
    else:
        args += ["--benchmark-compare=0001", "--benchmark-compare-fail=mean:10%"]
    proc, wall = pytest_run(cwd, args)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"pytest-benchmark exit {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    stats = {
        b["param"]: {f: b["stats"][f] for f in ("mean", "median", "min")}
        for b in json.loads(out.read_text())["benchmarks"]
    }
    return {"exit_status": proc.returncode, "wall_s": round(wall, 2), "stats": stats}


def write(
    args: argparse.Namespace,
    sha: str,
    effects: dict[str, Any],
    sessions: list[dict[str, Any]],
    saved: dict[str, Any],
    kernels: list[str],
    started: float,
    complete: bool,
) -> dict[str, Any]:
    before = json.loads(args.before.read_text()) if args.before else None
    result = {
        "benchmark": "gate_quality",
        "command": "python benches/gate_quality.py " + " ".join(sys.argv[1:]),
        "commit": sha,
        "complete": complete,
        "groups": [list(g) for g in edits.GROUPS],
        "edits": {
            e.kernel: {"file": e.path, "touches": e.touches, "changes": e.changes}
            for e in edits.EDITS
        },
        "true_effects": effects,
        "sessions": sessions,
        "pytest_benchmark_baseline": saved,
        "summary": summary.summarise(sessions, effects, kernels, before, saved["stats"]),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--conditions", default="quiet,hog")
    parser.add_argument("--kernels", default=",".join(edits.BY_KERNEL))
    parser.add_argument("--quick", action="store_true", help="2 sessions, fewer timing pairs")
    parser.add_argument("--ref", default="HEAD", help="commit whose code the sessions run")
    parser.add_argument("--effect-pairs", type=int, default=200)
    parser.add_argument("--effect-processes", type=int, default=3)
    parser.add_argument("--benchmark-max-time", type=float, default=0.5)
    parser.add_argument("--before", type=Path, help="an earlier result to compare wall time")
    parser.add_argument("--out", type=Path, default=ROOT / "benches/results/gate_quality.json")
    parser.add_argument(
        "--resummarise", action="store_true", help="recount --out (with --before), run nothing"
    )
    args = parser.parse_args()
    if args.resummarise:
        done = json.loads(args.out.read_text())
        before = json.loads(args.before.read_text()) if args.before else None
        ks = sorted({k for s in done["sessions"] for k in s["rtgov"]["kernels"]})
        base = done["pytest_benchmark_baseline"]["stats"]
        effects = done["true_effects"]
        done["summary"] = summary.summarise(done["sessions"], effects, ks, before, base)
        done["summarised_with_before"] = str(args.before) if args.before else None
        args.out.write_text(json.dumps(done, indent=1, sort_keys=True) + "\n")
        print(summary.table(done))
        return 0
    if args.quick:
        args.sessions, args.effect_pairs = min(args.sessions, 2), 100
        args.benchmark_max_time = min(args.benchmark_max_time, 0.25)
    kernels = [k for k in args.kernels.split(",") if k]
    unknown = sorted(set(kernels) - set(edits.BY_KERNEL))
    if unknown:
        parser.error(f"unknown kernels {unknown}; known: {', '.join(edits.BY_KERNEL)}")
    conditions = args.conditions.split(",")
    started = time.perf_counter()
    sessions: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rtgov-gate-quality-") as name:
        tmp = Path(name)
        tree, sha = make_code_tree(tmp, args.ref, kernels)
        effects: dict[str, Any] = {}
        for condition in conditions:  # an edit's effect may itself depend on the neighbour
            with hog(condition == "hog"):
                effects[condition] = true_effects(
                    tree, tmp, kernels, args.effect_pairs, args.effect_processes
                )
        storage = tmp / "benchmarks"
        saved = bench_session(clone(tree, tmp / "s"), storage, args.benchmark_max_time, True)
        previous: dict[str, Any] | None = None
        for index in range(args.sessions):
            for condition in conditions:
                for scenario, size, chosen in scenarios(kernels):
                    cwd = clone(tree, tmp / "s")
                    edits.apply(cwd, chosen, size)
                    with hog(condition == "hog") as pid:
                        load0 = os.getloadavg()[0]
                        rt = rtgov_session(cwd)
                        bench = bench_session(cwd, storage, args.benchmark_max_time)
                        load1 = os.getloadavg()[0]
                    bench["previous"] = previous["stats"] if previous else None
                    if not chosen:
                        previous = bench
                    sessions.append({
                        "index": index, "condition": condition, "scenario": scenario,
                        "size": size, "edited": list(chosen), "hog_pid": pid,
                        "loadavg_1m": [round(load0, 2), round(load1, 2)],
                        "rtgov": rt, "pytest_benchmark": bench,
                    })  # fmt: skip
                    print(summary.session_line(sessions[-1]), file=sys.stderr)
                    # written after every session: a run stopped early keeps what it measured
                    write(args, sha, effects, sessions, saved, kernels, started, complete=False)
    result = write(args, sha, effects, sessions, saved, kernels, started, complete=True)
    print(summary.table(result))
    print(f"wrote {args.out} in {result['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
