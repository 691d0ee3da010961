"""Cost of one measured region per memory mode, and what each mode sees.

For each mode: the median cost of opening and closing an empty region (timeit,
repeated), and the peak each mode reports for a region that allocates a 64 MiB
numpy array and one that allocates 64 MiB inside a C library (SQLite's page cache,
invisible to tracemalloc).

Usage: python benches/probes.py [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path

import numpy as np

from pytest_rtgov.measure.memory import MEMORY_MODES, make_probe
from pytest_rtgov.measure.region import Meter

MIB = 1 << 20


def _native_alloc(n: int) -> None:
    """Allocate ``n`` bytes inside a C library, outside Python's allocators.

    SQLite's in-memory database keeps its pages in memory from the system malloc:
    tracemalloc cannot see them, memray and rss can.
    """
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (x BLOB)")
    db.execute("INSERT INTO t VALUES (zeroblob(?))", (n,))
    db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benches/results/probes.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rows = []
    with tempfile.TemporaryDirectory(prefix="rtgov-probes-") as tmp:
        for mode in MEMORY_MODES:
            meter = Meter(make_probe(mode, capture_dir=Path(tmp) / mode))
            number = 20 if mode == "memray" else 20000

            def empty(meter: Meter = meter) -> None:
                meter.close(meter.open())

            costs = [timeit.timeit(empty, number=number) / number * 1e6 for _ in range(7)]
            region = meter.open()
            a = np.ones(64 * MIB, dtype=np.uint8)
            del a
            numpy_peak = meter.close(region)["peak_memory_bytes"]
            region = meter.open()
            _native_alloc(64 * MIB)
            native_peak = meter.close(region)["peak_memory_bytes"]
            rows.append(
                {
                    "mode": mode,
                    "region_us_median": round(statistics.median(costs), 2),
                    "region_us_all": [round(c, 2) for c in costs],
                    "numpy_64MiB_seen_MiB": None
                    if numpy_peak is None
                    else round(numpy_peak / MIB, 2),
                    "native_64MiB_seen_MiB": None
                    if native_peak is None
                    else round(native_peak / MIB, 2),
                }
            )
    result = {
        "benchmark": "probes",
        "command": "python benches/probes.py " + " ".join(sys.argv[1:]),
        "wall_s": round(time.perf_counter() - started, 2),
        "maxrss_delta_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    for row in rows:
        print(
            f"{row['mode']:12s} {row['region_us_median']:10.2f} us/region  numpy 64 MiB seen: "
            f"{row['numpy_64MiB_seen_MiB']}  native 64 MiB seen: "
            f"{row['native_64MiB_seen_MiB']}"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
