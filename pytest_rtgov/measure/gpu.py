"""GPU time from CUDA events and the peak of cupy's memory pool, on the cupy backend.

The backend follows ``RTGOV_BACKEND`` as the reference kernels do: ``numpy`` never
touches cupy, ``cupy`` requires a usable GPU, unset means "cupy if it imports and
sees a device". Nothing here imports cupy unless it is installed.
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType
from typing import Any

from pytest_rtgov.errors import InvalidOptionError
from pytest_rtgov.measure.memory import _StackedPeak

__all__ = ["GpuProbe", "detect_cupy"]


def detect_cupy(environ: dict[str, str] | None = None) -> ModuleType | None:
    """The cupy module when the session runs on the cupy backend, else None."""
    env = os.environ if environ is None else environ
    requested = env.get("RTGOV_BACKEND", "").strip().lower()
    if requested == "numpy":
        return None
    if requested not in ("", "cupy"):
        raise InvalidOptionError(
            f"invalid value for RTGOV_BACKEND, expected 'numpy' or 'cupy' (not {requested!r})"
        )
    if importlib.util.find_spec("cupy") is None:
        if requested == "cupy":
            raise InvalidOptionError("RTGOV_BACKEND=cupy was requested but cupy is not installed")
        return None
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            return cupy
        why = "cupy sees no CUDA device"
    except Exception as exc:  # a CUDA library or driver failing to load
        why = f"cupy cannot use CUDA ({type(exc).__name__}: {exc})"
    if requested == "cupy":
        raise InvalidOptionError(f"RTGOV_BACKEND=cupy was requested but {why}")
    return None


class GpuProbe:
    """CUDA event timing plus pool-allocation peak tracking through a MemoryHook."""

    def __init__(self, cupy: Any) -> None:
        self._cp = cupy
        self._events: list[Any] = []
        self._peaks = _StackedPeak()

        class _PoolPeakHook(cupy.cuda.MemoryHook):
            name = "rtgov_pool_peak"

            def __init__(self) -> None:
                self.current = 0
                self.peak = 0

            def malloc_postprocess(self, **kwargs: Any) -> None:
                self.current += int(kwargs["mem_size"])
                self.peak = max(self.peak, self.current)

            def free_postprocess(self, **kwargs: Any) -> None:
                self.current -= int(kwargs["mem_size"])

        self._hook = _PoolPeakHook()
        self._hook_entered = False

    def start(self) -> None:
        if self._peaks.depth == 0:
            self._hook.__enter__()
            self._hook_entered = True
        self._peaks.push(self._hook.current, self._hook.peak)
        self._hook.peak = self._hook.current
        event = self._cp.cuda.Event()
        event.record()
        self._events.append(event)

    def stop(self) -> tuple[int, int]:
        """GPU nanoseconds between the region's events and the pool peak above start."""
        start = self._events.pop()
        end = self._cp.cuda.Event()
        end.record()
        end.synchronize()
        elapsed_ms = self._cp.cuda.get_elapsed_time(start, end)
        peak = self._peaks.pop(self._hook.peak)
        if self._peaks.depth == 0 and self._hook_entered:
            self._hook.__exit__(None, None, None)
            self._hook_entered = False
        return round(elapsed_ms * 1e6), peak

    @property
    def device_name(self) -> str:
        props = self._cp.cuda.runtime.getDeviceProperties(self._cp.cuda.Device().id)
        name = props.get("name", b"")
        return name.decode() if isinstance(name, bytes) else str(name)

    def device_facts(self) -> dict[str, str]:
        """GPU name, multiprocessor count, CUDA runtime and driver versions."""
        runtime = self._cp.cuda.runtime
        props = runtime.getDeviceProperties(self._cp.cuda.Device().id)
        facts = {
            "gpu": self.device_name,
            "gpu_sm_count": str(props.get("multiProcessorCount", "")),
        }
        try:
            facts["cuda_runtime"] = _cuda_version(runtime.runtimeGetVersion())
            facts["cuda_driver"] = _cuda_version(runtime.driverGetVersion())
        except Exception:  # some cupy builds lack a query: not worth failing a run
            pass
        return facts


def _cuda_version(number: int) -> str:
    """CUDA encodes 12.4 as 12040."""
    return f"{number // 1000}.{(number % 1000) // 10}"
