"""What the session benchmarks (replay, scheduler, stages, memory_modes) share: the
export of ``--ref``, the environment of their child processes, the ``os.wait4`` runner,
the machine line and the median/quartile statistics."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PINNED = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# what a child must not inherit: CI output, a signing key, the caller's pytest options, a fault
UNSET = ("CI", "GITHUB_ACTIONS", "RTGOV_SIGNING_KEY", "PYTEST_ADDOPTS", "KERNELS_FAULT")

LOOP_TIMER = '''"""For benches/{bench}: times pytest's run-test loop ({how})."""
import json, os, time
import pytest

@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session):
    start, cpu = time.perf_counter(), time.process_time()
    try:
        return (yield)
    finally:
        loop, loop_cpu = time.perf_counter() - start, time.process_time() - cpu
        out = os.environ.get("{env_var}")
        if out:
            with open(out, "w") as fh:
                json.dump({{"loop_s": loop, "loop_cpu_s": loop_cpu}}, fh)
'''


def loop_timer(bench: str, how: str, env_var: str) -> str:
    """A pytest plugin's source that writes the run-test loop's wall and CPU seconds as
    JSON to the file ``env_var`` names (nothing when it is unset)."""
    return LOOP_TIMER.format(bench=bench, how=how, env_var=env_var)


def export_ref(ref: str, dest: Path, copied: Sequence[str]) -> str:
    """The code at ``ref`` (the paths ``copied``) extracted into ``dest`` by ``git
    archive``; returns ``ref``'s full sha."""
    sha = subprocess.run(
        ["git", "rev-parse", ref], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    archive = subprocess.run(["git", "archive", sha, *copied], cwd=ROOT, capture_output=True)
    if archive.returncode != 0:
        raise SystemExit(f"git archive {sha} failed: {archive.stderr.decode()}")
    dest.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return sha


def child_env(
    paths: Sequence[Path], unset: Sequence[str] = UNSET, **extra: str
) -> dict[str, str]:
    """This environment with the BLAS threads pinned, ``PYTHONPATH`` set to ``paths``,
    ``extra`` added and ``unset`` removed."""
    env = dict(os.environ, **PINNED)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
    env.update(extra)
    for name in unset:
        env.pop(name, None)
    return env


def run_timed(
    cmd: Sequence[str], cwd: Path, env: Mapping[str, str], log: Path, ok: Sequence[int] = (0,)
) -> dict[str, Any]:
    """One fresh process, its output to ``log``: its wall (``os.wait4``), CPU (its
    children included), peak RSS, exit status and the 1-minute load before and after.
    An exit status not in ``ok`` stops the bench with the log's tail."""
    load0 = os.getloadavg()[0]
    with open(log, "wb") as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=dict(env), stdout=sink, stderr=sink)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code not in ok:
        raise SystemExit(f"{' '.join(cmd)} exited {code}:\n{log.read_text()[-4000:]}")
    return {
        "exit": code,
        "wall_s": round(wall, 4),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 4),
        "maxrss_kib": usage.ru_maxrss,
        "loadavg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }


def machine(with_numpy: bool = True) -> dict[str, Any]:
    """CPU count, Python, platform (and numpy's version), and the pinned threads."""
    out: dict[str, Any] = {"cpu_count": os.cpu_count(), "python": platform.python_version()}
    if with_numpy:
        import numpy

        out["numpy"] = numpy.__version__
    return {**out, "platform": platform.platform(), **PINNED}


def median_quartiles(
    values: Iterable[float], digits: int, round_single: bool = True
) -> dict[str, Any]:
    """Median, first and third quartile (rounded to ``digits``), count. One value is
    both quartiles (rounded too unless ``round_single`` is False); none gives zeros."""
    vs = sorted(values)
    if len(vs) < 2:
        one = [(round(v, digits) if round_single else v) for v in vs[:1]]
        quartiles = one * 2 if one else [0.0, 0.0]
    else:
        q = statistics.quantiles(vs, n=4)
        quartiles = [round(q[0], digits), round(q[2], digits)]
    return {"median": round(statistics.median(vs), digits), "q1_q3": quartiles, "n": len(vs)}
