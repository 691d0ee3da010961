"""Race checks, the disk and process edge: one pytest session of a given plan, in a
subprocess, into a throwaway state directory; its run record and plan read back.

Each session runs ``python -m pytest ... --rtgov --rtgov-dir <temp>
--rtgov-schedule-plan <plan file> -p no:randomly`` (``-n W`` when the plan has W > 1
workers, ``-n 0`` under one worker where xdist is installed), so pytest-randomly cannot
reorder or reseed, and the plan decides. The variables that would make it a CI gate
(``CI``) or change its workers (``PYTEST_ADDOPTS``, ``PYTEST_XDIST_AUTO_NUM_WORKERS``)
are not passed on.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_rtgov.core.schedule import Plan
from pytest_rtgov.errors import RecordFormatError, RtgovError
from pytest_rtgov.store.replay_run import DROPPED_VARIABLES, xdist_installed

__all__ = ["Session", "run_plan", "session_command", "write_plan"]

@dataclass(frozen=True)
class Session:
    """What one session recorded: its record, its plan, the observed sequences (worker
    name to node ids, in the order they started) and pytest's exit status."""

    record: Any
    plan: Plan
    observed: Mapping[str, Sequence[str]]
    returncode: int


def write_plan(plan: Plan, path: Path) -> Path:
    """The plan's canonical JSON at ``path`` (its folders made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(plan.to_json())
    return path


def session_command(
    args: Sequence[str], *, state_dir: Path, workers: int, plan_file: Path | None = None,
    seed: int | None = None,
) -> list[str]:  # fmt: skip
    """The pytest command line of one race-check session."""
    # "--opt=value": pytest would take a separate path value for a test path, and a
    # test path outside the project moves the rootdir (so the node ids) there
    command = [sys.executable, "-m", "pytest", *args, "--rtgov", f"--rtgov-dir={state_dir}",
               "-p", "no:randomly", "-p", "no:cacheprovider", "-q", "-rN"]  # fmt: skip
    if plan_file is not None:
        command += [f"--rtgov-schedule-plan={plan_file}"]
    if seed is not None:
        command += ["--rtgov-schedule", str(seed)]
    if workers > 1:
        command += ["-n", str(workers)]
    elif xdist_installed():
        command += ["-n", "0"]
    return command


def run_plan(
    args: Sequence[str], *, cwd: Path, workers: int, plan_file: Path | None = None,
    seed: int | None = None, timeout: float | None = None,
) -> Session:  # fmt: skip
    """Run one session (a plan file, or ``--rtgov-schedule seed``) and read back what it
    recorded. A session that records nothing is a :class:`RecordFormatError` quoting
    the end of its output."""
    from pytest_rtgov.store.objects import ObjectStore
    from pytest_rtgov.store.runs import RunStore

    env = {k: v for k, v in os.environ.items() if k not in DROPPED_VARIABLES}
    with tempfile.TemporaryDirectory(prefix="rtgov-races-") as temp:
        state = Path(temp) / "state"
        command = session_command(
            args, state_dir=state, workers=workers, plan_file=plan_file, seed=seed
        )
        try:
            done = subprocess.run(
                command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise RtgovError(
                f"a race-check session ran past --timeout {timeout:g} s and was stopped: "
                f"{' '.join(command)}"
            ) from None
        try:
            record = RunStore(state).read("latest")
            schedule = dict(record.schedule)
            plan = Plan.from_json(ObjectStore.of_state_dir(state).get(schedule["plan"]))
        except (RtgovError, KeyError):
            tail = (done.stdout[-3000:] + done.stderr[-2000:]).strip()
            raise RecordFormatError(
                str(state), "a race-check session",
                f"a run record with a schedule (pytest exited {done.returncode}: "
                f"{' '.join(command)}; its output ends:\n{tail})",
            ) from None  # fmt: skip
    observed = {str(k): tuple(v) for k, v in dict(schedule.get("observed", {})).items()}
    return Session(record=record, plan=plan, observed=observed, returncode=done.returncode)
