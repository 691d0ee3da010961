"""The test-only fault hook: a kernel's output moved by a few ULPs at one element.

``KERNELS_FAULT="<kernel>:<flat index>:<ulps>"`` (``gelu:1234:1``), read once when
:mod:`kernels` is imported, makes the named public kernel return its outputs with the
element at ``<flat index>`` (C order) moved ``<ulps>`` representable values towards +inf
(``nextafter``, repeated, in the output's own dtype). It is how a replay's naming of the
first divergence is tested (docs/replay.md): a known 1-ULP change at a known place.

Without the variable :func:`faultable` returns each kernel unchanged: no wrapper, no
cost. With it, only the named kernel is wrapped. Every floating-point array it returns
(a tuple's members too, recursively) is changed in place, where it has that element;
integer arrays, shorter arrays and Python scalars are left as they are. A malformed
value, or one naming no public kernel, is a ``ValueError`` at import.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["FAULT", "VARIABLE", "Fault", "check_known", "faultable", "inject", "parse_fault"]

VARIABLE = "KERNELS_FAULT"
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Fault:
    """One injected fault: ``kernel``'s outputs, element ``index``, ``ulps`` towards +inf."""

    kernel: str
    index: int
    ulps: int


def parse_fault(text: str | None) -> Fault | None:
    """``"gelu:1234:1"`` as a :class:`Fault`; None or empty: no fault.

    >>> parse_fault("gelu:1234:1")
    Fault(kernel='gelu', index=1234, ulps=1)
    """
    if not text:
        return None
    parts = text.split(":")
    try:
        kernel, index, ulps = parts[0], int(parts[1]), int(parts[2])
        if len(parts) != 3 or not kernel or index < 0 or ulps < 1:
            raise ValueError
    except (ValueError, IndexError):
        raise ValueError(
            f"{VARIABLE}={text!r}: expected <kernel>:<flat index>:<ulps>, a kernel name, an "
            "index >= 0 and ulps >= 1 (e.g. gelu:1234:1)"
        ) from None
    return Fault(kernel, index, ulps)


FAULT = parse_fault(os.environ.get(VARIABLE))
_KNOWN: set[str] = set()


def inject(function: F, fault: Fault) -> F:
    """``function`` with ``fault`` applied to every output it returns."""

    @functools.wraps(function)
    def faulted(*args: Any, **kwargs: Any) -> Any:
        return _moved(function(*args, **kwargs), fault)

    return faulted  # type: ignore[return-value]


def faultable(function: F) -> F:
    """Decorator of the public kernels: ``function`` itself unless ``KERNELS_FAULT``
    names it (see the module's docstring)."""
    _KNOWN.add(function.__name__)
    if FAULT is None or FAULT.kernel != function.__name__:
        return function
    return inject(function, FAULT)


def check_known() -> None:
    """A fault naming no public kernel fails loudly (``kernels`` calls it on import)."""
    if FAULT is not None and FAULT.kernel not in _KNOWN:
        raise ValueError(
            f"{VARIABLE}: no public kernel named {FAULT.kernel!r}; expected one of "
            f"{', '.join(sorted(_KNOWN))}"
        )


def _moved(value: Any, fault: Fault) -> Any:
    if isinstance(value, tuple):
        return tuple(_moved(item, fault) for item in value)
    dtype = getattr(value, "dtype", None)
    shape = getattr(value, "shape", None)
    if dtype is None or shape is None or dtype.kind != "f" or value.size <= fault.index:
        return value
    import numpy as np

    xp = np
    if type(value).__module__.startswith("cupy"):
        import cupy  # type: ignore[import-not-found]

        xp = cupy
    where = np.unravel_index(fault.index, shape)
    element = value[where]
    towards = xp.asarray(np.inf, dtype=dtype)
    for _ in range(fault.ulps):
        element = xp.nextafter(element, towards)
    value[where] = element
    return value
