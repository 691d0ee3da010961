"""Cost of ``rtgov replay`` on the reference workload, and of comparing kept checkpoints.

Target of issue 16: a self-replay of the workload within 1.2x of the original session's
test time. The code at ``--ref`` (plugin, kernels, workload, ``gates.toml``) is exported
with ``git archive`` into a temporary directory and committed there (``git init``), so
the replay runs *in place* at a clean commit, as after ``make gate`` in a fresh clone.
Every session and every replay is a fresh process (``PYTHONPATH`` the export, BLAS
pinned to one thread as ``make gate`` does, ``CI`` unset); ``os.wait4`` gives each
child's wall time, CPU time and peak RSS (a command's children included).

Per round, in a seeded random order that keeps each step after what it needs:

- ``gate``: the workload as ``make gate`` runs it (``--rtgov-gate``) in a fresh state
  directory: the first gate of a clone, its four stages executed and stored;
- ``gate_warm``: the same command again in that directory (the stages served from the
  cache: the test time of a repeated ``make gate``);
- ``nocache``: the ``make gate`` command with ``--rtgov-stage-cache off``, in a fresh
  directory: every stage executed, nothing stored (what a replay does to stages);
- ``measure``: ``--rtgov --rtgov-stage-cache off`` instead of ``--rtgov-gate``, in a
  fresh directory: the session a replay runs (stages executed, no gate, so no A/B
  pairs), less ``--rtgov-keep-checkpoints``;
- ``replay``: ``rtgov replay <the gate run>``: the whole command's wall, CPU and peak
  RSS, the replay session's own time (the ``replay`` leaf's ``seconds``), its run-test
  loop, and what the command spends beyond the session (command wall - ``seconds``);
- ``replay_fault``: the same with ``--env KERNELS_FAULT=<FAULT>`` (kernels/faults.py):
  a 1-ULP change that every later checkpoint inherits, so the comparison loads and
  diffs arrays.

Test time is pytest's run-test loop (a plugin, loaded with ``PYTEST_PLUGINS`` so that it
also times the session ``rtgov replay`` starts, times ``pytest_runtestloop``). Ratios are
paired within a round: the replay's loop over each original's loop, and the replay
command's wall over the original process's wall.

Comparing (a ``--compare-child`` process per condition, on the last round's state): the
CLI's own path (``cli/replay.py``'s loader over both object stores, then
``core.replay.compare``) on the workload's real checkpoints, identical and faulted; and
``compare`` on synthetic float32 arrays of 1, 16 and 64 MiB (identical, one element moved
1 ULP, every element moved 1 ULP) held in memory, plus reading them from an object
store: ms per MiB, and the memory delta of comparing (tracemalloc peak, and the RSS
high-water mark over the RSS before).

Conditions: ``quiet`` and ``loaded`` (``benches/_hog.py``: one spinning process per
core). ``os.getloadavg()`` before and after every process.

Usage: python benches/replay.py [--rounds 5] [--conditions quiet,loaded] [--ref HEAD]
    [--sizes 1,16,64] [--profile] [--quick] [--out benches/results/replay-<commit>.json]
    python benches/replay.py --resummarise PATH   (summary and table, nothing run)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benches"))
from _common import (  # noqa: E402
    child_env,
    export_ref,
    loop_timer,
    machine,
    median_quartiles,
    run_timed,
)
from _hog import hog  # noqa: E402
from _procfs import reset_peak, status_kib  # noqa: E402

SEED = 20261130
TARGET = 1.2
FAULT = "linear:7:1"  # the first layer's output: every later checkpoint inherits it
COPIED = [
    ".gitignore", "pyproject.toml", "gates.toml", "rtgov.keyring", "fixtures", "kernels",
    "pytest_rtgov", "tests/__init__.py", "tests/conftest.py", "tests/workload",
]  # fmt: skip
GATE = ["tests/workload", "--rtgov-gate", "-p", "no:cacheprovider", "-q"]  # as make gate
NO_CACHE = ["--rtgov-stage-cache", "off"]
SESSIONS: dict[str, list[str]] = {  # the originals' pytest arguments
    "gate": GATE,
    "gate_warm": GATE,
    "nocache": [*GATE, *NO_CACHE],
    "measure": ["tests/workload", "--rtgov", "-p", "no:cacheprovider", "-q", *NO_CACHE],
}
# step -> the steps it needs done first
STEPS: dict[str, tuple[str, ...]] = {
    "gate": (),
    "gate_warm": ("gate",),
    "nocache": (),
    "measure": (),
    "replay": ("gate",),
    "replay_fault": ("gate",),
}
ORIGINALS = ("gate", "nocache", "gate_warm", "measure")
LABELS = {
    "gate": "make gate, fresh dir (stages executed and stored)",
    "gate_warm": "make gate again (stages from the cache)",
    "nocache": "make gate + --rtgov-stage-cache off",
    "measure": "--rtgov --rtgov-stage-cache off (no gate, no A/B)",
    "replay": "rtgov replay (identical)",
    "replay_fault": f"rtgov replay, KERNELS_FAULT={FAULT}",
}

PLUGIN = loop_timer("replay.py", "loaded by PYTEST_PLUGINS", "REPLAY_BENCH_OUT")


# -- pure helpers (tests/unit/test_replay_bench.py) -------------------------------------


def step_order(rng: random.Random, steps: Mapping[str, Sequence[str]] = STEPS) -> list[str]:
    """A seeded random order of ``steps`` in which each comes after the steps it needs:
    the steps shuffled, then repeatedly the first whose needs are done."""
    pending = list(steps)
    rng.shuffle(pending)
    order: list[str] = []
    while pending:
        ready = next((s for s in pending if all(n in order for n in steps[s])), None)
        if ready is None:
            raise ValueError(f"steps that need each other: {pending}")
        order.append(ready)
        pending.remove(ready)
    return order


def stat(values: Iterable[float]) -> dict[str, Any]:
    """Median, first and third quartile, count."""
    return median_quartiles(values, 4)


SESSION_FIELDS = ("process_s", "process_cpu_s", "loop_s", "loop_cpu_s", "maxrss_kib")
REPLAY_FIELDS = (*SESSION_FIELDS, "session_s", "beyond_session_s")


def summarise(result: Mapping[str, Any]) -> dict[str, Any]:
    """Per condition: each step's statistics, and the paired ratios of the replay to
    each original (``replay.loop_s / original.loop_s`` is the target's test time, judged;
    the same on CPU time, which a loaded machine does not inflate;
    ``replay.process_s / original.process_s`` the whole command over the whole
    session), with how many rounds were within ``TARGET``."""
    summary: dict[str, Any] = {}
    for condition, data in result["conditions"].items():
        rounds = data["rounds"]
        out: dict[str, Any] = {"loadavg_1m": stat(_loads(rounds)), "steps": {}, "ratios": {}}
        for step in STEPS:
            runs = [r[step] for r in rounds if step in r]
            if runs:
                fields = REPLAY_FIELDS if step.startswith("replay") else SESSION_FIELDS
                out["steps"][step] = {f: stat(r[f] for r in runs) for f in fields}
        for original in ORIGINALS:
            pairs = [(r["replay"], r[original]) for r in rounds if "replay" in r and original in r]
            if not pairs:
                continue
            test_time = [rep["loop_s"] / orig["loop_s"] for rep, orig in pairs]
            out["ratios"][original] = {
                "test_time": stat(test_time),
                "test_cpu": stat(rep["loop_cpu_s"] / o["loop_cpu_s"] for rep, o in pairs),
                "session_over_process": stat(rep["session_s"] / o["process_s"] for rep, o in pairs),
                "command_over_process": stat(rep["process_s"] / o["process_s"] for rep, o in pairs),
                "rounds_within": sum(r <= TARGET for r in test_time),
                "met": statistics.median(test_time) <= TARGET,
            }
        summary[condition] = out
    return summary


def _loads(rounds: Sequence[Mapping[str, Any]]) -> list[float]:
    return [load for r in rounds for step in r.values() for load in step["loadavg_1m"]]


def per_mib(ms: float, nbytes: int) -> float | None:
    """Milliseconds per MiB (None for nothing read)."""
    return round(ms / (nbytes / 2**20), 4) if nbytes else None


def table(result: Mapping[str, Any]) -> list[str]:
    """The docs/benchmarks.md tables of a result (markdown lines)."""
    summary = result["summary"]
    lines = [
        "| condition | session | process s | run-test loop s | CPU s | peak RSS MiB |",
        "|---|---|---|---|---|---|",
    ]
    for condition, out in ((c, summary[c]) for c in _conditions(summary)):
        for step, s in out["steps"].items():
            lines.append(
                f"| {condition} | {LABELS[step]} | {_med(s['process_s'])} | {_med(s['loop_s'])} "
                f"| {s['process_cpu_s']['median']:.2f} | {s['maxrss_kib']['median'] / 1024:.0f} |"
            )
    lines += [
        "",
        "| condition | replay command s | replay session s (leaf) | beyond the session s "
        "| replay loop s |",
        "|---|---|---|---|---|",
    ]
    for condition, out in ((c, summary[c]) for c in _conditions(summary)):
        for step in ("replay", "replay_fault"):
            s = out["steps"].get(step)
            if s:
                lines.append(
                    f"| {condition}: {LABELS[step]} | {_med(s['process_s'])} "
                    f"| {_med(s['session_s'])} | {_med(s['beyond_session_s'])} "
                    f"| {_med(s['loop_s'])} |"
                )
    lines += [
        "",
        f"| condition | original | replay test time / original test time (target <= {TARGET}) "
        "| rounds within | test CPU time ratio | replay session / original process "
        "| replay command / original process |",
        "|---|---|---|---|---|---|---|",
    ]
    for condition, out in ((c, summary[c]) for c in _conditions(summary)):
        for original, r in out["ratios"].items():
            verdict = "met" if r["met"] else "NOT met"
            lines.append(
                f"| {condition} | {LABELS[original]} | {_med(r['test_time'])} {verdict} "
                f"| {r['rounds_within']}/{r['test_time']['n']} | {_med(r['test_cpu'])} "
                f"| {_med(r['session_over_process'])} | {_med(r['command_over_process'])} |"
            )
    lines += _compare_lines(result)
    return lines


CASES = ("identical", "1 element", "every element", "read")


def _order(item: tuple[str, Any]) -> tuple[int, int, int, str]:
    """Workload rows first, then by size and case (JSON sorts the keys)."""
    name = item[0]
    if not name.startswith("float32 "):
        return (0, 0, 0, name)
    size, case = name.split(" MiB: ", 1)
    rank = next((i for i, c in enumerate(CASES) if case.startswith(c)), len(CASES))
    return (1, int(size.split()[1]), rank, name)


def _conditions(mapping: Mapping[str, Any]) -> list[str]:
    """Quiet before loaded (JSON sorts the keys)."""
    known = ("quiet", "loaded")
    return sorted(mapping, key=lambda c: (known.index(c) if c in known else len(known), c))


def _med(s: Mapping[str, Any]) -> str:
    return f"{s['median']:.2f} ({s['q1_q3'][0]:.2f}..{s['q1_q3'][1]:.2f})"


def _compare_lines(result: Mapping[str, Any]) -> list[str]:
    lines = [
        "",
        "| condition | compared | MiB | ms | ms per MiB | tracemalloc peak MiB | RSS delta MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for condition in _conditions(result["conditions"]):
        cmp = result["conditions"][condition].get("compare")
        if not cmp:
            continue
        for name, row in sorted([*cmp["real"].items(), *cmp["synthetic"].items()], key=_order):
            rate = "-" if row["ms_per_mib"] is None else f"{row['ms_per_mib']:.2f}"
            lines.append(
                f"| {condition} | {name} | {row['mib']:.1f} | {row['ms']:.2f} | {rate} "
                f"| {row['tracemalloc_peak_mib']:.1f} | {row['rss_delta_mib']:.1f} |"
            )
    return lines


# -- running processes ------------------------------------------------------------------


def export_commit(ref: str, dest: Path) -> str:
    """The code at ``ref`` (``COPIED``) extracted into ``dest`` and committed there as a
    repository of its own (a replay then runs in place, clean); returns ``ref``'s sha."""
    sha = export_ref(ref, dest, COPIED)
    who = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}  # fmt: skip
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", f"export of {sha[:12]}"]):
        subprocess.run(["git", *cmd], cwd=dest, check=True, env={**os.environ, **who})
    return sha


def bench_env(tree: Path, plugin_dir: Path, out: Path) -> dict[str, str]:
    return child_env(
        [tree, plugin_dir], PYTEST_PLUGINS="_replaybench_plugin", REPLAY_BENCH_OUT=str(out)
    )


def run_process(
    cmd: Sequence[str], tree: Path, plugin_dir: Path, ok: Sequence[int]
) -> dict[str, Any]:
    """One fresh process in the export: its wall, CPU (its children included), peak RSS,
    exit status and load, and the run-test loop its pytest session timed."""
    out = plugin_dir / "loop.json"
    out.unlink(missing_ok=True)
    log = plugin_dir / "process.log"
    done = run_timed(cmd, tree, bench_env(tree, plugin_dir, out), log, ok)
    loop = json.loads(out.read_text())
    process_s, process_cpu_s = done.pop("wall_s"), done.pop("cpu_s")
    return {
        **done,
        "process_s": process_s,
        "process_cpu_s": process_cpu_s,
        "loop_s": round(loop["loop_s"], 4),
        "loop_cpu_s": round(loop["loop_cpu_s"], 4),
    }


def replay_leaves(tree: Path, state: Path) -> list[dict[str, Any]]:
    """The ``replay`` leaves of ``state``'s ledger (read with the export's code)."""
    if str(tree) not in sys.path:
        sys.path.insert(0, str(tree))
    from pytest_rtgov.store.ledger import Ledger

    leaves = [json.loads(f.payload) for f in Ledger(state / "ledger").frames()]
    return [leaf for leaf in leaves if leaf.get("kind") == "replay"]


def run_step(step: str, ctx: dict[str, Any]) -> dict[str, Any]:
    tree, plugin_dir, py = ctx["tree"], ctx["plugin_dir"], sys.executable
    if step in SESSIONS:  # gate and gate_warm share a directory; the others start empty
        state = ctx["state"]
        state = state if step.startswith("gate") else state.with_name(f"{state.name}-{step}")
        cmd = [py, "-m", "pytest", *SESSIONS[step], "--rtgov-dir", str(state)]
        done = run_process(cmd, tree, plugin_dir, ok=(0, 1))  # 1: a gate breached (timing)
        done["run_id"] = (state / "latest").read_text().strip()
        if step == "gate":
            ctx["gate_run"] = done["run_id"]
        return done
    fault = ["--env", f"KERNELS_FAULT={FAULT}"] if step == "replay_fault" else []
    cmd = [py, "-m", "pytest_rtgov.cli", "--dir", str(ctx["state"]), "replay", ctx["gate_run"],
           *fault]  # fmt: skip
    done = run_process(cmd, tree, plugin_dir, ok=(6,) if fault else (0,))
    leaf = replay_leaves(tree, ctx["state"])[-1]
    done.update(
        session_s=leaf["seconds"],
        beyond_session_s=round(done["process_s"] - leaf["seconds"], 4),
        outcome=leaf["outcome"],
        counts=leaf["counts"],
        replay_id=leaf["replay_id"],
        tests_exit_status=leaf["tests_exit_status"],
    )
    ctx[f"{step}_id"] = leaf["replay_id"]
    return done


def profile_replay(ctx: dict[str, Any], top: int = 30) -> dict[str, Any]:
    """One ``rtgov replay`` under cProfile (the command's own process: the session is
    one ``subprocess.run``): its total, and rtgov's ``top`` functions by cumulative time
    (where the time beyond the session goes)."""
    prof = ctx["plugin_dir"] / "replay.prof"
    cmd = [sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "pytest_rtgov.cli",
           "--dir", str(ctx["state"]), "replay", ctx["gate_run"]]  # fmt: skip
    run_process(cmd, ctx["tree"], ctx["plugin_dir"], ok=(0,))
    import pstats

    stats = pstats.Stats(str(prof))
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][3], reverse=True)  # type: ignore[attr-defined]
    ours = [(f, v) for f, v in rows if "/pytest_rtgov/" in f[0]][:top]
    return {
        "total_ms": round(stats.total_tt * 1e3, 1),  # type: ignore[attr-defined]
        "functions": [
            {"function": f"pytest_rtgov/{f[0].split('/pytest_rtgov/')[1]}:{f[1]}({f[2]})",
             "calls": v[1], "cumulative_ms": round(v[3] * 1e3, 1), "own_ms": round(v[2] * 1e3, 1)}
            for f, v in ours
        ],
    }  # fmt: skip


# -- comparing, in a child process ------------------------------------------------------


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), value


def _memory(fn: Callable[[], Any]) -> tuple[float, float]:
    """tracemalloc's peak over what was traced before, and the RSS high-water mark over
    the RSS before (0 where the mark cannot be reset), in MiB, of one call."""
    import gc
    import tracemalloc

    gc.collect()
    reset = reset_peak()
    rss0 = status_kib("VmRSS")
    fn()
    rss = (status_kib("VmHWM") - rss0) / 1024 if reset else 0.0
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    peak = (tracemalloc.get_traced_memory()[1] - base) / 2**20
    tracemalloc.stop()
    return round(peak, 2), round(rss, 2)


def _row(ms: float, nbytes: int, memory: tuple[float, float], **extra: Any) -> dict[str, Any]:
    peak, rss = memory
    return {"ms": round(ms, 3), "mib": nbytes / 2**20, "ms_per_mib": per_mib(ms, nbytes),
            "tracemalloc_peak_mib": peak, "rss_delta_mib": rss, **extra}  # fmt: skip


def compare_child(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Run with ``PYTHONPATH`` the export: time the comparison (see the module's doc)."""
    import numpy as np

    real = {}
    for name, replay_id in spec["replays"].items():
        real.update(_compare_real(spec, name, replay_id))
    synthetic: dict[str, Any] = {}
    rng = np.random.default_rng(SEED)
    for mib in spec["sizes"]:
        synthetic.update(_compare_synthetic(rng, mib, spec["repeats"]))
    return {"real": real, "synthetic": synthetic}


def _compare_real(spec: Mapping[str, Any], name: str, replay_id: str) -> dict[str, Any]:
    """The CLI's comparison of the gate run and one of its replays: its loader over
    both object stores (and the stage cache), then ``core.replay.compare``."""
    from pytest_rtgov.cli.replay import _loader
    from pytest_rtgov.core import replay as core
    from pytest_rtgov.store.gates_file import load_gates
    from pytest_rtgov.store.objects import ObjectStore
    from pytest_rtgov.store.runs import RunStore
    from pytest_rtgov.store.stage_cache import LocalBackend

    state = Path(spec["state"])
    rules = tuple(load_gates(Path("gates.toml")).replay_rules)
    record = RunStore(state).read(spec["run_id"])
    replay_state = state / "replays" / replay_id / "state"
    replayed = RunStore(replay_state).read("latest")
    stores = [ObjectStore.of_state_dir(state), ObjectStore.of_state_dir(replay_state)]
    inner = _loader(stores, LocalBackend(state / "stages"))
    read = [0]

    def load(ref: Any) -> Any:
        array = inner(ref)
        read[0] += 0 if array is None else array.nbytes
        return array

    def run() -> Any:
        return core.compare(record, replayed, load=load, rules=rules)

    ms, comparison = _timed(run, spec["repeats"])
    nbytes = read[0] // spec["repeats"]
    counts = comparison.counts()
    label = f"workload: {name} ({counts['diverged']} of {len(comparison.results)} diverged)"
    return {label: _row(ms, nbytes, _memory(run), counts=counts)}


def _compare_synthetic(rng: Any, mib: int, repeats: int) -> dict[str, Any]:
    """``compare`` of one float32 array of ``mib`` MiB against itself, with one element
    and with every element moved 1 ULP (in memory); and reading it from an object store."""
    import numpy as np

    from pytest_rtgov.core import replay as core
    from pytest_rtgov.core.array_checkpoints import npy_digest
    from pytest_rtgov.store.objects import ObjectStore
    from pytest_rtgov.store.stage_cache import array_bytes, load_array

    expected = rng.standard_normal(mib * 2**18, dtype=np.float32)
    one = expected.copy()
    one[len(one) // 3] = np.nextafter(one[len(one) // 3], np.float32(np.inf))
    every = np.nextafter(expected, np.float32(np.inf))
    blob = array_bytes(expected)
    sha_ms, digest = _timed(lambda: npy_digest(blob), repeats)
    rec = _ref(expected, digest)
    out: dict[str, Any] = {}
    cases = (("identical", expected.copy()), ("1 element 1 ULP", one),
             ("every element 1 ULP", every))  # fmt: skip
    for case, actual in cases:
        rep = _ref(actual, npy_digest(array_bytes(actual)))
        arrays = {id(rec): expected, id(rep): actual}

        def run(rep: Any = rep, arrays: dict[int, Any] = arrays) -> Any:
            return core.compare([rec], [rep], load=lambda r: arrays[id(r)])

        ms, comparison = _timed(run, repeats)
        status = comparison.results[0].status
        nbytes = 0 if status == "identical" else expected.nbytes + actual.nbytes
        out[f"float32 {mib} MiB: {case} ({status})"] = _row(ms, nbytes, _memory(run))
    with tempfile.TemporaryDirectory() as tmp:
        store = ObjectStore.of_state_dir(Path(tmp))
        store.put(blob)

        def read() -> Any:
            return load_array(store.get(digest))

        ms, _ = _timed(read, repeats)
        out[f"float32 {mib} MiB: read one side from the object store"] = _row(
            ms, len(blob), _memory(read), sha256_ms=round(sha_ms, 3)
        )
    return out


def _ref(array: Any, digest: str) -> Any:
    """A synthetic array's checkpoint, owned by one test (both sides named alike)."""
    from pytest_rtgov.core import replay as core
    from pytest_rtgov.core.array_checkpoints import ArrayCheckpoint

    cp = ArrayCheckpoint(name="x", seq=0, kind="array", sha256=digest, dtype=array.dtype.str,
                         shape=tuple(array.shape), kept=True)  # fmt: skip
    return core.CheckpointRef("test", "synthetic.py::t", cp, "main")


# -- main -------------------------------------------------------------------------------


def measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    tree = tmp / "code"
    sha = export_commit(args.ref, tree)
    plugin_dir = tmp / "plugin"
    plugin_dir.mkdir()
    (plugin_dir / "_replaybench_plugin.py").write_text(PLUGIN)
    rng = random.Random(SEED)
    result: dict[str, Any] = {
        "benchmark": "replay",
        "command": " ".join(["python", "benches/replay.py", *sys.argv[1:]]),
        "commit": sha[:7],
        "rounds": args.rounds,
        "fault": FAULT,
        "target": f"replay session's run-test loop <= {TARGET} x the original's",
        "machine": machine(),
        "conditions": {},
    }
    for condition in args.conditions:
        data: dict[str, Any] = {"rounds": [], "loadavg_start": os.getloadavg()}
        spinners = {"quiet": 0, "loaded": os.cpu_count() or 1}[condition]
        with contextlib.ExitStack() as stack:
            data["hog_pids"] = [stack.enter_context(hog()) for _ in range(spinners)]
            for index in range(args.rounds):
                ctx: dict[str, Any] = {
                    "tree": tree, "plugin_dir": plugin_dir,
                    "state": tmp / f"state-{condition}-{index}",
                }  # fmt: skip
                steps = [s for s in step_order(rng) if s in args.steps]
                done = {step: run_step(step, ctx) for step in steps}
                data["rounds"].append(done)
                data.setdefault("orders", []).append(steps)
                print(f"[{condition}] round {index + 1}: " + ", ".join(
                    f"{s} {done[s]['process_s']:.1f}s/{done[s]['loop_s']:.1f}s" for s in steps),
                    file=sys.stderr)  # fmt: skip
            data["compare"] = run_compare_child(ctx, args)
            if args.profile and condition == args.conditions[0]:
                data["profile"] = profile_replay(ctx)
        data["loadavg_end"] = os.getloadavg()
        result["conditions"][condition] = data
    result["summary"] = summarise(result)
    return result


def run_compare_child(ctx: Mapping[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    replays = {"identical replay": ctx.get("replay_id"), "1-ULP fault": ctx.get("replay_fault_id")}
    spec = {"state": str(ctx["state"]), "run_id": ctx["gate_run"], "sizes": args.sizes,
            "repeats": args.repeats, "replays": {k: v for k, v in replays.items() if v}}
    path = ctx["plugin_dir"] / "compare.json"
    path.write_text(json.dumps(spec))
    env = bench_env(ctx["tree"], ctx["plugin_dir"], ctx["plugin_dir"] / "unused.json")
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--compare-child", str(path)],
        cwd=ctx["tree"], env=env, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"the compare child failed:\n{done.stderr[-4000:]}")
    out: dict[str, Any] = json.loads(done.stdout)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--conditions", default="quiet,loaded")
    parser.add_argument("--steps", default=",".join(STEPS))
    parser.add_argument("--sizes", default="1,16,64", help="synthetic arrays, MiB")
    parser.add_argument("--repeats", type=int, default=5, help="of each comparison")
    parser.add_argument("--ref", default="HEAD")
    parser.add_argument("--profile", action="store_true", help="one cProfiled replay command")
    parser.add_argument("--quick", action="store_true", help="1 round, quiet, 1 MiB")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--resummarise", type=Path, help="recount a result; nothing is run")
    parser.add_argument("--compare-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.compare_child is not None:
        print(json.dumps(compare_child(json.loads(args.compare_child.read_text()))))
        return 0
    if args.resummarise is not None:
        result = json.loads(args.resummarise.read_text())
        result["summary"] = summarise(result)
        print("\n".join(table(result)))
        return 0
    if args.quick:
        args.rounds, args.conditions, args.sizes, args.repeats = 1, "quiet", "1", 1
    args.conditions = [c for c in args.conditions.split(",") if c]
    args.steps = [s for s in args.steps.split(",") if s]
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    unknown = [c for c in args.conditions if c not in ("quiet", "loaded")]
    unknown += [s for s in args.steps if s not in STEPS]
    if unknown or "gate" not in args.steps:
        parser.error(f"unknown condition or step: {', '.join(unknown)} (gate is needed)")
    with tempfile.TemporaryDirectory(prefix="rtgov-replay-bench-") as tmp:
        result = measure(args, Path(tmp))
    out = args.out or ROOT / "benches" / "results" / f"replay-{result['commit']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print("\n".join(table(result)))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
