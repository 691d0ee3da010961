"""What a stage's key covers in a session, gathered from pytest: the fixture closure
(upstream stages behind plain fixtures, the code of those fixtures, their params) and the
environment that changes a stage's numbers. The key itself is ``core/stages.py``'s."""

from __future__ import annotations

import functools
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_rtgov.core.stages import KeyInputs, Upstream
from pytest_rtgov.plugin.stages import StageResult, _Spec

__all__ = ["environment", "key_inputs", "stage_inputs"]


@functools.lru_cache(maxsize=1)
def _blas() -> str:
    from pytest_rtgov.measure.environment import collect_blas

    return collect_blas()


def environment(spec: _Spec, backend: str) -> dict[str, str]:
    """The fields that change a stage's numbers: backend, array stack and BLAS, Python,
    the GPU, and the variables the stage declared (thread counts)."""
    import numpy

    env = {
        "backend": backend,
        "numpy": str(numpy.__version__),
        "blas": _blas(),
        "python": ".".join(platform.python_version_tuple()[:2]),
        "machine": platform.machine(),
        "platform": sys.platform,
        "cpu_features": _cpu_features(),
    }
    if backend == "cupy":
        import cupy

        env["cupy"] = str(cupy.__version__)
        device = cupy.cuda.Device()
        name = cupy.cuda.runtime.getDeviceProperties(device.id)["name"]
        env["gpu"] = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
    for variable in spec.env:
        env[f"env.{variable}"] = os.environ.get(variable, "")
    if any(not env[f"env.{v}"] for v in spec.env):  # unset: the libraries count the cores
        env["cpu_count"] = str(os.cpu_count() or 0)
    return env


@functools.lru_cache(maxsize=1)
def _cpu_features() -> str:
    """The CPU features numpy's kernels dispatch on (AVX2, AVX512F...), enabled ones only:
    they choose which SIMD loop, and which OpenBLAS kernel, computes a stage's numbers."""
    import importlib

    features: dict[str, bool] = {}
    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):  # 2.x, 1.x
        try:
            features = dict(importlib.import_module(module).__cpu_features__)
            break
        except (ImportError, AttributeError):
            continue
    if not features:
        return "unknown"
    return ",".join(sorted(name for name, enabled in features.items() if enabled))


def _closure(
    request: Any, names: Sequence[str]
) -> tuple[list[Any], dict[str, StageResult], dict[str, str]]:
    """Follow the plain fixtures a stage requests, and theirs in turn: their functions
    (their code is the stage's), the stages their values derive from (their outputs are
    the stage's inputs, by stage name), and the param of each parametrized one (its repr:
    each param value gets its own key)."""
    functions: list[Any] = []
    stages: dict[str, StageResult] = {}
    params: dict[str, str] = {}
    manager = request._fixturemanager
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen or name == "request":
            continue
        seen.add(name)
        try:
            defs = manager.getfixturedefs(name, request.node)
        except Exception:  # pytest's private signature changed: the code is not followed
            defs = None
        if not defs:
            continue
        fixturedef = defs[-1]
        cached = fixturedef.cached_result
        if getattr(fixturedef.func, "_rtgov_stage", None) is not None:
            value: Any = cached[0] if cached is not None else None
            if getattr(value, "_rtgov_stage_result", False):
                stages[value.stage] = value
            continue
        functions.append(fixturedef.func)
        if fixturedef.params is not None and cached is not None:
            params[name] = repr(cached[1])
        todo.extend(fixturedef.argnames)
    return functions, stages, params


def stage_inputs(
    spec: _Spec, request: Any, kwargs: Mapping[str, Any]
) -> tuple[dict[str, StageResult], list[Any], dict[str, str]]:
    """The upstream stages by stage name (requested, or behind a plain fixture), the
    functions whose code is the stage's, and the params of parametrized plain fixtures."""
    # by the marker, not isinstance: a conftest re-imported in one process (pytester,
    # reloads) may hold another copy of this module's StageResult
    direct = {n: v for n, v in kwargs.items() if getattr(v, "_rtgov_stage_result", False)}
    plain = [name for name in spec.wanted if name not in direct and name != "request"]
    functions, upstream, params = _closure(request, plain)
    upstream.update((result.stage, result) for result in direct.values())
    return upstream, [spec.function, *functions], params


def key_inputs(
    spec: _Spec,
    *,
    code: Mapping[str, str],
    backend: str,
    upstream: Mapping[str, StageResult],
    fixture_params: Mapping[str, str] | None = None,
) -> KeyInputs:
    return KeyInputs(
        stage=spec.name,
        code=code,
        params=spec.declared["params"],
        seeds=spec.declared["seeds"],
        environment=environment(spec, backend),
        upstream=tuple(
            Upstream(stage=result.stage, key=result.key, outputs=result.outputs)
            for _, result in sorted(upstream.items())
        ),
        fixture_params=dict(fixture_params or {}),
    )
