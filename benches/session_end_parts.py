"""What the session end costs per test, part by part, in one process.

Runs one real session of N trivial tests (``--rtgov --rtgov-memory=off``) in a
temporary directory, loads its run record, then times each per-test part of what a
session end does with that record, best of ``--repeats`` (garbage collected before
each): encoding the record, making the ledger leaves and their frames, the
observations, adding them to the delta index, the report's context and its rows. Also
the two signature operations the ledger does per checkpoint: signing one, and opening
(verifying) one, which is what ``rtgov verify`` pays per checkpoint.

Usage: python benches/session_end_parts.py [--tests 2000] [--repeats 5]
       [--out benches/results/session_end_parts.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pytest_rtgov.core.checkpoints import Checkpoint, format_checkpoint
from pytest_rtgov.core.delta_index import DeltaIndex, observations_of, run_info
from pytest_rtgov.core.keys import generate_signer
from pytest_rtgov.core.ledger_records import run_leaves
from pytest_rtgov.core.notes import open_note, sign_note
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.report.html import render_report, report_context, rows_html
from pytest_rtgov.store.ledger import encode_frame


def best(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def session_record(root: Path, tests: int) -> RunRecord:
    (root / "test_trivial.py").write_text(
        f"import pytest\n\n@pytest.mark.parametrize('i', range({tests}))\n"
        "def test_trivial(i):\n    assert i >= 0\n"
    )
    state = root / "state"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rtgov",
         "--rtgov-memory=off", f"--rtgov-dir={state}"],
        cwd=root, check=True, capture_output=True,
    )  # fmt: skip
    run_id = (state / "latest").read_text().strip()
    return RunRecord.from_dict(json.loads((state / "runs" / f"{run_id}.json").read_text()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benches/results/session_end_parts.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rtgov-parts-") as tmp:
        record = session_record(Path(tmp), args.tests)
    n = len(record.tests)
    encoded = record.canonical_json()
    leaves = run_leaves(record, encoded=encoded)
    observations = observations_of(record)
    context = report_context(record, observations=observations)
    render_report(context)  # the template compiles once per process
    parts: dict[str, Callable[[], object]] = {
        "record canonical JSON": record.canonical_json,
        "ledger leaves": lambda: run_leaves(record, encoded=encoded),
        "ledger frames": lambda: [encode_frame(leaf) for leaf in leaves],
        "observations": lambda: observations_of(record),
        "delta index add_run": lambda: DeltaIndex().add_run(run_info(record), observations),
        "report context": lambda: report_context(record, observations=observations),
        "report rows": lambda: rows_html(context["rows"]),
        "report render (rows included)": lambda: render_report(context),
    }
    per_test = {name: round(best(fn, args.repeats) / n * 1e6, 2) for name, fn in parts.items()}
    signer = generate_signer("bench.example/parts")
    body = format_checkpoint(Checkpoint("bench.example/log", 123456, b"\1" * 32))
    signed = sign_note(body, [signer])
    verifiers = [signer.verifier()]
    calls = 500
    signature_us = {
        "sign_note": round(best(lambda: [sign_note(body, [signer]) for _ in range(calls)],
                                args.repeats) / calls * 1e6, 1),
        "open_note (verify)": round(best(lambda: [open_note(signed, verifiers)
                                                  for _ in range(calls)],
                                         args.repeats) / calls * 1e6, 1),
    }  # fmt: skip
    result = {
        "benchmark": "session_end_parts",
        "command": "python benches/session_end_parts.py " + " ".join(sys.argv[1:]),
        "tests": n,
        "repeats": args.repeats,
        "us_per_test": per_test,
        "us_per_checkpoint_signature": signature_us,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    for name, us in per_test.items():
        print(f"{name:32s} {us:7.2f} us/test")
    for name, us in signature_us.items():
        print(f"{name:32s} {us:7.1f} us/checkpoint")
    return 0


if __name__ == "__main__":
    sys.exit(main())
