"""Scale of the delta index and the experiment graph: 10,000 runs x 200 observations.

A synthetic history, built deterministically from a seeded ``numpy.random.Generator``
(one generator per run, seeded with ``[seed, run]``): 10,000 runs whose commit changes
every ~20 runs (a few dirty), on two environments (plus an odd run on a third), each
with 200 observations over 50 subjects x 4 metrics: ``wall_time`` (median and quartiles
of 7 samples), ``peak_memory``, a recorded ``accuracy``, and ``cpu_time`` or, for five
subjects, a digest string (an artifact, the dataset digest, output digests). 35 rows a
run carry a gate's baseline value and verdict. One subject's ``wall_time`` steps up by
40% at run 7,300 and breaches from then on (and breached twice, briefly, at run 3,000),
so ``first_regression`` has something to find. 49 baseline refreshes.

Measured, each repeated (median, min and max), in fresh processes: wall time and the
peak resident set above the level just before the measured call (``VmHWM`` after
resetting it through ``/proc/self/clear_refs``), plus one extra run under tracemalloc
for Python's own peak:

- ``build``: the ``add_run`` loop over the 2,000,000 observations and the first
  ``column()`` (the flush into numpy); generating the observations is timed apart;
- ``save``: that index written whole into a new sqlite file (what a rebuild writes),
  tied to a small real ledger with a signed checkpoint; ``load``: ``DeltaIndexStore.load()``
  (the CLI's call: content digest, checkpoint signature, ledger size and root checked);
- ``append``: a session's upkeep: one more run appended to the ledger, then ``load`` from
  memory (the session's report) or reading the new frames (the next command);
- queries on a freshly loaded index, first call in the process (warm repeats apart):
  compare two runs (``run_values`` twice and ``compare_values``), ``series``,
  ``first_regression``, ``top_regressions``;
- ``build_graph`` with the latest run's observations (the CLI default) and with none,
  node and edge counts, and ``write_graphml`` of the former (time, file size);
- ``build_graph`` with the observations of 500 runs (100,000 observation nodes),
  extrapolated linearly to all 10,000 runs: that graph is too big to build;
- the CLI cold path, ``rtgov compare A B --format json`` and ``rtgov graph query series``
  (wall time and the child's peak RSS from ``wait4``), against ``rtgov --help``.

Usage: python benches/graph.py [--runs 10000] [--repeats 3] [--seed N] [--out PATH]
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from _procfs import reset_peak, status_kib

from pytest_rtgov.core.delta_index import BaselineEvent, DeltaIndex, Observation, RunInfo
from pytest_rtgov.core.fingerprint import fingerprint

SEED = 20261122
SUBJECTS = 50
PLANTED_SUBJECT = 17  # its wall_time steps up at PLANT_RUN and breaches from then on
PLANT_STEP = 1.4
PLANT_FRACTION = 0.73  # run 7,300 of 10,000
BLIP_FRACTION = 0.30  # two breaching runs at 3,000, then passing again
BASELINE_EVERY = 200  # runs between baseline refreshes: 50 of them
GATED_WALL = 20  # subjects 0..19: wall_time gated (A/B against the baseline)
GATED_MEMORY = 10  # subjects 0..9: peak_memory gated
GATED_ACCURACY = range(40, 45)  # accuracy gated
DIGESTS = {0: "artifact:model", 10: "dataset_digest", 20: "output_digest"}
EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z
MIB = 1 << 20


# -- the synthetic history -------------------------------------------------------------------


def subject_name(i: int) -> str:
    if i >= 45:
        return f"fixture:tests/conftest.py::data_{i - 45}"
    return f"tests/test_kernels.py::test_kernel[k{i:02d}]"


def _environment(machine: int, numpy_version: str) -> dict[str, str]:
    return {
        "backend": "numpy",
        "blas": "scipy-openblas 0.3.31",
        "cpu_count": "2",
        "cpu_model": ["AMD EPYC 7B13", "Intel Xeon 8375C"][machine],
        "env.MKL_NUM_THREADS": "",
        "env.OMP_NUM_THREADS": "",
        "env.OPENBLAS_CORETYPE": "",
        "env.OPENBLAS_NUM_THREADS": "1",
        "gpu": "",
        "hostname": f"ci-runner-{machine}",
        "implementation": "CPython",
        "machine": "x86_64",
        "numpy": numpy_version,
        "os": "Linux-6.8.0-x86_64",
        "pytest": "8.4.2",
        "pytest_plugins": "rtgov-0.1.0, xdist-3.8.0",
        "python": "3.11.7",
        "rtgov": "0.1.0",
    }


class History:
    """The synthetic history: run-level facts drawn up front, observations per run."""

    def __init__(self, runs: int, seed: int) -> None:
        self.n = runs
        self.seed = seed
        master = np.random.default_rng(seed)
        self.commit_of = np.cumsum(master.random(runs) < 1 / 20)
        self.dirty = master.random(runs) < 0.003
        self.plant = int(runs * PLANT_FRACTION)
        self.blip = int(runs * BLIP_FRACTION)
        self.base_wall = 1e-3 * master.lognormal(0.0, 1.0, SUBJECTS)
        self.base_mem = np.round(master.uniform(1, 64, SUBJECTS) * MIB)
        self.base_acc = np.round(master.uniform(0.85, 0.95, SUBJECTS), 4)
        self.envs = [
            _environment(0, "2.3.5"),
            _environment(0, "2.4.6"),  # from 40% of the history on: numpy upgraded
            _environment(1, "2.4.6"),  # an odd run on another machine
        ]
        self.fingerprints = [fingerprint(env) for env in self.envs]
        self.dataset = "sha256:" + hashlib.sha256(b"dataset").hexdigest()
        self.leaves_per_run = 1 + SUBJECTS + 35 + 1  # header, subjects, gates, verdict
        self.subjects = [subject_name(i) for i in range(SUBJECTS)]

    def run_id(self, r: int) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(EPOCH + 900 * r))
        return f"{stamp}-{(r * 2654435761) % (1 << 24):06x}"

    def commit(self, r: int) -> str:
        return hashlib.sha1(f"commit {self.commit_of[r]}".encode()).hexdigest()

    def env_of(self, r: int) -> int:
        if r % 997 == 996:
            return 2
        return 0 if r < int(self.n * 0.4) else 1

    def leaf(self, r: int) -> int:
        """Ledger index of run ``r``'s verdict leaf (baseline refreshes in between)."""
        return 1 + (r + 1) * self.leaves_per_run - 1 + r // BASELINE_EVERY

    def observations(self, r: int) -> tuple[list[Observation], bool]:
        rng = np.random.default_rng([self.seed, r])
        noise = rng.normal(0.0, 0.02, SUBJECTS)
        spread = np.abs(rng.normal(0.0, 0.01, (2, SUBJECTS)))
        by_commit = np.random.default_rng([self.seed, int(self.commit_of[r]), 1])
        acc = (self.base_acc + np.round(by_commit.normal(0.0, 0.002, SUBJECTS), 4)).tolist()
        wall = (self.base_wall * (1 + noise)).tolist()
        lo, hi = (1 - spread[0]).tolist(), (1 + spread[1]).tolist()
        mem = self.base_mem.tolist()
        commit = self.commit(r)
        nan = float("nan")
        breached = False
        out: list[Observation] = []
        for i, subject in enumerate(self.subjects):
            w, verdict = wall[i], "pass"
            if i == PLANTED_SUBJECT:
                if r >= self.plant:
                    w, verdict = w * PLANT_STEP, "breach"
                elif self.blip <= r < self.blip + 2:
                    verdict = "breach"  # a noisy breach that went away
            gated_wall = i < GATED_WALL
            breached = breached or (gated_wall and verdict == "breach")
            rows = [
                Observation(
                    subject,
                    "accuracy",
                    acc[i],
                    acc[i],
                    acc[i],
                    None,
                    self.base_acc[i] if i in GATED_ACCURACY else nan,
                    "pass" if i in GATED_ACCURACY else "",
                    "accuracy_min" if i in GATED_ACCURACY else "",
                    1,
                ),
                Observation(
                    subject,
                    "peak_memory",
                    mem[i],
                    mem[i],
                    mem[i],
                    None,
                    mem[i] if i < GATED_MEMORY else nan,
                    "pass" if i < GATED_MEMORY else "",
                    "peak_memory_abs" if i < GATED_MEMORY else "",
                    7,
                ),
                Observation(
                    subject,
                    "wall_time",
                    w,
                    w * lo[i],
                    w * hi[i],
                    None,
                    self.base_wall[i] if gated_wall else nan,
                    verdict if gated_wall else "",
                    "wall_time_ab" if gated_wall else "",
                    7,
                ),
            ]
            metric = DIGESTS.get(i) or ("output_digest" if i % 10 == 0 else None)
            if metric is None:
                c = wall[i] * 0.97
                rows.append(Observation(subject, "cpu_time", c, c * lo[i], c * hi[i], n=7))
            else:
                text = self.dataset
                if metric != "dataset_digest":
                    text = "sha256:" + hashlib.sha256(f"{commit}{subject}".encode()).hexdigest()
                rows.append(Observation(subject, metric, text=text))
            rows.sort(key=lambda o: o.metric)
            out.extend(rows)
        return out, breached

    def info(self, r: int, breached: bool) -> RunInfo:
        run_id = self.run_id(r)
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(EPOCH + 900 * r))
        commit, dirty = self.commit(r), bool(self.dirty[r])
        diff = hashlib.sha256(f"diff {r}".encode()).hexdigest() if dirty else ""
        e = self.env_of(r)
        prov = {
            "run_id": run_id,
            "started_at": started,
            "git": {"commit": commit, "branch": "main", "dirty": dirty, "diff_sha256": diff},
            "fingerprint": self.fingerprints[e],
            "backend": "numpy",
            "environment": self.envs[e],
            "seeds": {"data_seed": 1234.0},
            "dataset_digests": {"dataset_digest": self.dataset},
            "pytest_args": ["--rtgov", "--rtgov-gate", "-n", "2"],
        }
        return RunInfo(
            run_id=run_id,
            started_at=started,
            commit=commit,
            branch="main",
            dirty=dirty,
            diff_sha256=diff,
            fingerprint=self.fingerprints[e],
            backend="numpy",
            status="breached" if breached else "passed",
            exit_status=1 if breached else 0,
            provenance=prov,
        )

    def runs(self) -> Iterator[tuple[RunInfo, list[Observation], int]]:
        for r in range(self.n):
            observations, breached = self.observations(r)
            yield self.info(r, breached), observations, self.leaf(r)

    def baselines(self) -> list[BaselineEvent]:
        events = []
        for k, r in enumerate(range(BASELINE_EVERY - 1, self.n - 1, BASELINE_EVERY)):
            events.append(
                BaselineEvent(
                    sequence=k + 1,
                    leaf_index=self.leaf(r) + 1,
                    at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(EPOCH + 900 * r + 60)),
                    who="release-bot",
                    reason=f"refresh {k + 1}",
                    run_id=self.run_id(r) if k % 2 else "",
                    fingerprint=self.fingerprints[self.env_of(r)],
                    changes=35,
                    seal_sha256=hashlib.sha256(f"seal {k}".encode()).hexdigest(),
                )
            )
        return events


def build_index(history: History) -> tuple[DeltaIndex, dict[str, float]]:
    """The index, and the time spent in ``add_run``, in generating, and in the flush."""
    index = DeltaIndex()
    add = gen = 0.0
    t = time.perf_counter()
    for r in range(history.n):
        observations, breached = history.observations(r)
        info = history.info(r, breached)
        t1 = time.perf_counter()
        gen += t1 - t
        index.add_run(info, observations, leaf_index=history.leaf(r))
        t = time.perf_counter()
        add += t - t1
    for event in history.baselines():
        index.add_baseline(event)
    t1 = time.perf_counter()
    index.column("run")
    flush = time.perf_counter() - t1
    return index, {"add_run_s": add, "generate_s": gen, "flush_s": flush}


# -- child processes: one measurement in a fresh interpreter --------------------------------


class Peak:
    """Peak RSS (and optionally tracemalloc's peak) of a block, above its start."""

    def __init__(self, traced: bool) -> None:
        self.traced = traced

    def __enter__(self) -> Peak:
        gc.collect()
        self.reset = reset_peak()
        self.base = status_kib("VmRSS") if self.reset else status_kib("VmHWM")
        if self.traced:
            import tracemalloc

            tracemalloc.start()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self.start
        self.result: dict[str, Any] = {"wall_s": self.wall_s, "peak_reset": self.reset}
        if self.traced:
            import tracemalloc

            self.result["tracemalloc_peak_kib"] = round(
                tracemalloc.get_traced_memory()[1] / 1024, 1
            )
            tracemalloc.stop()
        self.result["peak_rss_delta_kib"] = status_kib("VmHWM") - self.base
        self.result["retained_rss_delta_kib"] = status_kib("VmRSS") - self.base


def _load(state: Path) -> DeltaIndex:
    from pytest_rtgov.store.delta_index import DeltaIndexStore

    return DeltaIndexStore(state).load(update=False)


def _meta_row(state: Path) -> str:
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(state / "index" / "index.sqlite3")) as conn:
        return str(conn.execute("SELECT value FROM meta").fetchone()[0])


def _dir_kib(path: Path) -> dict[str, float]:
    return {p.name: round(p.stat().st_size / 1024, 1) for p in sorted(path.iterdir())}


def _ledger_position(state: Path) -> dict[str, Any]:
    """A real ledger for the synthetic index to stand at: its genesis and one leaf under
    a checkpoint signed with the state's local key (the index's check reads this
    checkpoint; the content of the leaves does not matter to it). The meta position."""
    from pytest_rtgov.core.ledger_records import baseline_refresh_leaf
    from pytest_rtgov.core.merkle import MerkleAccumulator
    from pytest_rtgov.store.delta_index.codec import _fresh_meta
    from pytest_rtgov.store.keys import load_signing_key
    from pytest_rtgov.store.ledger import Ledger, append_session

    ledger = Ledger(state / "ledger")
    signer = load_signing_key(key_file=None, state_dir=state).signer
    leaf = baseline_refresh_leaf({"at": "t", "who": "bench", "changes": []}, seal_sha256="x")
    append_session(ledger, [leaf], signer=signer, origin="bench/graph", created_at="t")
    tree = MerkleAccumulator()
    end = 0
    for frame in ledger.frames():
        tree.append_leaf_hash(frame.leaf_hash)
        end = frame.end
    return {
        **_fresh_meta(),
        "leaves": tree.size,
        "offset": end,
        "compact": [h.hex() for h in tree.compact_range()],
        "root": tree.root().hex(),
    }


def child_build(state: Path, runs: int, seed: int, traced: bool, save: bool) -> dict[str, Any]:
    from pytest_rtgov.store.delta_index import DeltaIndexStore

    history = History(runs, seed)
    with Peak(traced) as peak:
        index, parts = build_index(history)
    out = {**peak.result, **parts, "rows": index.rows, "runs": len(index.runs)}
    out["columns_kib"] = round(sum(index.column(name).nbytes for name in index._columns) / 1024, 1)
    if save:
        store = DeltaIndexStore(state)
        position = _ledger_position(state)
        saves = []
        for _ in range(3):  # the whole index into a new file, as a rebuild writes it
            with Peak(False) as p:
                store._replace(index, dict(position), None)
            saves.append(p.result)
        out["saves"] = saves
        out["files_kib"] = _dir_kib(store.directory)
    return out


def child_load(state: Path, traced: bool, how: str) -> dict[str, Any]:
    from pytest_rtgov.store.delta_index import DeltaIndexStore

    store = DeltaIndexStore(state)
    with Peak(traced) as peak:
        index = store.load()
    return {**peak.result, "rows": index.rows, "runs": len(index.runs)}


def child_append(state: Path, traced: bool, how: str) -> dict[str, Any]:
    """A session's upkeep of the index at this scale: one more run (the record of
    ``fixtures/records/run-v1.json``, 6 leaves) appended to the ledger, then the index
    brought up to date from memory (``memory``, what the session's report does) or by
    reading the new frames (``ledger``, what the next command does otherwise)."""
    import dataclasses

    from pytest_rtgov.core.ledger_records import run_leaves
    from pytest_rtgov.core.records import RunRecord
    from pytest_rtgov.store.delta_index import Appended, DeltaIndexStore
    from pytest_rtgov.store.keys import load_signing_key
    from pytest_rtgov.store.ledger import Ledger, append_session

    fixture = Path(__file__).parents[1] / "fixtures" / "records" / "run-v1.json"
    record = RunRecord.from_dict(json.loads(fixture.read_text()))
    record = dataclasses.replace(record, run_id=f"29991231T{time.time_ns() % 10**6:06d}Z-bench")
    leaves = run_leaves(record)
    signer = load_signing_key(key_file=None, state_dir=state).signer
    done = append_session(
        Ledger(state / "ledger"), leaves, signer=signer, origin="bench/graph", created_at="t"
    )
    assert done is not None
    appended = Appended(record, leaves, done.first_index) if how == "memory" else None
    with Peak(traced) as peak:
        index = DeltaIndexStore(state).load(appended=appended)
    assert index.runs[-1].run_id == record.run_id
    return {**peak.result, "rows": index.rows, "runs": len(index.runs)}


def _queries(index: DeltaIndex, history: History) -> dict[str, Callable[[], Any]]:
    from pytest_rtgov.core.compare import compare_values

    a, b = history.run_id(history.plant - 50), history.run_id(history.plant + 50)
    subject = subject_name(PLANTED_SUBJECT)
    latest = index.runs[-1].run_id

    def compare() -> Any:
        rows = compare_values(index.run_values(a), index.run_values(b))
        return [(r.subject, r.metric) for r in rows if r.changed]

    return {
        "compare": compare,
        "series": lambda: index.series(subject, "wall_time"),
        "first_regression": lambda: index.first_regression(subject, "wall_time"),
        "top_regressions": lambda: index.top_regressions(latest, 10),
    }


def _check(name: str, value: Any, history: History) -> dict[str, Any]:
    subject = subject_name(PLANTED_SUBJECT)
    if name == "compare":  # digests and accuracies follow the commit; times must not move
        moved = [key for key in value if key[1] in ("wall_time", "cpu_time", "peak_memory")]
        return {"changed": len(value), "moved": moved, "ok": moved == [(subject, "wall_time")]}
    if name == "series":
        return {"points": len(value), "ok": len(value) == history.n}
    if name == "first_regression":
        found = value["first_bad"].run_id if value else None
        good = value["last_good"].run_id if value else None
        return {
            "first_bad": found,
            "last_good": good,
            "bad_runs": value and value["bad_runs"],
            "expected_first_bad": history.run_id(history.plant),
            "ok": found == history.run_id(history.plant),
        }
    top = value[0] if value else {}
    return {
        "top": [top.get("subject"), top.get("metric"), top.get("verdict")],
        "rows": len(value),
        "ok": top.get("subject") == subject and top.get("verdict") == "breach",
    }


def child_queries(state: Path, runs: int, seed: int, traced: bool) -> dict[str, Any]:
    history = History(runs, seed)
    index = _load(state)
    out = {}
    for name, query in _queries(index, history).items():
        with Peak(traced) as peak:
            value = query()
        warm = []
        for _ in range(5):
            t = time.perf_counter()
            query()
            warm.append(time.perf_counter() - t)
        out[name] = {**peak.result, "warm_s": warm, **_check(name, value, history)}
    return out


def child_graph(state: Path, traced: bool, how: str, graphml: Path | None) -> dict[str, Any]:
    import networkx as nx

    from pytest_rtgov.core.graph import build_graph

    index = _load(state)
    if how == "latest":
        runs = [index.runs[-1].run_id]
    elif how == "none":
        runs = []
    else:
        runs = [info.run_id for info in index.runs[-int(how) :]]
    with Peak(traced) as peak:
        graph = build_graph(index, observations_for=runs)
    kinds: dict[str, int] = {}
    for _, kind in graph.nodes(data="kind"):
        kinds[kind] = kinds.get(kind, 0) + 1
    out = {
        **peak.result,
        "observation_runs": len(runs),
        "nodes": graph.number_of_nodes(),
        "edges": graph.number_of_edges(),
        "node_kinds": dict(sorted(kinds.items())),
    }
    if graphml is not None:
        with Peak(False) as p:
            nx.write_graphml(graph, graphml)
        out["graphml"] = {**p.result, "bytes": graphml.stat().st_size}
        graphml.unlink()
    return out


def run_child(args: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout)


def cli(argv: list[str], state: Path) -> dict[str, Any]:
    """One ``rtgov`` command in a fresh process: wall time, its peak RSS, what it said."""
    exe = Path(sys.executable).with_name("rtgov")
    with tempfile.TemporaryFile() as out:
        t = time.perf_counter()
        proc = subprocess.Popen([str(exe), "--dir", str(state), *argv], stdout=out)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode()
    return {"wall_s": wall, "maxrss_kib": usage.ru_maxrss, "rc": proc.returncode, "out": text}


# -- the parent ------------------------------------------------------------------------------


def stats(values: list[float], digits: int = 4) -> dict[str, Any]:
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "all": [round(v, digits) for v in values],
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out = {
        "wall_s": stats([r["wall_s"] for r in rows]),
        "peak_rss_delta_kib": stats([r["peak_rss_delta_kib"] for r in rows], 0),
        "retained_rss_delta_kib": stats([r["retained_rss_delta_kib"] for r in rows], 0),
    }
    if all("warm_s" in r for r in rows):
        out["warm_s"] = stats([w for r in rows for w in r["warm_s"]], 5)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--sample-runs", type=int, default=500, help="for the extrapolation")
    parser.add_argument("--out", type=Path, default=Path("benches/results/graph.json"))
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "build":
            result = child_build(args.state, args.runs, args.seed, args.traced, rest == ["save"])
        elif kind == "load":
            result = child_load(args.state, args.traced, rest[0])
        elif kind == "append":
            result = child_append(args.state, args.traced, rest[0])
        elif kind == "queries":
            result = child_queries(args.state, args.runs, args.seed, args.traced)
        elif kind == "graph":
            graphml = Path(rest[1]) if len(rest) > 1 else None
            result = child_graph(args.state, args.traced, rest[0], graphml)
        else:
            raise SystemExit(f"unknown child {kind!r}")
        print(json.dumps(result))
        return 0

    started = time.perf_counter()
    common = ["--runs", str(args.runs), "--seed", str(args.seed)]
    history = History(args.runs, args.seed)
    result: dict[str, Any] = {
        "benchmark": "graph",
        "command": "python benches/graph.py " + " ".join(sys.argv[1:]),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "seed": args.seed,
        "runs": args.runs,
        "observations_per_run": 4 * SUBJECTS,
        "planted": {
            "subject": subject_name(PLANTED_SUBJECT),
            "metric": "wall_time",
            "step": PLANT_STEP,
            "from_run": history.plant,
            "from_run_id": history.run_id(history.plant),
        },
        "baseline_events": len(history.baselines()),
        "repeats": args.repeats,
        "loadavg_at_start": os.getloadavg(),
        "memory": "peak_rss_delta_kib: VmHWM above VmRSS at the start of the measured call, "
        "after resetting the peak via /proc/self/clear_refs; retained_rss_delta_kib: VmRSS "
        "after it; tracemalloc_peak_kib: one extra traced run",
    }
    import networkx

    result["networkx"] = networkx.__version__
    with tempfile.TemporaryDirectory(prefix="rtgov-graph-") as tmp:
        state = Path(tmp) / ".rtgov"
        sargs = ["--state", str(state), *common]

        def step(name: str, child: list[str], extra: list[str] | None = None) -> list[dict]:
            rows = []
            for i in range(args.repeats):
                first = extra if extra and i == 0 else []
                rows.append(run_child([*child, *first, *sargs]))
                print(f"  {name} {i + 1}/{args.repeats}: {rows[-1].get('wall_s', '')}")
            return rows

        print("build (each builds the whole index; the first also saves it)")
        builds = step("build", ["build"], ["save"])
        traced = run_child(["build", *sargs, "--traced"])
        saves = builds[0].pop("saves")
        result["build"] = {
            **summarise(builds),
            "add_run_s": stats([b["add_run_s"] for b in builds]),
            "flush_s": stats([b["flush_s"] for b in builds]),
            "generate_s": stats([b["generate_s"] for b in builds]),
            "rows": builds[0]["rows"],
            "columns_kib": builds[0]["columns_kib"],
            "tracemalloc_peak_kib": traced["tracemalloc_peak_kib"],
            "traced_wall_s": round(traced["wall_s"], 3),
        }
        result["save"] = {**summarise(saves), "files_kib": builds[0]["files_kib"]}

        print("load")
        rows = step("load", ["load", "load"])
        traced = run_child(["load", "load", *sargs, "--traced"])
        result["load"] = {**summarise(rows), "tracemalloc_peak_kib": traced["tracemalloc_peak_kib"]}
        result["load"]["rows"] = rows[0]["rows"]

        print("queries")
        rows = step("queries", ["queries"])
        traced = run_child(["queries", *sargs, "--traced"])
        result["queries"] = {}
        for name in rows[0]:
            per = [r[name] for r in rows]
            measured = ("wall_s", "warm_s", "peak_reset", "peak_rss_delta_kib")
            measured += ("retained_rss_delta_kib", "tracemalloc_peak_kib")
            checks = {k: v for k, v in per[0].items() if k not in measured}
            result["queries"][name] = {
                **summarise(per),
                "tracemalloc_peak_kib": traced[name]["tracemalloc_peak_kib"],
                **checks,
            }

        print("graphs")
        result["graph"] = {}
        graphml = Path(tmp) / "graph.graphml"
        for how in ("latest", "none", str(args.sample_runs)):
            extra = [str(graphml)] if how == "latest" else []
            rows = step(f"graph {how}", ["graph", how], extra)
            traced = run_child(["graph", how, *sargs, "--traced"])
            entry = {
                **summarise(rows),
                "tracemalloc_peak_kib": traced["tracemalloc_peak_kib"],
                "traced_retained_rss_delta_kib": traced["retained_rss_delta_kib"],
            }
            for key in ("observation_runs", "nodes", "edges", "node_kinds"):
                entry[key] = rows[0][key]
            if how == "latest":
                entry["write_graphml"] = {
                    "wall_s": round(rows[0]["graphml"]["wall_s"], 3),
                    "bytes": rows[0]["graphml"]["bytes"],
                    "peak_rss_delta_kib": rows[0]["graphml"]["peak_rss_delta_kib"],
                }
            result["graph"][how] = entry
        sample, bare = result["graph"][str(args.sample_runs)], result["graph"]["none"]
        factor = args.runs / args.sample_runs
        extra_obs = sample["nodes"] - bare["nodes"]
        result["graph"]["all_extrapolated"] = {
            "what": f"LINEAR EXTRAPOLATION from {args.sample_runs} runs' observations to all "
            f"{args.runs}: (sample - none) x {factor:g} + none; not measured",
            "nodes": round(bare["nodes"] + extra_obs * factor),
            "edges": round(bare["edges"] + (sample["edges"] - bare["edges"]) * factor),
            "wall_s": round(
                bare["wall_s"]["median"]
                + (sample["wall_s"]["median"] - bare["wall_s"]["median"]) * factor,
                1,
            ),
            "retained_rss_delta_kib": round(
                bare["retained_rss_delta_kib"]["median"]
                + (
                    sample["retained_rss_delta_kib"]["median"]
                    - bare["retained_rss_delta_kib"]["median"]
                )
                * factor
            ),
            "peak_rss_delta_kib": round(
                bare["peak_rss_delta_kib"]["median"]
                + (sample["peak_rss_delta_kib"]["median"] - bare["peak_rss_delta_kib"]["median"])
                * factor
            ),
            "retained_bytes_per_extra_node": round(
                (
                    sample["retained_rss_delta_kib"]["median"]
                    - bare["retained_rss_delta_kib"]["median"]
                )
                * 1024
                / extra_obs
            ),
        }

        print("CLI")
        a, b = history.run_id(history.plant - 50), history.run_id(history.plant + 50)
        (state / "runs").mkdir()
        for run_id in (a, b):  # RunStore.resolve globs runs/*.json; it reads no record
            (state / "runs" / f"{run_id}.json").write_text("{}\n")
        subject = subject_name(PLANTED_SUBJECT)
        commands = {
            "help": ["--help"],
            "compare": ["compare", a, b, "--format", "json"],
            "series": ["graph", "query", "series", subject, "wall_time"],
            "first_regression": ["graph", "query", "first-regression", subject, "wall_time"],
        }
        meta_before = _meta_row(state)
        result["cli"] = {}
        for name, argv in commands.items():
            rows = [cli(argv, state) for _ in range(args.repeats)]
            print(f"  rtgov {' '.join(argv)}: {[round(r['wall_s'], 3) for r in rows]}")
            entry: dict[str, Any] = {
                "argv": ["rtgov", "--dir", "<state>", *argv],
                "wall_s": stats([r["wall_s"] for r in rows]),
                "maxrss_kib": stats([r["maxrss_kib"] for r in rows], 0),
                "rc": [r["rc"] for r in rows],
            }
            text = rows[0]["out"]
            if name == "compare":
                doc = json.loads(text)
                entry["said"] = {k: doc[k] for k in ("a", "b", "comparable", "changed", "total")}
            elif name != "help":
                lines = text.splitlines()
                entry["said"] = {"lines": len(lines), "first": lines[0] if lines else ""}
            result["cli"][name] = entry
        result["cli"]["index_rewritten_by_cli"] = _meta_row(state) != meta_before

        print("a session's upkeep (last: each adds a run to the history)")
        for how in ("memory", "ledger"):
            rows = step(f"append ({how})", ["append", how])
            result[f"append_{how}"] = {**summarise(rows), "rows": rows[-1]["rows"]}
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["loadavg_at_end"] = os.getloadavg()  # 2 shared cores: above ~2, timings inflate
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    for name, entry in result["queries"].items():
        print(f"  {name}: {entry['wall_s']['median']} s, ok={entry['ok']}")
    print(f"wrote {args.out} ({result['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
