"""Facts about the machine and interpreter a run measured on (read, never changed)."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from pytest_rtgov.measure import allocator

__all__ = [
    "RESULT_ENV_VARS",
    "collect_blas",
    "collect_environment",
    "collect_git",
    "distribution_version",
    "plugin_versions",
]

# Environment variables that change numeric results or timings of array code.
RESULT_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "CUBLAS_WORKSPACE_CONFIG",
    "RTGOV_BACKEND",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def distribution_version(dist: str) -> str:
    """The installed version of distribution ``dist``, or ``"absent"``."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def collect_blas() -> str:
    """The BLAS numpy was built with (``"scipy-openblas 0.3.27"``), as the fingerprint has it."""
    return _blas()


def _blas() -> str:
    # numpy is imported here even when the session did not use it: the BLAS build is
    # part of the environment fingerprint, and the fingerprint must not depend on
    # whether this process (an xdist controller, say) happened to import numpy.
    try:
        import numpy
    except ImportError:
        return "numpy absent"
    try:
        deps = numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{deps.get('name', '?')} {deps.get('version', '?')}".strip()
    except Exception:  # older numpy without mode="dicts": not worth failing a run over
        return "unknown"


def collect_git(rootdir: Path) -> dict[str, str]:
    """``git.commit``, ``git.branch``, ``git.dirty`` and ``git.diff_sha256`` of ``rootdir``.

    The diff hash covers ``git diff HEAD --binary`` plus every untracked, not ignored
    file's name and content, so two runs made with different uncommitted changes on
    the same commit are told apart (MLflow records the same commit for both).
    """

    def git(*args: str) -> bytes | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=rootdir, capture_output=True, timeout=20, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {}
    facts = {"git.commit": commit.decode().strip()}
    branch = git("rev-parse", "--abbrev-ref", "HEAD")
    # surrogateescape: a branch name need not be UTF-8 (the record escapes what is not)
    facts["git.branch"] = branch.decode(errors="surrogateescape").strip() if branch else ""
    diff = git("diff", "HEAD", "--binary") or b""
    untracked = (git("ls-files", "--others", "--exclude-standard", "-z") or b"").split(b"\0")
    digest = hashlib.sha256(diff)
    for name in sorted(n for n in untracked if n):
        digest.update(b"\0untracked\0" + name + b"\0")
        try:
            digest.update(hashlib.sha256((rootdir / os.fsdecode(name)).read_bytes()).digest())
        except OSError:
            pass
    dirty = bool(diff) or any(untracked)
    facts["git.dirty"] = "true" if dirty else "false"
    facts["git.diff_sha256"] = digest.hexdigest() if dirty else ""
    return facts


def plugin_versions(distributions: Iterable[tuple[str, str]]) -> str:
    """``name==version`` of pytest plugins, sorted and deduplicated, comma-separated."""
    return ",".join(sorted({f"{name}=={version}" for name, version in distributions}))


def collect_environment(
    *,
    backend: str,
    gpu_facts: dict[str, str] | None = None,
    rootdir: Path | None = None,
    plugins: str = "",
) -> dict[str, str]:
    """String facts, keyed for stable JSON: interpreter, CPU, array stack, threads,
    GPU and CUDA, the code's git state, and pytest's plugins."""
    env = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": sys.platform,
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": str(os.cpu_count() or 0),
        "numpy": distribution_version("numpy"),
        "blas": _blas(),
        "pytest": distribution_version("pytest"),
        "pytest_rtgov": distribution_version("pytest-rtgov"),
        "backend": backend,
        "allocator": allocator.describe(),
    }
    if gpu_facts:
        env.update(gpu_facts)
        cupy = distribution_version("cupy")
        env["cupy"] = cupy if cupy != "absent" else _cupy_dist()
    if plugins:
        env["pytest_plugins"] = plugins
    if rootdir is not None:
        env.update(collect_git(rootdir))
    for name in RESULT_ENV_VARS:
        if name in os.environ:
            env[f"env.{name}"] = os.environ[name]
    for name in sorted(os.environ):
        if name.startswith("CUPY_"):
            env[f"env.{name}"] = os.environ[name]
    return env


def _cupy_dist() -> str:
    for dist in metadata.distributions():
        name = dist.name or ""  # None for a distribution without metadata
        if name.lower().startswith("cupy"):
            return f"{name} {dist.version}"
    return "absent"
