"""Per-test overhead of pytest-rtgov in instructions, counted by valgrind's callgrind.

Wall-clock differences of ~20 us per test drown in this machine's noise (see
overhead.py: the quartiles of paired differences span 100+ us). Instruction counts
are repeatable. For each configuration the trivial suite runs at two sizes (N and
2N tests), and two counts are taken of each run:

- ``loop``: only pytest's run-test loop, where every per-test hook runs (the
  measuring path). A tiny C function compiled here switches callgrind's collection on
  and off around the loop (``--collect-atstart=no``, ``CALLGRIND_TOGGLE_COLLECT``);
  start-up, collection, the session end and the terminal summary are left out, as in
  overhead.py's ``loop_s``;
- ``process``: the whole process, so also the session end's work that grows with the
  number of tests (record, ledger leaves, delta index, HTML report). fsync waits are
  not instructions: ``session_end.py`` times them.

(Ir(2N) - Ir(N)) / N is the per-test instruction cost, with start-up and every fixed
cost cancelled. The added cost is the difference to plain pytest, converted to
microseconds with plain pytest's own instructions per microsecond: plain pytest's
run-test loop timed uninstrumented on the 2N suite (the least-disturbed of repeated
runs, as ``timeit`` recommends).

Usage: python benches/overhead_instructions.py [--tests N] [--out PATH]   (needs valgrind, gcc)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFTEST = """
import json, os, time
import pytest

@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session):
    start = time.perf_counter()
    try:
        return (yield)
    finally:
        with open(os.environ["BENCH_OUT"], "w") as fh:
            json.dump({"loop_s": time.perf_counter() - start}, fh)
"""

TRIVIAL = """
import pytest

@pytest.mark.parametrize("i", range({n}))
def test_trivial(i):
    assert i >= 0
"""

# The same hooks as pytest-rtgov's measuring plugin, doing nothing: what the hook
# dispatch alone costs per test.
NOOP_PLUGIN = """
import pytest

class Noop:
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item):
        pass

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef, request):
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_pyfunc_call(self, pyfuncitem):
        return (yield)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report):
        pass

def pytest_configure(config):
    config.pluginmanager.register(Noop(), "noop")
"""

# Switches callgrind's collection on and off around pytest's run-test loop
# (valgrind's client requests: no-ops outside valgrind).
LOOP_C = """
#include <valgrind/callgrind.h>
void rtgov_bench_toggle(void) { CALLGRIND_TOGGLE_COLLECT; }
"""

LOOP_PLUGIN = """
import ctypes, os
import pytest

_toggle = ctypes.CDLL(os.environ["RTGOV_BENCH_LOOP_LIB"]).rtgov_bench_toggle


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtestloop(session):
    _toggle()
    try:
        return (yield)
    finally:
        _toggle()
"""

# Imported as a plugin, it switches Python's cyclic garbage collector off: with and
# without it, the share of the plugin's cost that is garbage collection shows.
NO_GC_PLUGIN = """
import gc

gc.disable()
"""

CONFIGS = {
    "plain": [],
    "no-op hooks (dispatch only)": ["-p", "rtgov_noop_plugin"],
    "plain, gc disabled": ["-p", "rtgov_no_gc"],
    "rtgov memory=off, gc disabled": ["-p", "rtgov_no_gc", "--rtgov", "--rtgov-memory=off"],
    "rtgov memory=off": ["--rtgov", "--rtgov-memory=off"],
    "rtgov memory=tracemalloc": ["--rtgov", "--rtgov-memory=tracemalloc"],
    "rtgov memory=auto (default)": ["--rtgov"],
}


def _suite(root: Path, n: int) -> Path:
    d = root / f"n{n}"
    d.mkdir()
    (d / "test_trivial.py").write_text(TRIVIAL.format(n=n))
    (d / "rtgov_noop_plugin.py").write_text(NOOP_PLUGIN)
    (d / "rtgov_no_gc.py").write_text(NO_GC_PLUGIN)
    (d / "rtgov_bench_loop.py").write_text(LOOP_PLUGIN)
    return d


def _loop_library(root: Path) -> Path:
    source, library = root / "loop.c", root / "libloop.so"
    source.write_text(LOOP_C)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O0", "-o", str(library), str(source)], check=True)
    return library


def _cmd(args: list[str], state: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--rtgov-dir={state}",
        *args,
    ]


def _instructions(
    directory: Path, args: list[str], state: Path, *, loop_library: Path | None = None
) -> int:
    """Instructions of one pytest process; with ``loop_library``, of its run-test loop."""
    out = directory / "callgrind.out"
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    env = dict(os.environ, PYTHONHASHSEED="0", OPENBLAS_NUM_THREADS="1", PYTHONPATH=".")
    if loop_library is not None:
        valgrind.append("--collect-atstart=no")
        args = ["-p", "rtgov_bench_loop", *args]
        env["RTGOV_BENCH_LOOP_LIB"] = str(loop_library)
    proc = subprocess.run(
        [*valgrind, *_cmd(args, state)],
        cwd=directory,
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        raise SystemExit(proc.stdout + proc.stderr)
    refs = re.findall(r"Collected\s*:\s*(\d+)", proc.stderr) or re.findall(
        r"I\s+refs:\s+([\d,]+)", proc.stderr
    )
    out.unlink(missing_ok=True)
    return int(refs[-1].replace(",", ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=200, help="N (the suite runs at N and 2N)")
    parser.add_argument("--timing-repeats", type=int, default=9)
    parser.add_argument(
        "--out", type=Path, default=Path("benches/results/overhead_instructions.json")
    )
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    n = args.tests
    started = time.perf_counter()
    per_test_ir: dict[str, dict[str, float]] = {"loop": {}, "process": {}}
    with tempfile.TemporaryDirectory(prefix="rtgov-ir-") as tmp:
        root = Path(tmp)
        small, large = _suite(root, n), _suite(root, 2 * n)
        library = _loop_library(root)
        for i, (name, cfg) in enumerate(CONFIGS.items()):
            for scope in ("loop", "process"):
                # hypothesis's plugin imports hypothesis in the terminal summary, whose
                # full garbage collections land on one size or the other: a step, not a
                # per-test cost (the loop count does not reach the summary anyway).
                args_ = ["-p", "no:hypothesispytest", *cfg]
                state = root / f"state-{scope}-{i}"  # the larger run follows one session
                lib = library if scope == "loop" else None
                ir_small = _instructions(small, args_, state, loop_library=lib)
                ir_large = _instructions(large, args_, state, loop_library=lib)
                per_test_ir[scope][name] = (ir_large - ir_small) / n
                print(
                    f"{scope:8s} {name:38s} {per_test_ir[scope][name]:12.0f} instructions/test",
                    file=sys.stderr,
                )
        # plain pytest's speed: its run-test loop on the 2N suite, uninstrumented
        (large / "conftest.py").write_text(CONFTEST)
        loops = []
        out = root / "loop.json"
        for _ in range(args.timing_repeats):
            subprocess.run(
                _cmd(["-p", "no:hypothesispytest"], root / "state"),
                cwd=large,
                capture_output=True,
                check=True,
                env=dict(os.environ, BENCH_OUT=str(out), OPENBLAS_NUM_THREADS="1"),
            )
            loops.append(json.loads(out.read_text())["loop_s"])
    plain_s_per_test = min(loops) / (2 * n)
    # Plain pytest's loop: its instructions per test over its time per test.
    ir_per_us = per_test_ir["loop"]["plain"] / (plain_s_per_test * 1e6)

    def reference(name: str) -> str:
        return "plain, gc disabled" if "gc disabled" in name else "plain"

    rows = [
        {
            "scope": scope,
            "config": name,
            "compared_with": reference(name),
            "instructions_per_test": round(ir),
            "added_instructions_per_test": round(ir - irs[reference(name)]),
            "added_us_per_test_est": round((ir - irs[reference(name)]) / ir_per_us, 1),
        }
        for scope, irs in per_test_ir.items()
        for name, ir in irs.items()
    ]
    result = {
        "benchmark": "overhead_instructions",
        "command": "python benches/overhead_instructions.py " + " ".join(sys.argv[1:]),
        "tests": [n, 2 * n],
        "plain_us_per_test": round(plain_s_per_test * 1e6, 1),
        "plain_loop_s_all": [round(x, 4) for x in loops],
        "plain_instructions_per_us": round(ir_per_us, 1),
        "wall_s": round(time.perf_counter() - started, 1),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    for row in rows:
        print(
            f"{row['scope']:8s} {row['config']:38s} {row['instructions_per_test']:10d} Ir/test "
            f"{row['added_instructions_per_test']:+9d} Ir  ~{row['added_us_per_test_est']:6.1f} us"
        )
    print(f"plain pytest: {result['plain_us_per_test']} us/test; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
