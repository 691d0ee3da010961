"""Cost of the tamper-evident ledger: appending, opening, and ``verify_all``.

Measures, each configuration repeated (median, min and max reported):

- ``append``: ``LedgerAppender.append`` as shipped (one write, flush and fsync per
  record) of canonical-JSON test leaves, per record;
- ``append_session``: a whole session of 500 leaves through ``append_session``,
  checkpoint signature included, onto a ledger that already holds earlier sessions;
- ``open``: a writer opening an existing ledger of N leaves (it rescans the log);
- ``verify``: ``verify_all`` over ledgers of N leaves with one signed checkpoint, in a
  fresh process per run: wall time, and the peak resident set above the level after
  imports (``VmHWM`` after resetting it through ``/proc/self/clear_refs``), plus one
  extra run under tracemalloc for Python's own peak;
- the floors, in fresh processes over the same file's payloads (held in memory, not
  timed): (a) the leaf hashes alone, ``sha256(0x00 || payload)``; (b) the whole
  RFC 9162 tree with bare hashlib, level by level (n leaf and n - 1 node hashes);
- ``verify`` with one checkpoint per session, to show the cost of the consistency
  proofs between successive checkpoints.

The ledgers for ``open`` and ``verify`` are written directly (big buffered writes of
``encode_frame``), not through the fsync-per-record appender. Their leaves are a
realistic session mix from ``run_leaves``: a run header, 180 tests (1 to 3 samples),
12 fixtures, 6 gate results and the verdict per 200-leaf session.

Usage: python benches/ledger.py [--repeats N] [--sizes 10000,100000,1000000] [--out PATH]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _procfs import reset_peak, status_kib

from pytest_rtgov.core.canonical import canonical_json
from pytest_rtgov.core.checkpoints import Checkpoint, format_checkpoint
from pytest_rtgov.core.keys import Signer
from pytest_rtgov.core.ledger_records import genesis_leaf, run_leaves
from pytest_rtgov.core.merkle import MerkleAccumulator
from pytest_rtgov.core.notes import sign_note
from pytest_rtgov.core.records import FixtureEntry, FixtureSetup, RunRecord, Sample, TestEntry
from pytest_rtgov.store.keys import Trust
from pytest_rtgov.store.ledger import MAGIC, Ledger, append_session, encode_frame

ORIGIN = "bench.example/ledger"
CREATED_AT = "2026-11-22T00:00:00Z"
SIGNER_NAME = "bench.example/signer"
SESSION = 200  # leaves per session in the generated ledgers
RUN_MARK = "RUN#########"  # replaced by the session number (same length)
NODE_MARK = "NODE########"  # replaced by the leaf number (same length)


# -- realistic leaves -----------------------------------------------------------------------


def _sample(i: int, warmup: bool = False) -> Sample:
    return Sample(
        wall_ns=1_234_567 + 7919 * i,
        cpu_ns=1_200_000 + 6007 * i,
        peak_memory_bytes=40_960 + 64 * i,
        warmup=warmup,
    )


def test_leaf(i: int, samples: int) -> bytes:
    """One test's leaf as a session writes it, with ``samples`` call rounds."""
    entry = TestEntry(
        nodeid=f"tests/test_kernels.py::test_softmax[float32-{i}]",
        outcome="passed",
        worker="gw0",
        rounds=samples,
        warmup=1 if samples > 1 else 0,
        samples=tuple(_sample(i + k, warmup=k == 0 and samples > 1) for k in range(samples)),
    )
    return canonical_json(
        {"kind": "test", "run_id": "20261122T000000Z-abcdef12", **entry.to_dict()}
    )


def _template_session() -> list[bytes]:
    """One 200-leaf session from ``run_leaves``, with markers for run id and leaf number."""
    leaves = run_leaves(_template_record())
    assert len(leaves) == SESSION, len(leaves)
    return leaves


def _template_record() -> RunRecord:
    """The run record of every generated session (its run id is the marker)."""
    tests = tuple(
        TestEntry(
            nodeid=f"tests/test_mod{n % 9}.py::test_case[{NODE_MARK}]",
            outcome="passed",
            worker=f"gw{n % 2}",
            rounds=1 + n % 3,
            warmup=0,
            samples=tuple(_sample(n + k) for k in range(1 + n % 3)),
        )
        for n in range(180)
    )
    fixtures = tuple(
        FixtureEntry(
            nodeid="",
            name=f"fixture_{NODE_MARK}",
            scope="session",
            param_index=None,
            setups=(
                FixtureSetup("gw0", f"tests/test_mod{n}.py::test_case[0]", "passed", _sample(n)),
            ),
        )
        for n in range(12)
    )
    gates = tuple(
        {
            "subject": f"tests/test_mod{n}.py::test_case[{NODE_MARK}]",
            "metric": "wall_time",
            "method": "ab",
            "threshold": 0.05,
            "effect": 0.0123,
            "ci_low": -0.004,
            "ci_high": 0.021,
            "passed": True,
        }
        for n in range(6)
    )
    return RunRecord(
        run_id=RUN_MARK,
        started_at=CREATED_AT,
        ended_at="2026-11-22T00:01:00Z",
        mode="gate",
        pytest_args=("-q", "tests/"),
        memory_mode="tracemalloc",
        backend="numpy",
        workers=("gw0", "gw1"),
        environment={"python": "3.11.7", "platform": "Linux-x86_64", "numpy": "2.4.6"},
        tests=tests,
        fixtures=fixtures,
        gate_results=gates,
        verdict={"passed": True, "breaches": 0},
    )


def generated_leaves(n: int, start: int = 1):
    """Leaves ``start .. n-1`` of a generated ledger (leaf 0 is the genesis)."""
    template = _template_session()
    run_mark, node_mark = RUN_MARK.encode(), NODE_MARK.encode()
    for i in range(start, n):
        leaf = template[(i - 1) % SESSION]
        leaf = leaf.replace(run_mark, b"%012d" % ((i - 1) // SESSION))
        yield leaf.replace(node_mark, b"%012d" % i)


def signer() -> Signer:
    # A fixed key, so every process of one bench run agrees on the trust.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Signer(SIGNER_NAME, Ed25519PrivateKey.from_private_bytes(b"\x07" * 32))


def trust() -> Trust:
    return Trust(keyring=(signer().verifier(),), local=(), keyring_path=None, required=True)


def build_ledger(state: Path, n: int, *, checkpoint_every: int | None = None) -> dict[str, object]:
    """Write an n-leaf ledger under ``state/ledger`` fast, with signed checkpoints.

    One checkpoint at n, or one at every multiple of ``checkpoint_every`` (and at n)."""
    directory = state / "ledger"
    (directory / "checkpoints").mkdir(parents=True)
    key = signer()
    tree = MerkleAccumulator()
    checkpoints = 0
    payload_bytes = 0

    def checkpoint() -> None:
        nonlocal checkpoints
        checkpoints += 1
        body = format_checkpoint(Checkpoint(ORIGIN, tree.size, tree.root()))
        path = directory / "checkpoints" / f"{checkpoints:010d}.txt"
        path.write_text(sign_note(body, [key]), encoding="utf-8")

    with open(directory / "log", "wb", buffering=1 << 22) as fh:
        fh.write(MAGIC)
        for leaf in _chain([genesis_leaf(ORIGIN, created_at=CREATED_AT)], generated_leaves(n)):
            frame = encode_frame(leaf)
            fh.write(frame)
            payload_bytes += len(leaf)
            tree.append_leaf_hash(frame[8:40])
            if checkpoint_every and tree.size % checkpoint_every == 0 and tree.size < n:
                checkpoint()
    checkpoint()
    # The run record files the verdict leaves name (verify requires them): the template
    # record, whose digest every generated verdict leaf holds.
    (state / "runs").mkdir()
    record = _template_record().canonical_json() + b"\n"
    for session in range((n - 1) // SESSION):
        (state / "runs" / f"{session:012d}.json").write_bytes(record)
    return {
        "leaves": n,
        "checkpoints": checkpoints,
        "payload_bytes": payload_bytes,
        "mean_leaf_bytes": round(payload_bytes / n, 1),
        "file_bytes": (directory / "log").stat().st_size,
        "root": tree.root().hex(),
    }


def _chain(first, rest):
    yield from first
    yield from rest


# -- child processes: one measurement in a fresh interpreter --------------------------------


def _payloads(state: Path) -> list[bytes]:
    from pytest_rtgov.store.ledger import read_frames

    return [f.payload for f in read_frames(state / "ledger" / "log")]


def _floor_leaf(payloads: list[bytes]) -> bytes:
    sha256 = hashlib.sha256
    last = b""
    for p in payloads:
        last = sha256(b"\x00" + p).digest()
    return last


def _floor_tree(payloads: list[bytes]) -> bytes:
    sha256 = hashlib.sha256
    level = [sha256(b"\x00" + p).digest() for p in payloads]
    while len(level) > 1:
        odd = level[-1] if len(level) & 1 else None
        level = [
            sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
        ]
        if odd is not None:  # RFC 9162: an unpaired right node moves up unchanged
            level.append(odd)
    return level[0]


def _floor_stream(payloads: list[bytes]) -> bytes:
    """The same tree streamed with bare hashlib in O(log n) memory, as verify must: the
    level-by-level floor (b) holds every leaf hash at once."""
    sha256 = hashlib.sha256
    pending: list[bytes] = []
    size = 0
    for p in payloads:
        h = sha256(b"\x00" + p).digest()
        s = size
        while s & 1:
            h = sha256(b"\x01" + pending.pop() + h).digest()
            s >>= 1
        pending.append(h)
        size += 1
    root = pending.pop()
    while pending:
        root = sha256(b"\x01" + pending.pop() + root).digest()
    return root


def child(kind: str, state: Path, traced: bool) -> dict[str, object]:
    from pytest_rtgov.store.ledger import read_frames
    from pytest_rtgov.store.verify import verify_all

    payloads = _payloads(state) if kind.startswith("floor") else None
    the_trust = trust()
    gc.collect()
    reset = reset_peak()
    base_kib = status_kib("VmRSS") if reset else status_kib("VmHWM")
    if traced:
        import tracemalloc

        tracemalloc.start()
    start = time.perf_counter()
    result: dict[str, object] = {}
    if kind == "verify":
        report = verify_all(state, the_trust)
        result = {"leaves": report.leaves, "root": report.root.hex()}
    elif kind == "open":
        with Ledger(state / "ledger").append() as appender:
            result = {"leaves": appender.size, "root": appender.root().hex()}
    elif kind == "frames":
        count = 0
        for _ in read_frames(state / "ledger" / "log"):
            count += 1
        result = {"leaves": count}
    elif kind == "frames_tree":
        tree = MerkleAccumulator()
        for frame in read_frames(state / "ledger" / "log"):
            tree.append_leaf_hash(frame.leaf_hash)
        result = {"leaves": tree.size, "root": tree.root().hex()}
    elif kind == "floor_leaf":
        assert payloads is not None
        _floor_leaf(payloads)
        result = {"leaves": len(payloads)}
    elif kind == "floor_tree":
        assert payloads is not None
        result = {"leaves": len(payloads), "root": _floor_tree(payloads).hex()}
    elif kind == "floor_stream":
        assert payloads is not None
        result = {"leaves": len(payloads), "root": _floor_stream(payloads).hex()}
    else:
        raise SystemExit(f"unknown child kind {kind!r}")
    wall = time.perf_counter() - start
    if traced:
        import tracemalloc

        result["tracemalloc_peak_kib"] = round(tracemalloc.get_traced_memory()[1] / 1024, 1)
        tracemalloc.stop()
    result["wall_s"] = wall
    result["peak_rss_delta_kib"] = status_kib("VmHWM") - base_kib
    result["peak_reset"] = reset
    return result


def run_child(kind: str, state: Path, *, traced: bool = False) -> dict[str, object]:
    cmd = [sys.executable, __file__, "--child", kind, "--state", str(state)]
    if traced:
        cmd.append("--traced")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout)


# -- in-process measurements -----------------------------------------------------------------


class _NoFsync:
    """``os`` with ``fsync`` a no-op: isolates the appender's own (CPU) cost."""

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    @staticmethod
    def fsync(fd: int) -> None:
        pass


def bench_append(tmp: Path, records: int, samples: int, *, fsync: bool = True) -> float:
    """Microseconds per ``LedgerAppender.append`` of one test leaf."""
    import pytest_rtgov.store.ledger.writer as ledger_module

    payload = test_leaf(0, samples)
    ledger = Ledger(tmp / f"append-{samples}-{time.monotonic_ns()}")
    if not fsync:
        ledger_module.os = _NoFsync()  # type: ignore[assignment]
    try:
        with ledger.append() as appender:
            appender.append(genesis_leaf(ORIGIN, created_at=CREATED_AT))
            start = time.perf_counter()
            for _ in range(records):
                appender.append(payload)
            wall = time.perf_counter() - start
    finally:
        ledger_module.os = os
    return wall / records * 1e6


def bench_fsync(tmp: Path, records: int, size: int) -> float:
    """Microseconds per bare ``os.write`` + ``os.fsync`` of ``size`` bytes: the disk's floor."""
    path = tmp / f"fsync-{time.monotonic_ns()}"
    data = b"x" * size
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        start = time.perf_counter()
        for _ in range(records):
            os.write(fd, data)
            os.fsync(fd)
        wall = time.perf_counter() - start
    finally:
        os.close(fd)
    return wall / records * 1e6


def bench_session(tmp: Path, existing: int, records: int) -> dict[str, object]:
    state = tmp / f"session-{time.monotonic_ns()}"
    build_ledger(state, existing)
    leaves = list(generated_leaves(existing + records, start=existing))
    key = signer()
    start = time.perf_counter()
    result = append_session(
        Ledger(state / "ledger"), leaves, signer=key, origin=ORIGIN, created_at=CREATED_AT
    )
    wall = time.perf_counter() - start
    assert result is not None and result.size == existing + records
    return {"ms_per_session": wall * 1e3, "us_per_record": wall / records * 1e6}


def bench_sign() -> float:
    key = signer()
    body = format_checkpoint(Checkpoint(ORIGIN, 123456, b"\x01" * 32))
    number = 200
    start = time.perf_counter()
    for _ in range(number):
        sign_note(body, [key])
    return (time.perf_counter() - start) / number * 1e6


# -- driver ----------------------------------------------------------------------------------


def _summary(values: list[float], digits: int = 4) -> dict[str, object]:
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "all": [round(v, digits) for v in values],
    }


def _children(kind: str, state: Path, repeats: int) -> dict[str, Any]:
    runs = [run_child(kind, state) for _ in range(repeats)]
    roots = {r.get("root") for r in runs}
    assert len(roots) == 1, roots
    return {
        "wall_s": _summary([float(r["wall_s"]) for r in runs]),
        "peak_rss_delta_kib": _summary([float(r["peak_rss_delta_kib"]) for r in runs], 0),
        "peak_reset": all(r["peak_reset"] for r in runs),
        "root": roots.pop(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benches/results/ledger.json"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--append-records", type=int, default=2000)
    parser.add_argument("--session-records", type=int, default=500)
    parser.add_argument("--per-session-sizes", default="10000,40000")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.state, args.traced)))
        return 0

    started = time.perf_counter()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    per_session_sizes = [int(s) for s in args.per_session_sizes.split(",") if s]
    result: dict[str, object] = {
        "benchmark": "ledger",
        "command": "python benches/ledger.py " + " ".join(sys.argv[1:]),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "repeats": args.repeats,
    }
    with tempfile.TemporaryDirectory(prefix="rtgov-ledger-bench-") as tmp_name:
        tmp = Path(tmp_name)

        # 1. Appending.
        append_rows = []
        for samples in (2, 7):
            size = len(test_leaf(0, samples)) + 40
            shipped, no_fsync, bare = [], [], []
            for _ in range(args.repeats):  # interleaved: the disk's mood changes by the minute
                shipped.append(bench_append(tmp, args.append_records, samples))
                bare.append(bench_fsync(tmp, args.append_records, size))
                no_fsync.append(bench_append(tmp, args.append_records, samples, fsync=False))
            row = {
                "records": args.append_records,
                "samples_per_test": samples,
                "leaf_bytes": len(test_leaf(0, samples)),
                "us_per_record": _summary(shipped, 1),
                "us_per_record_fsync_stubbed": _summary(no_fsync, 1),
                "us_per_bare_write_fsync": _summary(bare, 1),
            }
            append_rows.append(row)
            print(
                f"append      {samples} samples ({row['leaf_bytes']} B): "
                f"{statistics.median(shipped):.0f} us/record; bare write+fsync "
                f"{statistics.median(bare):.0f} us; without fsync "
                f"{statistics.median(no_fsync):.1f} us",
                flush=True,
            )
        result["append"] = append_rows
        runs = [bench_session(tmp, 2001, args.session_records) for _ in range(args.repeats)]
        sign_us = [bench_sign() for _ in range(args.repeats)]
        result["append_session"] = {
            "existing_leaves": 2001,
            "records": args.session_records,
            "ms_per_session": _summary([float(r["ms_per_session"]) for r in runs], 1),
            "us_per_record": _summary([float(r["us_per_record"]) for r in runs], 1),
            "sign_checkpoint_us": _summary(sign_us, 1),
        }
        print(
            f"append_session {args.session_records} records: "
            f"{result['append_session']['ms_per_session']['median']:.0f} ms "
            f"(sign {statistics.median(sign_us):.0f} us)",
            flush=True,
        )

        # 2 and 3. Open, verify and the floors, per ledger size.
        rows = []
        for n in sizes:
            state = tmp / f"ledger-{n}"
            t0 = time.perf_counter()
            info = build_ledger(state, n)
            info["build_s"] = round(time.perf_counter() - t0, 2)
            row: dict[str, Any] = {**info}
            for kind in (
                "verify",
                "floor_leaf",
                "floor_tree",
                "floor_stream",
                "frames",
                "frames_tree",
                "open",
            ):
                row[kind] = _children(kind, state, args.repeats)
                assert row[kind]["root"] in (None, info["root"]), (kind, row[kind]["root"])
            traced = run_child("verify", state, traced=True)
            row["verify_tracemalloc"] = {
                "wall_s": round(float(traced["wall_s"]), 3),
                "tracemalloc_peak_kib": traced["tracemalloc_peak_kib"],
            }
            wall = {
                kind: row[kind]["wall_s"]
                for kind in ("verify", "floor_leaf", "floor_tree", "floor_stream")
            }
            for floor in ("floor_leaf", "floor_tree", "floor_stream"):
                row[f"verify_over_{floor}"] = {
                    "median": round(wall["verify"]["median"] / wall[floor]["median"], 2),
                    "min": round(wall["verify"]["min"] / wall[floor]["min"], 2),
                }
            rows.append(row)
            print(
                f"n={n:>8}: verify {wall['verify']['median']:.3f} s, "
                f"+{row['verify']['peak_rss_delta_kib']['median']:.0f} KiB RSS, "
                f"tracemalloc {traced['tracemalloc_peak_kib']} KiB; floors "
                f"{wall['floor_leaf']['median']:.3f} / {wall['floor_tree']['median']:.3f} / "
                f"{wall['floor_stream']['median']:.3f} s; "
                f"ratios {row['verify_over_floor_leaf']['median']} / "
                f"{row['verify_over_floor_tree']['median']} / "
                f"{row['verify_over_floor_stream']['median']}; "
                f"open {row['open']['wall_s']['median']:.3f} s",
                flush=True,
            )
            for path in sorted((state / "ledger").rglob("*"), reverse=True):
                path.unlink() if path.is_file() else path.rmdir()
        result["verify"] = rows

        # Checkpoints: one per session versus one in all.
        cp_rows = []
        for n in per_session_sizes:
            for every in (None, SESSION):
                state = tmp / f"cp-{n}-{every}"
                info = build_ledger(state, n, checkpoint_every=every)
                runs = [run_child("verify", state) for _ in range(args.repeats)]
                cp_row: dict[str, Any] = {
                    "leaves": n,
                    "checkpoints": info["checkpoints"],
                    "wall_s": _summary([float(r["wall_s"]) for r in runs]),
                }
                cp_rows.append(cp_row)
                print(
                    f"n={n:>8}, {info['checkpoints']:>4} checkpoints: verify "
                    f"{cp_row['wall_s']['median']:.3f} s",
                    flush=True,
                )
        result["checkpoints"] = cp_rows

    result["wall_s"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out} ({result['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
