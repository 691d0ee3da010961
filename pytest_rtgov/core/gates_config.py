"""The gates configuration (``gates.toml``): parsed, validated, frozen.

Pure: takes the decoded TOML mapping and the file name (for messages) and returns
a :class:`GatesConfig`, or raises :class:`GatesConfigError` naming the file, the key
path (``gates[2].max``) and what was expected.

Schema (see docs/gates.md)::

    [defaults]
    confidence = 0.99        # for statistical rules on repeated samples
    min_samples = 5          # fewer samples on either side: no significance test
    baseline = "fixtures/baseline"   # relative to the gates file

    [[gates]]
    name = "validation accuracy"
    metric = "val_accuracy"            # wall_time, cpu_time, peak_memory, gpu_time,
                                       # gpu_memory, or a recorded metric name
    tests = ["tests/workload/test_validation.py::*"]   # node-id globs
    fixtures = ["trained_model"]       # fixture names (globs)
    markers = ["slow"]                 # marker names
    min = 0.90                         # budgets (numbers, or "512 MiB", "250 ms")
    max = 1.0
    max_regression_pct = 5.0           # worse than baseline by more than 5 % ...
    max_regression = 0.02              # ... and/or by more than this, in metric units
    exact = true                       # digests: bit-identical to the baseline
    ab = true                          # timing: against the baseline code, same process
    calibrated = true                  # time / calibration kernel time: shared across machines

``ab_ref`` in ``[defaults]`` is a git ref, or ``"accepted"``: the code the last
baseline refresh accepted (``refs/rtgov/accepted``), HEAD until there is one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_rtgov.errors import RtgovError

__all__ = [
    "BUILTIN_METRICS",
    "Gate",
    "GatesConfig",
    "GatesConfigError",
    "format_quantity",
    "parse_gates",
    "parse_quantity",
]

# builtin metric -> (unit, machine dependent)
BUILTIN_METRICS: dict[str, tuple[str, bool]] = {
    "wall_time": ("s", True),
    "cpu_time": ("s", True),
    "peak_memory": ("bytes", True),
    "gpu_time": ("s", True),
    "gpu_memory": ("bytes", True),
}

_UNITS = {
    "s": ("s", 1.0),
    "ms": ("s", 1e-3),
    "us": ("s", 1e-6),
    "ns": ("s", 1e-9),
    "b": ("bytes", 1),
    "kb": ("bytes", 1000),
    "mb": ("bytes", 1000**2),
    "gb": ("bytes", 1000**3),
    "kib": ("bytes", 1 << 10),
    "mib": ("bytes", 1 << 20),
    "gib": ("bytes", 1 << 30),
}
_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]+)\s*$")

_DEFAULT_KEYS = {
    "confidence",
    "min_samples",
    "baseline",
    "ab_ref",
    "ab_pairs",
    "confirm",
    "rounds",
}
_AB_METRICS = ("wall_time", "cpu_time", "gpu_time")
_GATE_KEYS = {
    "name",
    "metric",
    "tests",
    "fixtures",
    "markers",
    "min",
    "max",
    "max_regression_pct",
    "max_regression",
    "exact",
    "ab",
    "calibrated",
}


class GatesConfigError(RtgovError):
    """``gates.toml`` is malformed; the message names the file, key path and expectation."""

    def __init__(self, source: str, place: str, expected: str) -> None:
        self.source, self.place, self.expected = source, place, expected
        super().__init__(f"{source}: at {place}: expected {expected}")


@dataclass(frozen=True, slots=True)
class Gate:
    """One gate: which subjects, which metric, which rules."""

    name: str
    metric: str
    tests: tuple[str, ...] = ()
    fixtures: tuple[str, ...] = ()
    markers: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    max_regression_pct: float | None = None
    max_regression: float | None = None
    exact: bool = False
    ab: bool = False
    calibrated: bool = False
    place: str = ""

    @property
    def builtin(self) -> bool:
        return self.metric in BUILTIN_METRICS

    @property
    def machine_dependent(self) -> bool:
        return self.builtin and BUILTIN_METRICS[self.metric][1] and not self.calibrated

    @property
    def has_regression_rule(self) -> bool:
        return self.max_regression_pct is not None or self.max_regression is not None

    def rules(self) -> str:
        """``">= 0.9, regression <= 0.02"``, quantities in readable units.

        >>> Gate(name="m", metric="peak_memory", maximum=512 * 2**20).rules()
        '<= 512 MiB'
        """
        parts = []
        if self.minimum is not None:
            parts.append(f">= {format_quantity(self.metric, self.minimum)}")
        if self.maximum is not None:
            parts.append(f"<= {format_quantity(self.metric, self.maximum)}")
        if self.max_regression_pct is not None:
            parts.append(f"regression <= {self.max_regression_pct:g}%")
        if self.max_regression is not None:
            parts.append(f"regression <= {format_quantity(self.metric, self.max_regression)}")
        if self.exact:
            parts.append("exact")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class GatesConfig:
    source: str
    gates: tuple[Gate, ...] = ()
    confidence: float = 0.99
    min_samples: int = 5
    baseline: str = ".rtgov/baseline"
    ab_ref: str = "HEAD"
    ab_pairs: int = 20
    confirm: int = 1
    rounds: int | None = None

    @property
    def calibrated(self) -> bool:
        return any(g.calibrated for g in self.gates)

    @property
    def ab_gates(self) -> tuple[Gate, ...]:
        return tuple(g for g in self.gates if g.ab)


def format_quantity(metric: str, value: float) -> str:
    """Seconds and bytes of builtin metrics in readable units; other values as ``:g``.

    >>> format_quantity("wall_time", 0.25), format_quantity("peak_memory", 3 * 2**20)
    ('250 ms', '3 MiB')
    """
    unit = BUILTIN_METRICS.get(metric, ("", False))[0]
    scales = {
        "s": (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)),
        "bytes": (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10), ("B", 1)),
    }.get(unit)
    if not scales or value == 0:
        return f"{value:g}"
    for name, scale in scales:
        if abs(value) >= scale:
            return f"{value / scale:.4g} {name}"
    return f"{value:g}"


def _shown(value: Any) -> str:
    """``repr``, but a huge integer as its number of digits (a 400-digit threshold)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return f"a {len(str(abs(value)))}-digit integer"
    return repr(value)


def _finite(value: Any) -> float | None:
    """A real number as a finite float; None for booleans, non-numbers, NaN, infinities
    and integers too large for a float (``float(10**400)`` raises OverflowError)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def parse_quantity(value: Any, *, metric: str, source: str, place: str) -> float:
    """A number, or for builtin metrics a string with a unit ("512 MiB", "250 ms").

    >>> parse_quantity("2 MiB", metric="peak_memory", source="g", place="p")
    2097152.0
    """
    if isinstance(value, bool):
        raise GatesConfigError(source, place, f"a number (got {value!r})")
    if isinstance(value, (int, float)):
        number = _finite(value)
        if number is None:
            raise GatesConfigError(source, place, f"a finite number (got {_shown(value)})")
        return number
    if isinstance(value, str) and metric in BUILTIN_METRICS:
        want = BUILTIN_METRICS[metric][0]
        match = _QUANTITY.match(value)
        unit = _UNITS.get(match.group(2).lower()) if match else None
        if match is None or unit is None or unit[0] != want:
            examples = '"250 ms", "1.5 s"' if want == "s" else '"512 MiB", "2 GiB"'
            raise GatesConfigError(
                source, place, f"a number of {want} or a quantity like {examples} (got {value!r})"
            )
        number = float(match.group(1)) * unit[1]
        if not math.isfinite(number):
            raise GatesConfigError(source, place, f"a finite number (got {value!r})")
        return number
    raise GatesConfigError(source, place, f"a number (got {_shown(value)})")


def _str_list(value: Any, source: str, place: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise GatesConfigError(source, place, f"a list of non-empty strings (got {value!r})")
    return tuple(value)


def _unknown(keys: Any, allowed: set[str], source: str, place: str) -> None:
    extra = sorted(set(keys) - allowed)
    if extra:
        raise GatesConfigError(
            source,
            f"{place}.{extra[0]}" if place else extra[0],
            f"one of the keys {', '.join(sorted(allowed))} (unknown key {extra[0]!r})",
        )


def _parse_gate(raw: Any, index: int, source: str, seen: set[str]) -> Gate:
    place = f"gates[{index}]"
    if not isinstance(raw, Mapping):
        raise GatesConfigError(source, place, "a table ([[gates]])")
    _unknown(raw, _GATE_KEYS, source, place)
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise GatesConfigError(source, f"{place}.name", f"a non-empty string (got {name!r})")
    if name in seen:
        raise GatesConfigError(source, f"{place}.name", f"a unique gate name ({name!r} repeats)")
    seen.add(name)
    metric = raw.get("metric")
    if not isinstance(metric, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_.:/-]*$", metric):
        raise GatesConfigError(
            source, f"{place}.metric", f"a builtin metric or a metric name (got {metric!r})"
        )
    selectors = {
        key: _str_list(raw[key], source, f"{place}.{key}")
        for key in ("tests", "fixtures", "markers")
        if key in raw
    }
    if not selectors:
        raise GatesConfigError(source, place, "at least one selector: tests, fixtures or markers")
    if not any(selectors.values()):
        raise GatesConfigError(
            source,
            place,
            f"a selector that names something: gate {name!r} must select at least one test, "
            "fixture or marker (tests, fixtures and markers are all empty lists)",
        )

    calibrated = raw.get("calibrated", False)
    if not isinstance(calibrated, bool):
        raise GatesConfigError(source, f"{place}.calibrated", f"true or false (got {calibrated!r})")
    if calibrated and metric not in ("wall_time", "cpu_time"):
        raise GatesConfigError(
            source, f"{place}.calibrated", f"wall_time or cpu_time for calibrated = true ({metric})"
        )

    def number(key: str) -> float | None:
        if key not in raw:
            return None
        if calibrated and isinstance(raw[key], str):
            raise GatesConfigError(
                source,
                f"{place}.{key}",
                f"a plain number of calibration units for a calibrated gate (got {raw[key]!r})",
            )
        return parse_quantity(raw[key], metric=metric, source=source, place=f"{place}.{key}")

    minimum, maximum = number("min"), number("max")
    pct = raw.get("max_regression_pct")
    if pct is not None:
        if _finite(pct) is None:
            raise GatesConfigError(
                source,
                f"{place}.max_regression_pct",
                f"a percentage, e.g. 10 for 10% (got {_shown(pct)})",
            )
        pct = float(pct)
    absolute = number("max_regression")
    exact = raw.get("exact", False)
    if not isinstance(exact, bool):
        raise GatesConfigError(source, f"{place}.exact", f"true or false (got {exact!r})")
    for key, value in (("max_regression_pct", pct), ("max_regression", absolute)):
        if value is not None and value < 0:
            raise GatesConfigError(source, f"{place}.{key}", f"a number >= 0 (got {value:g})")
    if minimum is not None and maximum is not None and minimum > maximum:
        raise GatesConfigError(
            source,
            f"{place}.min",
            f"min <= max (min {minimum:g} > max {maximum:g}): no value passes",
        )
    if exact and (
        minimum is not None or maximum is not None or pct is not None or absolute is not None
    ):
        raise GatesConfigError(
            source, f"{place}.exact", "exact alone: an exact gate compares digests, not numbers"
        )
    if exact and metric in BUILTIN_METRICS:
        raise GatesConfigError(
            source,
            f"{place}.exact",
            f"a digest metric for exact = true ({metric} is a measurement)",
        )
    ab = raw.get("ab", False)
    if not isinstance(ab, bool):
        raise GatesConfigError(source, f"{place}.ab", f"true or false (got {ab!r})")
    if ab and metric not in _AB_METRICS:
        raise GatesConfigError(
            source, f"{place}.ab", f"a timing metric ({', '.join(_AB_METRICS)}) for ab = true"
        )
    if ab and calibrated:
        raise GatesConfigError(
            source, f"{place}.calibrated", "ab or calibrated, not both (A/B needs no calibration)"
        )
    if ab and pct is None and absolute is None:
        raise GatesConfigError(
            source, f"{place}.ab", "a regression rule (max_regression_pct or max_regression)"
        )
    if not exact and minimum is None and maximum is None and pct is None and absolute is None:
        raise GatesConfigError(
            source, place, "a rule: min, max, max_regression_pct, max_regression or exact = true"
        )
    return Gate(
        name=name,
        metric=metric,
        tests=selectors.get("tests", ()),
        fixtures=selectors.get("fixtures", ()),
        markers=selectors.get("markers", ()),
        minimum=minimum,
        maximum=maximum,
        max_regression_pct=pct,
        max_regression=absolute,
        exact=exact,
        ab=ab,
        calibrated=calibrated,
        place=place,
    )


def _int_default(
    defaults: Mapping[str, Any], key: str, default: int | None, lo: int, hi: int | None, source: str
) -> Any:
    value = defaults.get(key, default)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < lo
        or (hi is not None and value > hi)
    ):
        expected = f"an integer from {lo} to {hi}" if hi else f"an integer >= {lo}"
        raise GatesConfigError(source, f"defaults.{key}", f"{expected} (got {_shown(value)})")
    return value


def parse_gates(data: Mapping[str, Any], *, source: str) -> GatesConfig:
    """Validate a decoded ``gates.toml``."""
    _unknown(data, {"defaults", "gates"}, source, "")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, Mapping):
        raise GatesConfigError(source, "defaults", "a table ([defaults])")
    _unknown(defaults, _DEFAULT_KEYS, source, "defaults")
    confidence = defaults.get("confidence", 0.99)
    if (
        isinstance(confidence, bool)
        or not isinstance(confidence, (int, float))
        or not (0.5 <= confidence < 1)
    ):
        raise GatesConfigError(
            source,
            "defaults.confidence",
            f"a number from 0.5 to below 1 (got {_shown(confidence)})",
        )
    min_samples = _int_default(defaults, "min_samples", 5, 2, 10_000, source)
    baseline = defaults.get("baseline", ".rtgov/baseline")
    if not isinstance(baseline, str) or not baseline:
        raise GatesConfigError(source, "defaults.baseline", f"a path (got {baseline!r})")
    ab_ref = defaults.get("ab_ref", "HEAD")
    if (
        not isinstance(ab_ref, str)
        or not ab_ref.strip()
        or ab_ref.startswith("-")
        or any(c.isspace() or not c.isprintable() for c in ab_ref)
    ):
        raise GatesConfigError(
            source,
            "defaults.ab_ref",
            f"a git ref or revision, without whitespace and not starting with '-' "
            f"(got {ab_ref!r})",
        )
    ab_pairs = _int_default(defaults, "ab_pairs", 20, 5, 1000, source)
    confirm = _int_default(defaults, "confirm", 1, 0, 5, source)
    rounds = _int_default(defaults, "rounds", None, 1, 10_000, source)
    raw_gates = data.get("gates", [])
    if not isinstance(raw_gates, list):
        raise GatesConfigError(source, "gates", "an array of tables ([[gates]])")
    seen: set[str] = set()
    gates = tuple(_parse_gate(raw, i, source, seen) for i, raw in enumerate(raw_gates))
    return GatesConfig(
        source=source,
        gates=gates,
        confidence=float(confidence),
        min_samples=min_samples,
        baseline=baseline,
        ab_ref=ab_ref,
        ab_pairs=ab_pairs,
        confirm=confirm,
        rounds=rounds,
    )
