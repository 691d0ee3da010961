"""Does the calibration kernel help? Between-session spread of raw vs calibrated times.

Runs the reference workload's kernel tests (``tests/workload/test_kernel_perf.py``,
7 rounds each) in N fresh sessions with ``--rtgov --rtgov-calibrate`` and
``OPENBLAS_NUM_THREADS=1``. Every other session runs beside a CPU hog (a busy loop
on the other core), the noisy neighbour of a shared CI machine. For each kernel: the
coefficient of variation across sessions of its median wall time, raw and divided by
the session's calibration time, over all sessions and over the quiet ones alone.

Usage: python benches/calibration.py [--sessions 12] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _hog(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x += 1


def _session(state: Path, hog: bool) -> dict[str, object]:
    proc = None
    if hog:
        proc = multiprocessing.Process(target=_hog, args=(time.time() + 120,), daemon=True)
        proc.start()
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "tests/workload/test_kernel_perf.py",
                "--rtgov",
                "--rtgov-calibrate",
                f"--rtgov-dir={state}",
                "-p",
                "no:cacheprovider",
                "-q",
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
            env=dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1"),
        )
    finally:
        if proc is not None:
            proc.terminate()
            proc.join()
    run_id = (state / "latest").read_text().strip()
    record = json.loads((state / "runs" / f"{run_id}.json").read_text())
    calibration = record["calibration"]["workers"]["main"]
    medians = {
        t["nodeid"].split("::")[1]: statistics.median(
            s["wall_ns"] for s in t["samples"] if not s["warmup"]
        )
        for t in record["tests"]
    }
    return {"hog": hog, "calibration_ns": calibration, "median_ns": medians}


def _cv(values: list[float]) -> float:
    return statistics.stdev(values) / statistics.mean(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=12)
    parser.add_argument("--out", type=Path, default=Path("benches/results/calibration.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    sessions = []
    with tempfile.TemporaryDirectory(prefix="rtgov-calibration-") as tmp:
        for index in range(args.sessions):
            sessions.append(_session(Path(tmp) / "state", hog=index % 2 == 1))
            print(f"session {index + 1}: hog={index % 2 == 1}", file=sys.stderr)
    kernels = sorted(sessions[0]["median_ns"])
    rows = []
    for kernel in kernels:
        row: dict[str, object] = {"kernel": kernel}
        for label, chosen in (("all", sessions), ("quiet", [s for s in sessions if not s["hog"]])):
            raw = [s["median_ns"][kernel] for s in chosen]
            calibrated = [s["median_ns"][kernel] / s["calibration_ns"] for s in chosen]
            row[f"cv_raw_{label}"] = round(_cv(raw), 4)
            row[f"cv_calibrated_{label}"] = round(_cv(calibrated), 4)
        rows.append(row)
    summary = {
        key: round(statistics.median(r[key] for r in rows), 4)
        for key in ("cv_raw_all", "cv_calibrated_all", "cv_raw_quiet", "cv_calibrated_quiet")
    }
    result = {
        "benchmark": "calibration",
        "command": "python benches/calibration.py " + " ".join(sys.argv[1:]),
        "sessions": args.sessions,
        "calibration_ns": [s["calibration_ns"] for s in sessions],
        "hog": [s["hog"] for s in sessions],
        "rows": rows,
        "median_over_kernels": summary,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"{'kernel':40s} {'raw all':>8s} {'cal all':>8s} {'raw quiet':>9s} {'cal quiet':>9s}")
    for r in rows:
        print(
            f"{r['kernel']:40s} {r['cv_raw_all']:8.3f} {r['cv_calibrated_all']:8.3f} "
            f"{r['cv_raw_quiet']:9.3f} {r['cv_calibrated_quiet']:9.3f}"
        )
    print(f"median: {summary}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
