"""Running a recorded session again: its code checked out, its environment restored.

``rtgov replay`` (cli/replay.py) asks three things of this module, in order:

- :func:`plan_code`: where the recorded code is. The record's ``git.commit``,
  ``git.dirty`` and ``git.diff_sha256`` (measure/environment.py) say which code ran. A
  working tree at that commit with the same uncommitted changes (or none, as recorded)
  is used in place; a clean recorded commit that differs from the working tree is
  checked out in a temporary ``git worktree`` (detached); a recorded uncommitted diff
  that this working tree does not have, or a commit missing from the repository, is
  refused. A record without git facts replays the working tree as it is, and says so.
- :func:`replay_environment`: the replay's process environment. Every variable that
  changes numeric results and that a record holds when it was set
  (``measure.environment.RESULT_ENV_VARS``, ``CUPY_*``) is set to its recorded value, or
  removed where the record has none, before the interpreter starts: before numpy or cupy
  is imported. ``--env
  NAME=VALUE`` varies one on purpose (the fingerprint check then names it).
- :func:`run_session`: pytest in a subprocess, on the recorded node ids in the
  record's order, with ``--rtgov`` into a throwaway state directory, every stage body
  executed (``--rtgov-stage-cache off``) and every checkpoint's array kept.

:func:`replay_session` is those steps around one command, as ``rtgov replay`` and
``rtgov replay --schedule`` (cli/replay_schedule.py) both run them: the code planned, the
environment restored, the session run, the worktree removed, its record read back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_rtgov.errors import RecordFormatError, RefusedError, RtgovError
from pytest_rtgov.measure.environment import RESULT_ENV_VARS, collect_git

if TYPE_CHECKING:
    from pytest_rtgov.core.records import RunRecord

__all__ = [
    "DROPPED_VARIABLES",
    "Changed",
    "CodePlan",
    "ReplayRefusedError",
    "ReplayTimeoutError",
    "ReplayedSession",
    "plan_code",
    "remove_worktree",
    "replay_command",
    "replay_environment",
    "replay_session",
    "run_session",
    "xdist_installed",
]

# Not passed to the replay session: it is a measurement in a throwaway state directory,
# signed by this machine's local key, not a CI gate (the replay leaf is signed apart).
# what a replayed or planned session must not inherit (store/races.py too)
DROPPED_VARIABLES = ("CI", "PYTEST_ADDOPTS", "PYTEST_XDIST_AUTO_NUM_WORKERS")


class ReplayRefusedError(RefusedError):
    """The recorded session cannot be replayed as recorded (the message says why)."""


class ReplayTimeoutError(RtgovError):
    """The replay session ran past ``--timeout`` (exit 4)."""


@dataclass(frozen=True)
class CodePlan:
    """Where the replay runs pytest (``cwd``), and how that code was chosen."""

    cwd: Path
    how: str
    commit: str
    worktree: Path | None = None  # a temporary worktree to remove afterwards
    git_root: Path | None = None


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, timeout=120, check=False)


def plan_code(environment: Mapping[str, str], rootdir: Path, *, run_id: str) -> CodePlan:
    """The code the run recorded, ready to run (see the module's docstring). Raises
    :class:`ReplayRefusedError` for code that cannot be had as recorded."""
    commit = environment.get("git.commit", "")
    if not commit:
        return CodePlan(rootdir, "the working tree as it is (run recorded no git commit)", "")
    dirty = environment.get("git.dirty") == "true"
    recorded_diff = environment.get("git.diff_sha256", "")
    here = collect_git(rootdir)
    if here.get("git.commit") == commit and here.get("git.diff_sha256", "") == recorded_diff:
        state = "with the recorded uncommitted changes" if dirty else "clean"
        return CodePlan(rootdir, f"in place: commit {commit[:12]}, {state}", commit)
    if dirty:
        raise ReplayRefusedError(
            f"run {run_id} was recorded on commit {commit[:12]} with uncommitted changes "
            f"(diff sha256 {recorded_diff[:12]}); this working tree ({_describe(here)}) "
            "does not have them, and they cannot be reproduced from git: restore those "
            "changes (or replay a run recorded on a committed tree)"
        )
    top = _git(rootdir, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise ReplayRefusedError(
            f"run {run_id} was recorded on commit {commit[:12]}, but {rootdir} is not in a "
            "git repository now: replay it from a clone of the repository"
        )
    git_root = Path(top.stdout.decode().strip())
    if _git(git_root, "cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        raise ReplayRefusedError(
            f"run {run_id} was recorded on commit {commit}, which is not in the repository "
            f"{git_root}: fetch it (git fetch origin {commit}) and replay again"
        )
    where = Path(tempfile.mkdtemp(prefix="rtgov-replay-")) / "code"
    added = _git(git_root, "worktree", "add", "--detach", "--quiet", str(where), commit)
    if added.returncode != 0:
        message = added.stderr.decode(errors="replace").strip()
        raise ReplayRefusedError(f"cannot check out commit {commit[:12]} in {where}: {message}")
    relative = rootdir.resolve().relative_to(git_root.resolve())
    return CodePlan(
        where / relative,
        f"commit {commit[:12]} checked out in a temporary worktree "
        f"(the working tree is {_describe(here)})",
        commit,
        worktree=where,
        git_root=git_root,
    )


def _describe(git: Mapping[str, str]) -> str:
    if not git:
        return "not a git checkout"
    state = "with uncommitted changes" if git.get("git.dirty") == "true" else "clean"
    return f"at {git.get('git.commit', '?')[:12]}, {state}"


def remove_worktree(plan: CodePlan) -> None:
    """Remove the temporary worktree of ``plan`` (if any), and git's note of it."""
    if plan.worktree is None or plan.git_root is None:
        return
    _git(plan.git_root, "worktree", "remove", "--force", str(plan.worktree))
    shutil.rmtree(plan.worktree.parent, ignore_errors=True)
    _git(plan.git_root, "worktree", "prune")


def restored_names(recorded: Mapping[str, str]) -> list[str]:
    """The variables a replay sets from the record (or removes): sorted."""
    names = set(RESULT_ENV_VARS)
    names |= {k[4:] for k in recorded if k.startswith("env.CUPY_")}
    return sorted(names)


def replay_environment(
    recorded: Mapping[str, str],
    base: Mapping[str, str],
    overrides: Mapping[str, str] | None = None,
) -> tuple[dict[str, str], list[tuple[str, str | None, str | None]]]:
    """The replay's environment: ``base`` with every determinism-relevant variable as
    the record has it (``env.NAME`` facts; absent: removed), then ``overrides``.
    Returns it and ``(name, value here, value in the replay)`` for each that changed."""
    overrides = overrides or {}
    env = {k: v for k, v in base.items() if k not in DROPPED_VARIABLES}
    changed: list[tuple[str, str | None, str | None]] = []
    for name in restored_names(recorded):
        want = overrides.get(name, recorded.get(f"env.{name}"))
        have = env.get(name)
        if want is None:
            env.pop(name, None)
        else:
            env[name] = want
        if have != want:
            changed.append((name, have, want))
    for name, value in overrides.items():
        if name not in env or env[name] != value:
            env[name] = value
    return env, changed


def replay_command(
    nodeids: Sequence[str], *, state_dir: Path, keyword: str | None, xdist: bool
) -> list[str]:
    """The pytest command line of a replay (run in the plan's ``cwd``)."""
    command = [sys.executable, "-m", "pytest", *nodeids, "--rtgov", "--rtgov-dir", str(state_dir),
               "--rtgov-stage-cache", "off", "--rtgov-keep-checkpoints",
               "-p", "no:cacheprovider", "-p", "no:randomly", "-q", "-rN"]  # fmt: skip
    if xdist:  # a project whose addopts ask for workers: one process, in order
        command += ["-n", "0"]
    if keyword:
        command += ["-k", keyword]
    return command


def run_session(
    command: Sequence[str], *, cwd: Path, env: Mapping[str, str], timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the replay session; its output is returned, not shown. A session that runs
    past ``timeout`` seconds is stopped: a :class:`ReplayTimeoutError`."""
    try:
        return subprocess.run(
            list(command), cwd=cwd, env=dict(env), capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise ReplayTimeoutError(
            f"the replay session did not finish within --timeout {timeout:g} s and was "
            "stopped: nothing was compared or recorded"
        ) from None


def xdist_installed() -> bool:
    """Whether pytest-xdist is installed (the replay then passes ``-n 0``)."""
    import importlib.util

    return importlib.util.find_spec("xdist") is not None


Changed = list[tuple[str, str | None, str | None]]  # (name, value here, value in the replay)


@dataclass(frozen=True)
class ReplayedSession:
    """What :func:`replay_session` ran: the code it chose, the finished process, the
    session's record and its wall seconds."""

    code: CodePlan
    done: subprocess.CompletedProcess[str]
    record: RunRecord
    seconds: float


def replay_session(
    environment: Mapping[str, str],
    command: Sequence[str],
    *,
    run_id: str,
    state: Path,
    overrides: Mapping[str, str] | None,
    timeout: float | None,
    what: str,
    announce: Callable[[CodePlan, Changed], None],
) -> ReplayedSession:
    """Run ``command`` as run ``run_id`` ran (its ``environment`` facts): the code of
    :func:`plan_code` (from pytest's rootdir), this process's environment made the
    record's by :func:`replay_environment`, ``announce(code, changed)`` just before the
    session starts; the worktree removed whatever happened. A session that wrote no
    record into ``state`` has its output's tail written to stderr and is a
    :class:`RecordFormatError` naming ``what``."""
    from pytest_rtgov.store.pytest_config import locate
    from pytest_rtgov.store.runs import RunStore

    code = plan_code(environment, locate().rootdir, run_id=run_id)
    try:
        env, changed = replay_environment(environment, os.environ, overrides)
        announce(code, changed)
        started = time.monotonic()
        done = run_session(command, cwd=code.cwd, env=env, timeout=timeout)
        seconds = time.monotonic() - started
    finally:
        remove_worktree(code)
    try:
        record = RunStore(state).read("latest")
    except RtgovError:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-2000:])
        raise RecordFormatError(str(state), what,
                                f"a run record (pytest exited {done.returncode}; its output "
                                "is above)") from None  # fmt: skip
    return ReplayedSession(code, done, record, seconds)
