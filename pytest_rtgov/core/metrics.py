"""Validation of user metrics and digests (pure: values in, records out)."""

from __future__ import annotations

import hashlib
import math
import numbers
import re
from typing import Any

from pytest_rtgov.core.records import Metric
from pytest_rtgov.errors import InvalidMetricError

__all__ = ["digest_metric", "value_metric"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/-]{0,127}$")


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):  # '$' would allow a last "\n"
        raise InvalidMetricError(
            f"invalid metric name {name!r}: expected a letter or '_' followed by up to 127 "
            "letters, digits or '_.:/-'"
        )
    return name


def value_metric(
    name: str, value: Any, *, unit: str = "", higher_is_better: bool | None = None
) -> Metric:
    """A numeric metric; NaN, infinities, booleans and non-numbers are refused.

    >>> value_metric("val_accuracy", 0.93, higher_is_better=True).value
    0.93
    """
    _check_name(name)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        # numpy scalars are numbers.Real; 0-d arrays are not, so convert those first.
        item = getattr(value, "item", None)
        if callable(item) and getattr(value, "shape", None) == ():
            value = item()
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise InvalidMetricError(
                f"metric {name!r}: expected a real number, got {type(value).__name__} {value!r}"
            )
    try:
        as_float = float(value)
    except OverflowError:  # an int (or Fraction) beyond a float's range, about 1.8e308
        raise InvalidMetricError(
            f"metric {name!r}: expected a finite number, got {type(value).__name__} too large "
            "for a float (beyond +-1.8e308)"
        ) from None
    if not math.isfinite(as_float):
        raise InvalidMetricError(
            f"metric {name!r}: expected a finite number, got {as_float!r}; "
            "a NaN or infinite loss usually means training diverged"
        )
    if not isinstance(unit, str):
        raise InvalidMetricError(f"metric {name!r}: unit must be a string, got {unit!r}")
    if higher_is_better is not None and not isinstance(higher_is_better, bool):
        raise InvalidMetricError(
            f"metric {name!r}: higher_is_better must be True, False or None, "
            f"got {higher_is_better!r}"
        )
    return Metric(name=name, value=as_float, unit=unit, higher_is_better=higher_is_better)


def digest_metric(name: str, data: Any) -> Metric:
    """A ``sha256:`` digest of bytes or of an array (dtype, shape and contents).

    Arrays are hashed as ``"<dtype>|<shape>|"`` followed by their C-order bytes, so
    a reshaped or re-typed output does not collide with the original.
    """
    _check_name(name)
    if isinstance(data, (bytes, bytearray, memoryview)):
        payload = bytes(data)
    elif hasattr(data, "dtype") and hasattr(data, "shape"):
        if hasattr(data, "get") and type(data).__module__.startswith("cupy"):
            data = data.get()  # cupy -> host
        import numpy as np

        host = np.ascontiguousarray(data)
        payload = f"{host.dtype.str}|{host.shape}|".encode() + host.tobytes()
    else:
        raise InvalidMetricError(
            f"digest {name!r}: expected bytes or an array, got {type(data).__name__}"
        )
    return Metric(name=name, value="sha256:" + hashlib.sha256(payload).hexdigest())
