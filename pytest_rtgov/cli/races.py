"""``rtgov races``: find the tests whose outcome or checkpoints depend on the schedule.

Runs K seeded plans of the suite (core/races.py: plan ``i`` places and orders the tests
as ``--rtgov-schedule SEED+i`` would, with the per-test seeds of ``SEED``), each a pytest
session into a throwaway state directory (store/races.py). Every test whose signature
(outcome, checkpoint digests) differs between the plans is run alone for its reference,
then with its predecessors on its worker in the first plan that changed it, shrunk by
ddmin to a minimal set. Each plan that changed a test is kept under
``<state>/races/<check id>/plans/`` with ``races.json``, so the finding's one-line token
reproduces it. Exit 0 when no test depends on the plan, 6 when some do.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_rtgov.core import races as core
from pytest_rtgov.core.constants import ExitCode
from pytest_rtgov.core.schedule import Plan
from pytest_rtgov.errors import InvalidOptionError

__all__ = ["add_parsers", "run"]

RACES_DIR = "races"


def add_parsers(sub: Any) -> None:
    races = sub.add_parser(
        "races",
        help="run K seeded plans of the suite and report the tests that depend on the plan",
        description="Run K seeded schedules (different orders and, with -n, co-locations) "
        "and report every test whose outcome or checkpoint digests depend on the schedule, "
        "with a minimal set of predecessors and the seed that reproduces it. Arguments "
        "after -- go to pytest (test paths, -k, -m).",
    )
    races.add_argument("--permutations", type=int, default=20, metavar="K",
                       help="how many plans to run (default: 20)")  # fmt: skip
    races.add_argument("--seed", type=int, default=0, metavar="S",
                       help="the first plan's seed; plan i is seed S+i (default: 0)")  # fmt: skip
    races.add_argument("-n", dest="workers", type=int, default=1, metavar="W",
                       help="xdist workers per session (default: 1, no xdist)")  # fmt: skip
    races.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                       help="stop a session that runs longer than this (exit 4)")  # fmt: skip
    races.add_argument("pytest_args", nargs="*", metavar="PYTEST_ARGS",
                       help="after --: test paths and options of each session")  # fmt: skip


def _check(args: argparse.Namespace) -> None:
    if args.permutations < 2:
        raise InvalidOptionError(f"--permutations {args.permutations}: expected at least 2")
    if args.seed < 0:
        raise InvalidOptionError(f"--seed {args.seed}: expected a non-negative integer")
    if args.workers < 1:
        raise InvalidOptionError(f"-n {args.workers}: expected at least 1 worker")


class _Bisector:
    """Runs a victim after a subset of its predecessors, one process, in that order,
    with the check's per-test seeds; remembers every answer."""

    def __init__(self, seed: int, cwd: Path, home: Path, timeout: float | None) -> None:
        self.seed, self.cwd, self.home, self.timeout = seed, cwd, home, timeout
        self.runs = 0
        self._seen: dict[tuple[str, ...], core.Signature] = {}

    def signature(self, tests: Sequence[str]) -> core.Signature:
        key = tuple(tests)
        if key not in self._seen:
            from pytest_rtgov.store.races import run_plan, write_plan

            plan = Plan(seed=self.seed, policy="hash", workers=(key,))
            file = write_plan(plan, self.home / "bisect" / f"{plan.digest[7:23]}.json")
            session = run_plan(list(key), cwd=self.cwd, workers=1, plan_file=file,
                               timeout=self.timeout)  # fmt: skip
            self.runs += 1
            victim = key[-1]
            outcome = core.signatures(session.record).get(victim, ("not run", ()))
            self._seen[key] = outcome
        return self._seen[key]


def run(args: argparse.Namespace) -> int:
    from pytest_rtgov.store.pytest_config import locate
    from pytest_rtgov.store.races import run_plan, write_plan
    from pytest_rtgov.store.runs import new_run_id

    _check(args)
    seed, workers, k = args.seed, args.workers, args.permutations
    home = args.dir / RACES_DIR / new_run_id()
    plans_dir = home / "plans"
    print(f"rtgov races: {k} plans (seeds {seed}..{seed + k - 1}, per-test seeds of {seed}), "
          f"{workers} worker(s); kept in {home}", flush=True)  # fmt: skip
    first = run_plan(args.pytest_args, cwd=Path.cwd(), workers=workers, seed=seed,
                     timeout=args.timeout)  # fmt: skip
    nodeids = first.plan.nodeids
    sessions = [first]
    files = [write_plan(first.plan, plans_dir / f"seed-{seed}.json")]
    for index in range(1, k):
        plan = core.permuted_plan(seed, nodeids, workers=workers, index=index)
        files.append(write_plan(plan, plans_dir / f"seed-{seed + index}.json"))
        sessions.append(run_plan(args.pytest_args, cwd=Path.cwd(), workers=workers,
                                 plan_file=files[-1], timeout=args.timeout))  # fmt: skip
        print(f"  plan {index + 1}/{k} (seed {seed + index}): pytest exited "
              f"{sessions[-1].returncode}", flush=True)  # fmt: skip
    runs = [core.signatures(s.record) for s in sessions]
    victims = core.dependent_tests(runs)
    bisector = _Bisector(seed, locate().rootdir, home, args.timeout)
    findings = [_explain(v, sessions, runs, files, bisector, seed) for v in victims]
    _report(home, args, findings, bisector.runs)
    return int(ExitCode.GATE_BREACHED if findings else ExitCode.OK)


def _explain(
    victim: str, sessions: Sequence[Any], runs: Sequence[dict[str, core.Signature]],
    files: Sequence[Path], bisector: _Bisector, seed: int,
) -> core.Finding:  # fmt: skip
    """Why ``victim`` depends on the plan: its same-worker predecessors, minimal, or what
    ran on the other workers."""
    reference = bisector.signature([victim])
    changing = [i for i, run in enumerate(runs) if run.get(victim, reference) != reference]
    index = changing[0] if changing else next(i for i, run in enumerate(runs) if victim in run)
    observed = sessions[index].observed
    worker = next((w for w, tests in observed.items() if victim in tests), "?")
    before = list(observed.get(worker, ()))
    before = before[: before.index(victim)] if victim in before else []
    common: dict[str, Any] = dict(
        victim=victim, seed=seed + index, worker=worker, reference=reference,
        changed=runs[index].get(victim, reference), plan_file=str(files[index]),
    )  # fmt: skip

    def fails(subset: list[str]) -> bool:
        return bisector.signature([*subset, victim]) != reference

    if before and fails(before):
        minimal = core.ddmin(before, fails)
        return core.Finding(kind="same-worker", predecessors=tuple(minimal), **common)
    suspects = core.concurrent_suspects(victim, [sessions[i].observed for i in changing])
    others = tuple(t for w, tests in observed.items() if w != worker for t in tests)
    return core.Finding(kind="concurrent", suspects=tuple(suspects), concurrent=others, **common)


def _report(
    home: Path, args: argparse.Namespace, findings: Sequence[core.Finding], bisections: int
) -> None:
    from pytest_rtgov.core.canonical import pretty_json
    from pytest_rtgov.store.files import atomic_write

    workers = args.workers
    n_flag = f" -n {workers}" if workers > 1 else ""
    home.mkdir(parents=True, exist_ok=True)
    atomic_write(home / "races.json", pretty_json({
        "seed": args.seed, "permutations": args.permutations, "workers": workers,
        "pytest_args": list(args.pytest_args), "bisection_sessions": bisections,
        "findings": [f.to_dict() for f in findings],
    }).encode())  # fmt: skip
    if not findings:
        print(f"rtgov races: no test depends on the plan ({args.permutations} plans, "
              f"{bisections} bisection session(s))")  # fmt: skip
        return
    print(f"rtgov races: {len(findings)} test(s) depend on the plan:")
    for finding in findings:
        print(f"- {finding.sentence()}")
        again = f"pytest --rtgov-schedule-plan {shlex.quote(finding.plan_file)}{n_flag} " \
            "-p no:randomly"  # fmt: skip
        print(f"  reproduce: seed {finding.seed} (worker {finding.worker}): {again}")
        if finding.kind == "same-worker":
            ids = " ".join(shlex.quote(t) for t in (*finding.predecessors, finding.victim))
            print(f"  minimal: pytest -p no:randomly {ids}")
        else:
            print(f"  on another worker in every plan that changed it: "
                  f"{', '.join(finding.suspects) or '(none in common)'}")  # fmt: skip
            print(f"  on the other workers in seed {finding.seed}'s plan: "
                  f"{', '.join(finding.concurrent) or '(none)'}")  # fmt: skip
    print(f"rtgov races: details in {home / 'races.json'}")
