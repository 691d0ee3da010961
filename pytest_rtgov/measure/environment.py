"""Facts about the machine and interpreter a run measured on (read, never changed)."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

__all__ = ["RESULT_ENV_VARS", "collect_environment"]

# Environment variables that change numeric results or timings of array code.
RESULT_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "CUBLAS_WORKSPACE_CONFIG",
    "RTGOV_BACKEND",
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


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


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


def collect_environment(*, backend: str, gpu_name: str | None = None) -> dict[str, str]:
    """String facts, keyed for stable JSON: interpreter, CPU, array stack, threads."""
    env = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": sys.platform,
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": str(os.cpu_count() or 0),
        "numpy": _version("numpy"),
        "blas": _blas(),
        "pytest": _version("pytest"),
        "pytest_rtgov": _version("pytest-rtgov"),
        "backend": backend,
    }
    if gpu_name:
        env["gpu"] = gpu_name
        env["cupy"] = _version("cupy") if _version("cupy") != "absent" else _cupy_dist()
    for name in RESULT_ENV_VARS:
        if name in os.environ:
            env[f"env.{name}"] = os.environ[name]
    for name in sorted(os.environ):
        if name.startswith("CUPY_"):
            env[f"env.{name}"] = os.environ[name]
    return env


def _cupy_dist() -> str:
    for dist in metadata.distributions():
        name = dist.metadata.get("Name", "")
        if name.lower().startswith("cupy"):
            return f"{name} {dist.version}"
    return "absent"
