"""Cost of the schedule planner and of what a session does with its plan; lpt against
xdist's ``load`` on the reference workload.

Targets of issue 17 (deliverable 6), at ``--tasks 10000 --seed 42 --workers 8``: plan
plus record within 0.5 s, tracemalloc peak at most 32 MiB, RSS growth at most 64 MiB,
the per-task cost at 100,000 tasks within 1.2x of that at 10,000, the plan digest equal
to the committed golden value (``benches/scheduler_golden.json``); on the workload with
``-n 2``, the ``lpt`` plan's median session wall time within 10% of ``--dist load``.

The code at ``--ref`` is exported with ``git archive`` into a temporary directory;
every measurement is a fresh process with ``PYTHONPATH`` the export, BLAS pinned to one
thread. Synthetic inputs (:func:`node_ids`, :func:`cost_model`) are built before the
clock starts. Phases, each calling what the plugin calls (``plugin/schedule/``):

- ``plan``: ``core.schedule.plan_schedule`` over the node ids, the cost model and the
  workers (``--policy``, default ``lpt``: the policy that reads costs);
- ``record``: what the session end does with the plan (``plugin.schedule.attach``
  and the ledger): the cost model's digest (``cost_model_digest``, taken at configure),
  the plan's canonical JSON into a fresh object store (``ObjectStore.put``), the
  record's ``schedule`` (``schedule_check.schedule_facts``: the plan's digest, each
  worker's observed sequence), its canonical JSON (the run record's share), the
  ``schedule`` and ``execution`` leaves (``ledger_records.schedule_leaves``) and their
  RFC 9162 leaf hashes (``core.merkle.leaf_hash``, what an append hashes);
- ``plan_record``: both in one go, as a session does them: the targets' numbers;
- ``check``: the replay check, ``first_deviation(expected_sequences(plan, gw names),
  observed)`` on sequences that follow the plan (the whole scan: the worst case);
- ``seeds``: every test's seed (``Plan.seeds``): paid per test at its setup in the
  worker running it, not at the session's start, so outside the target; shown.

In its process each phase is called twice: wall (``perf_counter``) and RSS growth
(``VmHWM`` reset before the call, minus ``VmRSS`` before) of the first call, untraced;
tracemalloc's peak over what was traced before, of the second. ``--repeats`` processes per cell,
medians reported. Where the time goes: ``plan_record`` under cProfile, 3 processes per
size, each function's median own time per task (``profile``).

Workload (``--sessions``, default 5): per condition (``quiet``; ``loaded``: one
``benches/_hog.py`` spinner per core), a fresh state directory, 3 untimed ``--dist
load`` sessions first (the stage cache filled; the run records they leave are the cost
history ``lpt`` reads: the median call wall time over the last 5 records; every later
session adds its record to it), then ``--sessions`` pairs of timed sessions, one of each
mode in a seeded random order, each a fresh process timed by ``os.wait4``: ``pytest
tests/workload --rtgov -n 2 --dist load`` and ``... -n 2 --rtgov-schedule 42
--rtgov-schedule-policy lpt``. ``os.getloadavg()`` before and after each. Judged: the
median wall of each mode (the target), and the median of the ratios within pairs (less
moved by a change of load).

Usage: python benches/scheduler.py [--tasks 10000] [--seed 42] [--workers 8]
    [--scale 100000] [--repeats 5] [--sessions 5] [--conditions quiet,loaded]
    [--no-workload] [--ref HEAD] [--out benches/results/scheduler-<commit>.json]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
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
from _common import child_env, export_ref, machine, run_timed  # noqa: E402
from _hog import hog  # noqa: E402
from _procfs import reset_peak, status_kib  # noqa: E402

GOLDEN = ROOT / "benches" / "scheduler_golden.json"
TARGETS = {
    "plan_record_s": 0.5,
    "tracemalloc_peak_mib": 32.0,
    "rss_delta_mib": 64.0,
    "per_task_ratio": 1.2,
    "workload_ratio": 1.10,
}
COPIED = [
    ".gitignore", "pyproject.toml", "gates.toml", "rtgov.keyring", "fixtures", "kernels",
    "pytest_rtgov", "tests/__init__.py", "tests/conftest.py", "tests/workload",
]  # fmt: skip
PHASES = ("plan", "record", "plan_record", "check", "seeds")
SESSION = ["tests/workload", "--rtgov", "-p", "no:cacheprovider", "-p", "no:randomly", "-q"]
MODES: dict[str, list[str]] = {
    "load": ["-n", "2", "--dist", "load"],
    "lpt": ["-n", "2", "--rtgov-schedule", "42", "--rtgov-schedule-policy", "lpt"],
}
WARMUPS = 3
ORDER_SEED = 20261130


# -- pure helpers (tests/unit/test_scheduler_bench.py) -----------------------------------


def node_ids(tasks: int) -> list[str]:
    """The synthetic collection: ``tests/test_m{i // 100}.py::test_{i}``."""
    return [f"tests/test_m{i // 100}.py::test_{i}" for i in range(tasks)]


def cost_model(nodeids: Sequence[str], seed: int) -> dict[str, float]:
    """A seeded, skewed cost per test, in seconds: ``100 us * k**3``, ``k`` uniform in
    1..16 from a Mersenne Twister (``random.Random(seed).getrandbits``, the same on every
    platform; integers divided once, so the floats are exact-rounded everywhere)."""
    rng = random.Random(seed)
    return {nodeid: 100 * (1 + rng.getrandbits(4)) ** 3 / 1e6 for nodeid in nodeids}


def groups_of(nodeids: Sequence[str], policy: str) -> dict[str, str]:
    """The groups the plugin passes under xdist: the module, for ``group`` only."""
    return {nodeid: nodeid.split("::")[0] for nodeid in nodeids} if policy == "group" else {}


def golden_plan(policy: str, tasks: int, seed: int, workers: int) -> Any:
    """The plan whose digest ``benches/scheduler_golden.json`` keeps."""
    from pytest_rtgov.core.schedule import plan_schedule

    nodeids = node_ids(tasks)
    return plan_schedule(seed, nodeids, workers=workers, policy=policy,
                         groups=groups_of(nodeids, policy), costs=cost_model(nodeids, seed))


def stat(values: Iterable[float]) -> dict[str, Any]:
    """Median, min, max and count."""
    vs = sorted(values)
    return {"median": round(statistics.median(vs), 6), "min": round(vs[0], 6),
            "max": round(vs[-1], 6), "n": len(vs)}  # fmt: skip


def per_task_us(seconds: float, tasks: int) -> float:
    """Microseconds per task."""
    return round(seconds / tasks * 1e6, 3)


def judge(result: Mapping[str, Any]) -> dict[str, Any]:
    """Each target against the result: ``{name: {"value", "target", "met"}}``."""
    cells, tasks, scale = result["cells"], result["tasks"], result.get("scale")
    head = cells[f"plan_record/{tasks}"]
    out: dict[str, Any] = {}

    def put(name: str, value: float, target: float, text: str) -> None:
        out[name] = {"value": round(value, 4), "target": target, "met": value <= target,
                     "what": text}  # fmt: skip

    put("plan_record_s", head["wall_s"]["median"], TARGETS["plan_record_s"],
        f"plan + record wall s at {tasks} tasks")  # fmt: skip
    put("tracemalloc_peak_mib", head["tracemalloc_peak_mib"]["median"],
        TARGETS["tracemalloc_peak_mib"], "tracemalloc peak MiB of plan + record")
    put("rss_delta_mib", head["rss_delta_mib"]["median"], TARGETS["rss_delta_mib"],
        "RSS growth MiB of plan + record")  # fmt: skip
    if scale and f"plan_record/{scale}" in cells:
        big = cells[f"plan_record/{scale}"]
        ratio = big["per_task_us"] / head["per_task_us"]
        put("per_task_ratio", ratio, TARGETS["per_task_ratio"],
            f"per-task cost (wall) at {scale} over that at {tasks}")  # fmt: skip
        ratio = big["per_task_cpu_us"] / head["per_task_cpu_us"]
        put("per_task_cpu_ratio", ratio, TARGETS["per_task_ratio"],
            f"per-task cost (CPU) at {scale} over that at {tasks}")  # fmt: skip
    digest = head["digest"]
    out["digest"] = {"value": digest, "target": result.get("golden"),
                     "met": digest == result.get("golden"), "what": "plan digest = golden"}
    for condition, data in result.get("workload", {}).items():
        ratio = data["lpt"]["median"] / data["load"]["median"]
        put(f"workload_{condition}", ratio, TARGETS["workload_ratio"],
            f"{condition}: lpt median session wall over --dist load's")
        if data.get("paired_ratio"):
            put(f"workload_{condition}_paired", data["paired_ratio"]["median"],
                TARGETS["workload_ratio"], f"{condition}: median of lpt/load within pairs")
    return out


def paired_ratios(sessions: Sequence[Mapping[str, Any]]) -> list[float]:
    """``lpt`` wall over ``load`` wall within each consecutive pair of sessions (the
    workload runs them in pairs, so a change of load reaches both of a pair)."""
    ratios = []
    for first, second in zip(sessions[::2], sessions[1::2], strict=False):
        walls = {first["mode"]: first["wall_s"], second["mode"]: second["wall_s"]}
        if set(walls) == {"load", "lpt"}:
            ratios.append(walls["lpt"] / walls["load"])
    return ratios


def cell(runs: Sequence[Mapping[str, Any]], tasks: int) -> dict[str, Any]:
    """One cell's statistics over its processes' measurements."""
    wall, cpu = stat(r["wall_s"] for r in runs), stat(r["cpu_s"] for r in runs)
    digests = sorted({r["digest"] for r in runs if r.get("digest")})
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "per_task_us": per_task_us(wall["median"], tasks),
        "per_task_cpu_us": per_task_us(cpu["median"], tasks),
        "tracemalloc_peak_mib": stat(r["tracemalloc_peak_mib"] for r in runs),
        "rss_delta_mib": stat(r["rss_delta_mib"] for r in runs),
        "digest": digests[0] if len(digests) == 1 else digests or None,
    }


def table(result: Mapping[str, Any]) -> list[str]:
    """The docs/benchmarks.md tables of a result (markdown lines)."""
    lines = [
        "| phase | tasks | wall ms (min..max) | per task us | CPU per task us "
        "| tracemalloc peak MiB | RSS growth MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, c in sorted(result["cells"].items(), key=_cell_order):
        phase, tasks = name.rsplit("/", 1)
        w = c["wall_s"]
        lines.append(
            f"| {phase} | {int(tasks):,} | {w['median'] * 1e3:.1f} ({w['min'] * 1e3:.1f}.."
            f"{w['max'] * 1e3:.1f}) | {c['per_task_us']:.2f} | {c['per_task_cpu_us']:.2f} "
            f"| {c['tracemalloc_peak_mib']['median']:.2f} | {c['rss_delta_mib']['median']:.2f} |"
        )
    if result.get("workload"):
        lines += ["", "| condition | mode | median session s (min..max) | CPU s | sessions "
                  "| load 1 min |", "|---|---|---|---|---|---|"]  # fmt: skip
        for condition, data in result["workload"].items():
            for mode in MODES:
                s = data[mode]
                cpu = [x["cpu_s"] for x in data.get("sessions", ()) if x["mode"] == mode]
                lines.append(
                    f"| {condition} | {mode} | {s['median']:.2f} ({s['min']:.2f}..{s['max']:.2f})"
                    f" | {statistics.median(cpu) if cpu else 0:.2f} | {s['n']} "
                    f"| {data['loadavg_1m']['median']:.2f} |"
                )
    lines += ["", "| target | value | limit | met |", "|---|---|---|---|"]
    for v in result["targets"].values():
        lines.append(f"| {v['what']} | {v['value']} | {v['target']} | "
                     f"{'yes' if v['met'] else 'NO'} |")  # fmt: skip
    return lines


def _cell_order(item: tuple[str, Any]) -> tuple[int, int, str]:
    phase, tasks = item[0].rsplit("/", 1)
    base = phase.split(":")[0]
    return (int(tasks), PHASES.index(base) if base in PHASES else len(PHASES), phase)


# -- one measurement, in a fresh process --------------------------------------------------


def _inputs(spec: Mapping[str, Any]) -> dict[str, Any]:
    from pytest_rtgov.core.schedule import plan_schedule
    from pytest_rtgov.core.schedule_check import worker_names

    nodeids = node_ids(spec["tasks"])
    costs = cost_model(nodeids, spec["seed"])
    groups = groups_of(nodeids, spec["policy"])
    plan = plan_schedule(spec["seed"], nodeids, workers=spec["workers"],
                         policy=spec["policy"], groups=groups, costs=costs)  # fmt: skip
    names = worker_names(plan, xdist=True)
    observed = {name: list(tests) for name, tests in zip(names, plan.workers, strict=True)}
    return {"nodeids": nodeids, "costs": costs, "groups": groups, "plan": plan,
            "names": names, "observed": observed}  # fmt: skip


def _phase(spec: Mapping[str, Any], inputs: dict[str, Any], state: Path) -> Callable[[], Any]:
    """The measured call of ``spec["phase"]`` (a fresh state directory per call)."""
    from pytest_rtgov.core.canonical import canonical_json
    from pytest_rtgov.core.ledger_records import schedule_leaves
    from pytest_rtgov.core.merkle import leaf_hash
    from pytest_rtgov.core.schedule import cost_model_digest, plan_schedule
    from pytest_rtgov.core.schedule_check import (
        expected_sequences,
        first_deviation,
        schedule_facts,
    )
    from pytest_rtgov.store.objects import ObjectStore

    seed, workers, policy = spec["seed"], spec["workers"], spec["policy"]
    nodeids, costs, names = inputs["nodeids"], inputs["costs"], inputs["names"]
    groups = inputs["groups"]
    calls = [0]

    def plan() -> Any:
        return plan_schedule(seed, nodeids, workers=workers, policy=policy, groups=groups,
                             costs=costs)  # fmt: skip

    def record(the_plan: Any) -> str:
        calls[0] += 1
        model = cost_model_digest(costs)
        ObjectStore.of_state_dir(state / str(calls[0])).put(the_plan.to_json())
        facts = schedule_facts(the_plan, names, inputs["observed"], cost_model=model)
        canonical_json(facts)
        for leaf in schedule_leaves("20261130T000000Z-bench0", facts):
            leaf_hash(leaf)
        return str(facts["plan"])

    def check() -> Any:
        expected = expected_sequences(inputs["plan"], names)
        return first_deviation(expected, inputs["observed"])

    def seeds() -> Any:
        table = inputs["plan"].seeds
        return [table[nodeid] for nodeid in inputs["plan"].nodeids]

    phases: dict[str, Callable[[], Any]] = {
        "plan": plan,
        "record": lambda: record(dataclasses.replace(inputs["plan"])),  # its JSON not cached
        "plan_record": lambda: record(plan()),
        "check": check,
        "seeds": seeds,
    }
    return phases[spec["phase"]]


def child(spec: Mapping[str, Any]) -> dict[str, Any]:
    """One phase measured (see the module's doc); run with ``PYTHONPATH`` the export."""
    import tracemalloc

    import numpy  # noqa: F401  (the seeds' import, outside every clock)

    inputs = _inputs(spec)
    with tempfile.TemporaryDirectory(prefix="rtgov-sched-") as tmp:
        fn = _phase(spec, inputs, Path(tmp))
        if spec.get("profile"):
            return profiled(fn, spec["tasks"])
        gc.collect()
        reset = reset_peak()
        rss0 = status_kib("VmRSS")
        start, cpu0 = time.perf_counter(), time.process_time()
        value = fn()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
        rss = (status_kib("VmHWM") - rss0) / 1024 if reset else None
        del value
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        value = fn()
        peak = (tracemalloc.get_traced_memory()[1] - base) / 2**20
        tracemalloc.stop()
    digest = value.digest if spec["phase"] == "plan" else value
    out = {"wall_s": wall, "cpu_s": cpu, "tracemalloc_peak_mib": round(peak, 3),
           "rss_delta_mib": None if rss is None else round(rss, 3)}  # fmt: skip
    if spec["phase"] in ("plan", "plan_record", "record"):
        out["digest"] = digest
    return out


def profiled(fn: Callable[[], Any], tasks: int, top: int = 30) -> dict[str, Any]:
    """One call under cProfile: its total, and the ``top`` functions by own time (ms and
    us per task), where the time goes."""
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.runcall(fn)
    stats = pstats.Stats(profile)
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # type: ignore[attr-defined]
    total = stats.total_tt  # type: ignore[attr-defined]
    return {
        "total_ms": round(total * 1e3, 2),
        "functions": [
            {"function": f"{Path(f[0]).name}:{f[1]}({f[2]})", "calls": v[1],
             "own_ms": round(v[2] * 1e3, 2), "cumulative_ms": round(v[3] * 1e3, 2),
             "own_us_per_task": round(v[2] / tasks * 1e6, 3)}
            for f, v in rows[:top]
        ],
    }  # fmt: skip


# -- running processes ----------------------------------------------------------------------


def export(ref: str, dest: Path) -> str:
    """The code at ``ref`` (``COPIED``) extracted into ``dest``; returns ``ref``'s sha."""
    return export_ref(ref, dest, COPIED)


def env_of(tree: Path) -> dict[str, str]:
    return child_env([tree])


def run_child(spec: Mapping[str, Any], tree: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
        cwd=tree, env=env_of(tree), capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"child {spec} failed:\n{done.stderr[-4000:]}")
    out: dict[str, Any] = json.loads(done.stdout)
    return out


def micro(args: argparse.Namespace, tree: Path) -> dict[str, Any]:
    """Every phase at ``--tasks``, ``plan_record`` and ``plan`` at ``--scale``, and the
    other policies' ``plan``: ``--repeats`` fresh processes each."""
    base = {"seed": args.seed, "workers": args.workers, "policy": args.policy}
    jobs = [(phase, args.tasks, args.policy) for phase in PHASES]
    if args.scale:
        jobs += [(phase, args.scale, args.policy) for phase in ("plan", "plan_record")]
    jobs += [("plan", args.tasks, p) for p in ("hash", "lpt", "group") if p != args.policy]
    runs: dict[str, list[dict[str, Any]]] = {}
    for _ in range(args.repeats):  # round-robin: a change of load reaches every cell
        for phase, tasks, policy in jobs:
            spec = {**base, "phase": phase, "tasks": tasks, "policy": policy}
            name = f"{phase}/{tasks}" if policy == args.policy else f"{phase}:{policy}/{tasks}"
            runs.setdefault(name, []).append(run_child(spec, tree))
    cells = {}
    for (name, done), (_, tasks, _) in zip(runs.items(), jobs, strict=True):
        cells[name] = cell(done, tasks)
        print(f"{name}: {cells[name]['wall_s']['median'] * 1e3:.1f} ms", file=sys.stderr)
    return cells


def merged_profile(runs: Sequence[Mapping[str, Any]], top: int = 14) -> dict[str, Any]:
    """Several :func:`profiled` processes as one: per function the median over the runs
    of its own time per task (0 in a run where it is not among the top), the ``top``."""
    names = {f["function"] for run in runs for f in run["functions"]}
    rows = []
    for name in names:
        own = [next((f["own_us_per_task"] for f in run["functions"] if f["function"] == name),
                    0.0) for run in runs]  # fmt: skip
        rows.append({"function": name, "own_us_per_task": round(statistics.median(own), 3)})
    rows.sort(key=lambda row: (-row["own_us_per_task"], row["function"]))
    return {"total_ms": stat(run["total_ms"] for run in runs), "functions": rows[:top],
            "runs": len(runs)}  # fmt: skip


def profiles(args: argparse.Namespace, tree: Path, runs: int = 3) -> dict[str, Any]:
    """``plan_record`` under cProfile at ``--tasks`` and ``--scale``: ``runs`` processes
    each, interleaved, merged (:func:`merged_profile`: one process is moved by load)."""
    base = {"seed": args.seed, "workers": args.workers, "policy": args.policy,
            "phase": "plan_record", "profile": True}  # fmt: skip
    sizes = [tasks for tasks in (args.tasks, args.scale) if tasks]
    done: dict[int, list[dict[str, Any]]] = {tasks: [] for tasks in sizes}
    for _ in range(runs):
        for tasks in sizes:
            done[tasks].append(run_child({**base, "tasks": tasks}, tree))
    return {str(tasks): merged_profile(done[tasks]) for tasks in sizes}


def session(cmd: Sequence[str], tree: Path, log: Path) -> dict[str, Any]:
    """One fresh pytest process: wall (``os.wait4``), CPU, peak RSS, exit, load."""
    done = run_timed(cmd, tree, env_of(tree), log)
    del done["exit"]
    return done


def workload(args: argparse.Namespace, tree: Path, tmp: Path) -> dict[str, Any]:
    """``lpt`` against ``--dist load`` with ``-n 2`` (see the module's doc)."""
    rng = random.Random(ORDER_SEED)
    out: dict[str, Any] = {}
    for condition in args.conditions:
        state, log = tmp / f"state-{condition}", tmp / f"{condition}.log"
        py = [sys.executable, "-m", "pytest", *SESSION, "--rtgov-dir", str(state)]
        spinners = {"quiet": 0, "loaded": os.cpu_count() or 1}[condition]
        data: dict[str, Any] = {"loadavg_start": os.getloadavg(), "sessions": []}
        with contextlib.ExitStack() as stack:
            data["hog_pids"] = [stack.enter_context(hog()) for _ in range(spinners)]
            for _ in range(WARMUPS):
                session([*py, *MODES["load"]], tree, log)
            order = []
            for _ in range(args.sessions):  # pairs, each in a seeded random order
                pair = list(MODES)
                rng.shuffle(pair)
                order += pair
            for mode in order:
                done = session([*py, *MODES[mode]], tree, log)
                done["mode"] = mode
                if mode == "lpt":
                    done["schedule"] = _schedule_of(state)
                data["sessions"].append(done)
                print(f"[{condition}] {mode} {done['wall_s']:.2f}s", file=sys.stderr)
        data["loadavg_end"] = os.getloadavg()
        for mode in MODES:
            data[mode] = stat(s["wall_s"] for s in data["sessions"] if s["mode"] == mode)
        data["loadavg_1m"] = stat(x for s in data["sessions"] for x in s["loadavg_1m"])
        data["paired_ratio"] = stat(paired_ratios(data["sessions"]))
        out[condition] = data
    return out


def _schedule_of(state: Path) -> dict[str, Any]:
    """The latest record's schedule, less the observed sequences (their lengths kept)."""
    run_id = (state / "latest").read_text().strip()
    schedule = dict(json.loads((state / "runs" / f"{run_id}.json").read_text())["schedule"])
    observed = schedule.pop("observed", {})
    schedule["observed_counts"] = {name: len(seq) for name, seq in observed.items()}
    return schedule


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--policy", default="lpt", choices=("hash", "lpt", "group"))
    parser.add_argument("--scale", type=int, default=100_000, help="0: no scaling cell")
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per cell")
    parser.add_argument("--sessions", type=int, default=5, help="per mode and condition")
    parser.add_argument("--conditions", default="quiet,loaded")
    parser.add_argument("--no-workload", action="store_true", help="the planner's cells only")
    parser.add_argument("--ref", default="HEAD")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    args.conditions = [c for c in args.conditions.split(",") if c]
    if any(c not in ("quiet", "loaded") for c in args.conditions):
        parser.error(f"unknown condition in {args.conditions}")
    golden = json.loads(GOLDEN.read_text())
    key = f"{args.policy}/{args.tasks}/{args.seed}/{args.workers}"
    with tempfile.TemporaryDirectory(prefix="rtgov-scheduler-bench-") as tmp:
        tree = Path(tmp) / "code"
        sha = export(args.ref, tree)
        result: dict[str, Any] = {
            "benchmark": "scheduler",
            "command": " ".join(["python", "benches/scheduler.py", *sys.argv[1:]]),
            "commit": sha[:7], "tasks": args.tasks, "seed": args.seed,
            "workers": args.workers, "policy": args.policy, "scale": args.scale or None,
            "repeats": args.repeats, "golden": golden["digests"].get(key),
            "machine": machine(with_numpy=False), "loadavg_start": os.getloadavg(),
        }  # fmt: skip
        result["cells"] = micro(args, tree)
        result["profile"] = profiles(args, tree)
        if not args.no_workload:
            result["workload"] = workload(args, tree, Path(tmp))
        result["loadavg_end"] = os.getloadavg()
    result["targets"] = judge(result)
    text = json.dumps(result, indent=1, sort_keys=True) + "\n"
    print(text, end="")
    if args.out is not None:
        args.out = Path(str(args.out).replace("<commit>", result["commit"]))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print("\n".join(table(result)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
