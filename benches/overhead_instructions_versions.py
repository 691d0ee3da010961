"""Per-test instructions of two checkouts of pytest-rtgov, side by side (callgrind).

Runs ``overhead_instructions.py``'s measurement (the run-test loop of the trivial suite
at N and 2N tests, ``(Ir(2N) - Ir(N)) / N``) for a few configurations, with a checkout
put first on ``PYTHONPATH`` (the installed pytest-rtgov's entry point then loads it), so
two versions are measured with the same Python, pytest and plugins. Plugins installed
for other work (rerunfailures, memray, benchmark) are switched off in every run.

Usage: python benches/overhead_instructions_versions.py CHECKOUT [CHECKOUT ...]
       [--tests N] [--out PATH]          (needs valgrind, gcc; about 10 min per checkout
                                          at N=1000 on a quiet 2-core machine)
       [--layouts 0,1,2,3] [--configs "NAME;NAME"]

Layouts: CPython 3.11's type attribute cache has 4,096 slots, indexed by a type's
version tag (handed out in the order types are first looked up) and the address of the
attribute's name. Which hot (type, name) pairs share a slot, and so miss the cache on
every test, changes with any change to what is imported or defined before the tests
run: by tens of misses per test, thousands of instructions. ``--layouts K,...`` repeats
each measurement with an early plugin that defines K empty classes first (shifting every
later version tag by K) and reports each layout and their mean: compare versions on the
mean, not on one layout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import overhead_instructions as oi

CONFIGS = ("plain", "rtgov memory=off", "plain, gc disabled", "rtgov memory=off, gc disabled")
# Loaded with -p before the tests: K empty classes, each given a version tag.
LAYOUT_PLUGIN = """
import os

_classes = [type(f"_Layout{i}", (), {}) for i in range(int(os.environ["RTGOV_LAYOUT_K"]))]
for _c in _classes:
    getattr(_c, "_rtgov_layout_probe", None)  # a lookup assigns the class its version tag
"""
OFF = ["-p", "no:hypothesispytest", "-p", "no:rerunfailures", "-p", "no:memray",
       "-p", "no:benchmark"]  # fmt: skip


def _measure(
    checkout: Path, n: int, configs: tuple[str, ...] = CONFIGS, layout: int | None = None
) -> dict[str, float]:
    real_run = subprocess.run

    def run(cmd, *args, **kwargs):  # type: ignore[no-untyped-def]
        env = kwargs.get("env")
        if env is not None and env.get("PYTHONPATH") == ".":
            kwargs["env"] = dict(env, PYTHONPATH=f".:{checkout}")
            if layout is not None:
                kwargs["env"]["RTGOV_LAYOUT_K"] = str(layout)
        return real_run(cmd, *args, **kwargs)

    oi.subprocess.run = run  # type: ignore[assignment]
    try:
        per_test = {}
        with tempfile.TemporaryDirectory(prefix="rtgov-irv-") as tmp:
            root = Path(tmp)
            small, large = oi._suite(root, n), oi._suite(root, 2 * n)
            layout_args: list[str] = []
            if layout is not None:
                for suite in (small, large):
                    (suite / "rtgov_layout.py").write_text(LAYOUT_PLUGIN)
                layout_args = ["-p", "rtgov_layout"]
            library = oi._loop_library(root)
            for i, name in enumerate(configs):
                args = [*layout_args, *OFF, *oi.CONFIGS[name]]
                state = root / f"state-{i}"
                low = oi._instructions(small, args, state, loop_library=library)
                high = oi._instructions(large, args, state, loop_library=library)
                per_test[name] = round((high - low) / n)
                print(checkout, layout, name, per_test[name], file=sys.stderr, flush=True)
        return per_test
    finally:
        oi.subprocess.run = real_run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", type=Path, nargs="+")
    parser.add_argument("--tests", type=int, default=1000)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--layouts", default=None, help="K,K,...: shift version tags by K")
    parser.add_argument("--configs", default=";".join(CONFIGS), help="NAME;NAME;...")
    args = parser.parse_args()
    configs = tuple(c.strip() for c in args.configs.split(";") if c.strip())
    unknown = sorted(set(configs) - set(oi.CONFIGS))  # any of overhead_instructions'
    if unknown:
        parser.error(f"unknown configs {unknown}: expected some of {list(oi.CONFIGS)}")
    layouts = [int(k) for k in args.layouts.split(",")] if args.layouts else None
    started = time.perf_counter()
    rows: dict[str, dict[str, float]] = {}
    by_layout: dict[str, dict[str, dict[str, float]]] = {}
    for checkout in args.checkouts:
        commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()  # fmt: skip
        key = commit or str(checkout)
        if layouts is None:
            rows[key] = _measure(checkout.resolve(), args.tests, configs)
            continue
        by_layout[key] = {
            str(k): _measure(checkout.resolve(), args.tests, configs, k) for k in layouts
        }
        rows[key] = {
            name: round(sum(m[name] for m in by_layout[key].values()) / len(layouts))
            for name in configs
        }
    result: dict[str, object] = {
        "benchmark": "overhead_instructions_versions",
        "command": "python benches/overhead_instructions_versions.py " + " ".join(sys.argv[1:]),
        "tests": [args.tests, 2 * args.tests],
        "scope": "loop",
        "instructions_per_test": rows,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    if layouts is not None:
        result["layouts"] = layouts
        result["instructions_per_test_by_layout"] = by_layout
        result["note"] = "instructions_per_test: the mean over the layouts"
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
