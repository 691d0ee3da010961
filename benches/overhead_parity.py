"""Per-test work of two versions of pytest-rtgov, counted exactly: calls, lines, collections.

Instruction counts (overhead_instructions.py) of a Python process include its cyclic
garbage collector, whose full collections come in steps: one collection over the
whole heap lands in the 2N-test run and not in the N-test run, and a version that
imports more modules at start has a larger heap, so (Ir(2N) - Ir(N)) / N moves by
several thousand instructions per test without any per-test work changing. To tell a
real per-test change from such a step, this script counts what does not depend on the
heap, in pytest's run-test loop of the trivial suite (``N`` parametrized tests):

- ``calls``: Python and builtin function calls (``cProfile``), per test;
- ``lines``: Python line events (``sys.settrace``), per test, all code and the
  plugin's own;
- ``gc``: the collector's runs per generation and the objects tracked at the loop's
  start and end (``gc.callbacks``).

Each version is a checkout given by its path (put first on ``PYTHONPATH``; the
installed pytest-rtgov's entry point loads it). Counts are exact: one run each.

Usage: python benches/overhead_parity.py OLD_CHECKOUT NEW_CHECKOUT [--tests N] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRIVIAL = """
import pytest

@pytest.mark.parametrize("i", range({n}))
def test_trivial(i):
    assert i >= 0
"""

PROBE = """
import cProfile, gc, json, os, pstats, sys
from collections import Counter
import pytest

@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtestloop(session):
    kind = os.environ["PARITY_KIND"]
    out = {}
    if kind == "calls":
        profile = cProfile.Profile()
        profile.enable()
    elif kind == "lines":
        lines = Counter()

        def tracer(frame, event, arg):
            frame.f_trace_lines = True
            if event == "line":
                lines["pytest_rtgov" in frame.f_code.co_filename] += 1
            return tracer

        sys.settrace(tracer)
    else:
        runs = [0, 0, 0]

        def callback(phase, info):
            if phase == "stop":
                runs[info["generation"]] += 1

        out["objects_start"] = len(gc.get_objects())
        gc.callbacks.append(callback)
    try:
        return (yield)
    finally:
        if kind == "calls":
            profile.disable()
            stats = pstats.Stats(profile).stats
            out["calls"] = sum(v[1] for v in stats.values())
        elif kind == "lines":
            sys.settrace(None)
            out["lines"], out["plugin_lines"] = lines[True] + lines[False], lines[True]
        else:
            gc.callbacks.remove(callback)
            out["collections"], out["objects_end"] = runs, len(gc.get_objects())
        with open(os.environ["PARITY_OUT"], "w") as fh:
            json.dump(out, fh)
"""

ARGS = ["-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-p", "no:hypothesispytest",
        "-p", "no:rerunfailures", "-p", "no:memray", "-p", "no:benchmark"]  # fmt: skip
CONFIGS = {"memory=off": ["--rtgov-memory=off"], "memory=tracemalloc": [
    "--rtgov-memory=tracemalloc"]}  # fmt: skip


def _count(suite: Path, checkout: Path, config: list[str], kind: str, state: Path) -> dict:
    out = suite / f"parity-{kind}.json"
    env = dict(
        os.environ,
        PYTHONPATH=f".{os.pathsep}{checkout}",
        PYTHONHASHSEED="0",
        OPENBLAS_NUM_THREADS="1",
        PARITY_KIND=kind,
        PARITY_OUT=str(out),
    )
    cmd = [sys.executable, "-m", "pytest", *ARGS, "-p", "rtgov_parity", "--rtgov",
           f"--rtgov-dir={state}", *config]  # fmt: skip
    proc = subprocess.run(cmd, cwd=suite, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stdout[-2000:] + proc.stderr[-2000:])
    return json.loads(out.read_text())


def _commit(checkout: Path) -> str:
    proc = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True)  # fmt: skip
    return proc.stdout.strip() or "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--tests", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path("benches/results/overhead_parity.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="rtgov-parity-") as tmp:
        suite = Path(tmp)
        (suite / "test_trivial.py").write_text(TRIVIAL.format(n=args.tests))
        (suite / "rtgov_parity.py").write_text(PROBE)
        for name, config in CONFIGS.items():
            for label, checkout in (("old", args.old), ("new", args.new)):
                row: dict = {"config": name, "version": label, "checkout": str(checkout),
                             "commit": _commit(checkout)}  # fmt: skip
                for kind in ("calls", "lines", "gc"):
                    counted = _count(suite, checkout.resolve(), config, kind, suite / "state")
                    row.update(counted)
                for key in ("calls", "lines", "plugin_lines"):
                    row[f"{key}_per_test"] = round(row[key] / args.tests, 2)
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if "per_test" in k or
                                  k in ("config", "version", "collections")}), file=sys.stderr)
    result = {
        "benchmark": "overhead_parity",
        "command": "python benches/overhead_parity.py " + " ".join(sys.argv[1:]),
        "tests": args.tests,
        "python": sys.version.split()[0],
        "wall_s": round(time.perf_counter() - started, 1),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
