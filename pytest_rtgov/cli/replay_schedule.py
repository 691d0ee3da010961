"""``rtgov replay --schedule RUN``: run a recorded schedule again and check it was followed.

The record's ``schedule.plan`` names the plan's canonical JSON in the object store. It
is written to ``<state>/replays/<id>/plan.json`` and run as it is
(``--rtgov-schedule-plan``): the same workers (``-n W``), order and per-test seeds, with
the recorded code and environment (store/replay_run.py, as ``rtgov replay`` does), into
``<state>/replays/<id>/state``. The replay session checks its own observed sequences
against the plan; a deviation exits 6 and prints the one line that reproduces the
schedule. Tests whose outcome differs from the record are listed (the schedule was
reproduced; their results were not). Nothing is appended to the ledger.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from pytest_rtgov.core.constants import ExitCode
from pytest_rtgov.errors import InvalidOptionError, NotFoundError

__all__ = ["replay_schedule_command", "run"]


def replay_schedule_command(
    nodeids: list[str], plan_file: Any, state: Any, workers: int
) -> list[str]:
    """The pytest command line that runs ``plan_file`` again."""
    from pytest_rtgov.store.replay_run import xdist_installed

    command = [sys.executable, "-m", "pytest", *nodeids, "--rtgov", f"--rtgov-dir={state}",
               f"--rtgov-schedule-plan={plan_file}", "-p", "no:randomly",
               "-p", "no:cacheprovider", "-q", "-rN"]  # fmt: skip
    if workers > 1:
        command += ["-n", str(workers)]
    elif xdist_installed():
        command += ["-n", "0"]
    return command


def run(args: argparse.Namespace) -> int:
    from pytest_rtgov.cli.replay import REPLAYS_DIR, _overrides, _record
    from pytest_rtgov.core.schedule import Plan
    from pytest_rtgov.store import replay_run
    from pytest_rtgov.store.objects import ObjectStore
    from pytest_rtgov.store.runs import new_run_id

    if args.test or args.keyword or args.stage:
        raise InvalidOptionError("--schedule replays the whole plan: not with --test/-k/--stage")
    overrides = _overrides(args.env)
    record, run_id = _record(args)
    schedule = dict(record.schedule)
    if not schedule.get("plan"):
        raise NotFoundError(f"run {run_id} recorded no schedule (it ran without --rtgov-schedule)")
    data = ObjectStore.of_state_dir(args.dir).get(schedule["plan"])
    plan = Plan.from_json(data, source=f"the plan {schedule['plan']} of run {run_id}")
    workers = len(plan.workers)
    home = args.dir / REPLAYS_DIR / new_run_id()
    home.mkdir(parents=True)
    plan_file = (home / "plan.json").absolute()
    plan_file.write_bytes(data)
    state = (home / "state").absolute()

    def announce(code: replay_run.CodePlan, changed: replay_run.Changed) -> None:
        print(f"rtgov replay --schedule: run {run_id}: plan {schedule['plan'][:19]}... "
              f"(seed {plan.seed}, {plan.policy}, {workers} worker(s), {len(plan.nodeids)} "
              f"tests); code: {code.how}", flush=True)  # fmt: skip

    session = replay_run.replay_session(
        record.environment, replay_schedule_command(plan.nodeids, plan_file, state, workers),
        run_id=run_id, state=state, overrides=overrides, timeout=args.timeout,
        what="the schedule replay session", announce=announce,
    )  # fmt: skip
    done, replayed = session.done, session.record
    again = dict(replayed.schedule)
    deviation = again.get("deviation")
    if again.get("plan") != schedule["plan"] and deviation is None:
        deviation = f"the replay ran plan {again.get('plan')}, not {schedule['plan']}"
    recorded = {t.nodeid: t.outcome for t in record.tests}
    changed = [(t.nodeid, recorded[t.nodeid], t.outcome) for t in replayed.tests
               if t.nodeid in recorded and recorded[t.nodeid] != t.outcome]  # fmt: skip
    for nodeid, was, now in changed:
        print(f"  {nodeid}: {now} (recorded: {was})")
    if deviation is not None:
        n_flag = f" -n {workers}" if workers > 1 else ""
        print(f"rtgov replay --schedule: the schedule was not followed: {deviation}")
        print(f"reproduce: pytest --rtgov-schedule-plan {shlex.quote(str(plan_file))}{n_flag} "
              f"-p no:randomly  (or: rtgov replay --schedule {run_id})")  # fmt: skip
        return int(ExitCode.GATE_BREACHED)
    observed = dict(again.get("observed", {}))
    print(f"rtgov replay --schedule: followed: {len(observed)} worker(s) ran the recorded plan "
          f"exactly ({', '.join(f'{w}: {len(t)}' for w, t in sorted(observed.items()))} "
          f"tests); {len(changed)} outcome(s) differ from the record; pytest exited "
          f"{done.returncode}; replay record in {state}")  # fmt: skip
    return int(ExitCode.OK)
