"""End-to-end cost per test of an active session, session end included.

`overhead_instructions.py` counts the per-test path; this one times whole pytest
processes, so it also sees what happens once per session but grows with the number of
tests: the ledger (a leaf per test; one fsync per session by default, one per leaf with
`--rtgov-ledger-fsync record`), the HTML report and the delta index it reads. For
N = 100 and 1000 trivial tests, each configuration runs in a fresh process whose state
directory holds one earlier session (the ledger extended, the delta index updated, as
in a project that has run before), configurations alternated in a seeded order; the
per-test cost is the slope between the two sizes of the median process time, which
cancels start-up and every fixed cost.

Usage: python benches/session_end.py [--rounds 9] [--out benches/results/session_end.json]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEED = 20261122
SIZES = (100, 1000)
CONFIGS = {
    "plain": [],
    "rtgov memory=off (defaults: one fsync per session, report)": [
        "--rtgov",
        "--rtgov-memory=off",
    ],
    "rtgov memory=off, --rtgov-ledger-fsync record": [
        "--rtgov",
        "--rtgov-memory=off",
        "--rtgov-ledger-fsync",
        "record",
    ],
    "rtgov memory=off, --rtgov-report off": [
        "--rtgov",
        "--rtgov-memory=off",
        "--rtgov-report",
        "off",
    ],
}


def run_once(suite: Path, n: int, args: list[str], *, history: Path | None = None) -> float:
    """Seconds of one pytest process; its state directory starts as a copy of
    ``history`` (one earlier session of the same configuration), as in a project that
    has run before: the ledger is extended, the delta index updated, not created."""
    state = suite / "state"
    shutil.rmtree(state, ignore_errors=True)
    if history is not None:
        shutil.copytree(history, state)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:hypothesispytest",
        f"test_{n}.py",
        *args,
        *(["--rtgov-dir", str(state)] if args else []),
    ]
    started = time.perf_counter()
    subprocess.run(cmd, cwd=suite, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--out", type=Path, default=Path("benches/results/session_end.json"))
    args = parser.parse_args()
    rng = random.Random(SEED)
    times: dict[str, dict[int, list[float]]] = {c: {n: [] for n in SIZES} for c in CONFIGS}
    with tempfile.TemporaryDirectory(prefix="rtgov-session-end-") as tmp:
        suite = Path(tmp)
        for n in SIZES:
            body = "\n".join(f"def test_{i}():\n    pass\n" for i in range(n))
            (suite / f"test_{n}.py").write_text(body)
        histories: dict[tuple[str, int], Path | None] = {}
        for i, config in enumerate(CONFIGS):
            for n in SIZES:
                if not CONFIGS[config]:
                    histories[(config, n)] = None
                    continue
                run_once(suite, n, CONFIGS[config])  # the earlier session
                histories[(config, n)] = suite / f"history-{i}-{n}"
                shutil.move(suite / "state", histories[(config, n)])
        for _ in range(args.rounds):
            order = [(c, n) for c in CONFIGS for n in SIZES]
            rng.shuffle(order)
            for config, n in order:
                times[config][n].append(
                    run_once(suite, n, CONFIGS[config], history=histories[(config, n)])
                )
    rows = []
    for config, by_size in times.items():
        medians = {n: statistics.median(v) for n, v in by_size.items()}
        slope = (medians[SIZES[1]] - medians[SIZES[0]]) / (SIZES[1] - SIZES[0])
        rows.append(
            {
                "config": config,
                "median_process_s": {str(n): round(m, 4) for n, m in medians.items()},
                "per_test_us": round(slope * 1e6, 1),
                "all_s": {str(n): [round(t, 4) for t in v] for n, v in by_size.items()},
            }
        )
    plain = rows[0]["per_test_us"]
    for row in rows:
        row["added_per_test_us"] = round(row["per_test_us"] - plain, 1)
        print(
            f"{row['config']:58} process {row['median_process_s']}  "
            f"per test {row['per_test_us']:7.1f} us  added {row['added_per_test_us']:7.1f} us"
        )
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "seed": SEED,
        "sizes": SIZES,
        "rounds": args.rounds,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
