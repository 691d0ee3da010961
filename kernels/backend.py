"""Choose the array module: numpy, or cupy when it imports and sees a GPU.

``RTGOV_BACKEND=numpy|cupy`` forces one. Forcing cupy where it cannot run is an
error, never a silent fall back to numpy: a measurement labelled "cupy" must be one.
"""

from __future__ import annotations

import functools
import os
from types import ModuleType

__all__ = ["BACKEND_ENV", "BackendError", "backend_name", "get_xp"]

BACKEND_ENV = "RTGOV_BACKEND"
_CHOICES = ("numpy", "cupy")


class BackendError(RuntimeError):
    """The requested array backend cannot be used here."""


def _cupy_with_gpu() -> tuple[ModuleType | None, str]:
    try:
        import cupy  # type: ignore[import-not-found]
    except Exception as exc:  # ImportError, or a CUDA library failing to load
        return None, f"cupy does not import ({type(exc).__name__}: {exc})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return None, f"cupy cannot query CUDA devices ({type(exc).__name__}: {exc})"
    if count < 1:
        return None, "cupy sees no CUDA device"
    return cupy, ""


@functools.cache
def _resolve(requested: str) -> ModuleType:
    if requested not in ("", *_CHOICES):
        raise BackendError(
            f"invalid value for {BACKEND_ENV}, expected 'numpy' or 'cupy' (not {requested!r})"
        )
    if requested in ("", "cupy"):
        cupy, why = _cupy_with_gpu()
        if cupy is not None:
            return cupy
        if requested == "cupy":
            raise BackendError(f"{BACKEND_ENV}=cupy was requested but {why}")
    import numpy

    return numpy


def get_xp(requested: str | None = None) -> ModuleType:
    """Return the array module: ``requested``, else ``$RTGOV_BACKEND``, else auto."""
    if requested is None:
        requested = os.environ.get(BACKEND_ENV, "")
    return _resolve(requested.strip().lower())


def backend_name(xp: ModuleType) -> str:
    """``"numpy"`` or ``"cupy"`` for an array module returned by :func:`get_xp`."""
    return xp.__name__.split(".")[0]
