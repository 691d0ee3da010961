"""The metric vocabulary: the catalogue of built-in metrics, and validation of user
metrics and digests (pure: values in, records out).

Every name, unit, direction and machine dependence of a built-in metric is read from
:data:`BUILTIN_METRICS`; no other module keeps its own list.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from pytest_rtgov.core.records import Metric
from pytest_rtgov.errors import InvalidMetricError

__all__ = [
    "BUILTIN_METRICS",
    "CALIBRATED_SUFFIX",
    "CALIBRATED_UNIT",
    "BuiltinMetric",
    "digest_metric",
    "metric_unit",
    "value_metric",
]


@dataclass(frozen=True, slots=True)
class BuiltinMetric:
    """A metric rtgov measures itself, read from each sample's ``field``.

    ``unit`` is the unit gates, baselines and exports use (``"s"`` or ``"bytes"``);
    ``scale`` converts the sample field (nanoseconds, bytes) into it. Every built-in
    metric is lower-is-better. Machine-dependent metrics are compared only between
    runs with the same fingerprint (or calibrated); recorded metrics never are.
    """

    name: str
    unit: str
    field: str
    scale: float
    machine_dependent: bool = True
    higher_is_better: bool = False

    @property
    def is_time(self) -> bool:
        return self.unit == "s"


BUILTIN_METRICS: Mapping[str, BuiltinMetric] = MappingProxyType(
    {
        m.name: m
        for m in (
            BuiltinMetric("wall_time", "s", "wall_ns", 1e-9),
            BuiltinMetric("cpu_time", "s", "cpu_ns", 1e-9),
            BuiltinMetric("peak_memory", "bytes", "peak_memory_bytes", 1.0),
            BuiltinMetric("gpu_time", "s", "gpu_time_ns", 1e-9),
            BuiltinMetric("gpu_memory", "bytes", "gpu_memory_bytes", 1.0),
        )
    }
)
"""Built-in metrics by name, in the order tables and exports show them."""

CALIBRATED_SUFFIX = "@calibrated"
"""``wall_time@calibrated``: a time divided by the calibration kernel's time."""
CALIBRATED_UNIT = "calibration units"


def metric_unit(name: str, recorded: str = "") -> str:
    """The unit of a metric: a built-in's, calibration units, or what was recorded.

    >>> metric_unit("peak_memory"), metric_unit("wall_time@calibrated"), metric_unit("loss")
    ('bytes', 'calibration units', '')
    """
    if name in BUILTIN_METRICS:
        return BUILTIN_METRICS[name].unit
    if name.endswith(CALIBRATED_SUFFIX) and name[: -len(CALIBRATED_SUFFIX)] in BUILTIN_METRICS:
        return CALIBRATED_UNIT
    return recorded


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
