"""Per-test instructions of two checkouts of pytest-rtgov, side by side (callgrind).

Runs ``overhead_instructions.py``'s measurement (the run-test loop of the trivial suite
at N and 2N tests, ``(Ir(2N) - Ir(N)) / N``) for a few configurations, with a checkout
put first on ``PYTHONPATH`` (the installed pytest-rtgov's entry point then loads it), so
two versions are measured with the same Python, pytest and plugins. Plugins installed
for other work (rerunfailures, memray, benchmark) are switched off in every run.

Usage: python benches/overhead_instructions_versions.py CHECKOUT [CHECKOUT ...]
       [--tests N] [--out PATH]          (needs valgrind, gcc; about 10 min per checkout
                                          at N=1000 on a quiet 2-core machine)
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
OFF = ["-p", "no:hypothesispytest", "-p", "no:rerunfailures", "-p", "no:memray",
       "-p", "no:benchmark"]  # fmt: skip


def _measure(checkout: Path, n: int) -> dict[str, float]:
    real_run = subprocess.run

    def run(cmd, *args, **kwargs):  # type: ignore[no-untyped-def]
        env = kwargs.get("env")
        if env is not None and env.get("PYTHONPATH") == ".":
            kwargs["env"] = dict(env, PYTHONPATH=f".:{checkout}")
        return real_run(cmd, *args, **kwargs)

    oi.subprocess.run = run  # type: ignore[assignment]
    try:
        per_test = {}
        with tempfile.TemporaryDirectory(prefix="rtgov-irv-") as tmp:
            root = Path(tmp)
            small, large = oi._suite(root, n), oi._suite(root, 2 * n)
            library = oi._loop_library(root)
            for i, name in enumerate(CONFIGS):
                args = [*OFF, *oi.CONFIGS[name]]
                state = root / f"state-{i}"
                low = oi._instructions(small, args, state, loop_library=library)
                high = oi._instructions(large, args, state, loop_library=library)
                per_test[name] = round((high - low) / n)
                print(checkout, name, per_test[name], file=sys.stderr, flush=True)
        return per_test
    finally:
        oi.subprocess.run = real_run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", type=Path, nargs="+")
    parser.add_argument("--tests", type=int, default=1000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    started = time.perf_counter()
    rows = {}
    for checkout in args.checkouts:
        commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()  # fmt: skip
        rows[commit or str(checkout)] = _measure(checkout.resolve(), args.tests)
    result = {
        "benchmark": "overhead_instructions_versions",
        "command": "python benches/overhead_instructions_versions.py " + " ".join(sys.argv[1:]),
        "tests": [args.tests, 2 * args.tests],
        "scope": "loop",
        "instructions_per_test": rows,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
