"""The gates configuration (``gates.toml``): decoded, checked, frozen.

Pure: takes the decoded TOML mapping and the file name (for messages) and returns
a :class:`GatesConfig`, or raises :class:`GatesConfigError` naming the file, the key
path (``gates[2].max``) and what was expected.

Two steps. The shape of the file (keys, types, ranges, patterns) is declared once,
as msgspec Structs in :mod:`pytest_rtgov.core.gates_schema`, which also gives the
published JSON Schema; :func:`parse_gates` decodes with it. Then small functions
here check what a type cannot: units of quantities against the metric ("250 ms" on a
time, not on a memory), rules that combine keys (``exact`` alone, ``ab`` needs a
regression rule, ``min <= max``), selectors that name something, unique names.
The format is documented in docs/gates.md.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from msgspec import UNSET

from pytest_rtgov.core.format import format_quantity
from pytest_rtgov.core.gates_schema import (
    AB_METRICS,
    CALIBRATED_METRICS,
    QUANTITY_PATTERN,
    GatesFile,
    GateTable,
)
from pytest_rtgov.core.metrics import BUILTIN_METRICS
from pytest_rtgov.core.replay_rules import ReplayRule, parse_replay_rules
from pytest_rtgov.core.schema import convert, shown
from pytest_rtgov.errors import ReadError

__all__ = [
    "Gate",
    "GatesConfig",
    "GatesConfigError",
    "parse_gates",
    "parse_quantity",
]

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
_QUANTITY = re.compile(QUANTITY_PATTERN)


class GatesConfigError(ReadError):
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
        builtin = BUILTIN_METRICS.get(self.metric)
        return builtin is not None and builtin.machine_dependent and not self.calibrated

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
    ab_ref: str = "accepted"
    ab_pairs: int = 20
    ab_max_pairs: int = 100
    ab_max_seconds: float = 30.0
    confirm: int = 0
    rounds: int | None = None
    # [[replay]]: the tolerances `rtgov replay` grants checkpoints (core/replay_rules.py)
    replay_rules: tuple[ReplayRule, ...] = ()
    # [quarantine] max_days: the longest quarantine entry (core/quarantine.py)
    quarantine_max_days: int = 14

    @property
    def calibrated(self) -> bool:
        return any(g.calibrated for g in self.gates)

    @property
    def ab_gates(self) -> tuple[Gate, ...]:
        return tuple(g for g in self.gates if g.ab)


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
            raise GatesConfigError(source, place, f"a finite number (got {shown(value)})")
        return number
    if isinstance(value, str) and metric in BUILTIN_METRICS:
        want = BUILTIN_METRICS[metric].unit
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
    raise GatesConfigError(source, place, f"a number (got {shown(value)})")


def parse_gates(data: Mapping[str, Any], *, source: str) -> GatesConfig:
    """Validate a decoded ``gates.toml``: its shape, then the rules between keys."""
    raw = convert(data, GatesFile, source=source, error=GatesConfigError, root="")
    defaults = raw.defaults
    if any(c.isspace() or not c.isprintable() for c in defaults.ab_ref):
        raise GatesConfigError(
            source,
            "defaults.ab_ref",
            "a git ref or revision, without whitespace and not starting with '-' "
            f"(got {defaults.ab_ref!r})",
        )
    if defaults.ab_max_pairs < defaults.ab_pairs:
        raise GatesConfigError(
            source,
            "defaults.ab_max_pairs",
            f"at least ab_pairs ({defaults.ab_pairs}), the first look "
            f"(got {defaults.ab_max_pairs})",
        )
    seen: set[str] = set()
    return GatesConfig(
        source=source,
        gates=tuple(_gate(gate, i, source, seen) for i, gate in enumerate(raw.gates)),
        confidence=defaults.confidence,
        min_samples=defaults.min_samples,
        baseline=defaults.baseline,
        ab_ref=defaults.ab_ref,
        ab_pairs=defaults.ab_pairs,
        ab_max_pairs=defaults.ab_max_pairs,
        ab_max_seconds=defaults.ab_max_seconds,
        confirm=defaults.confirm,
        rounds=None if defaults.rounds is UNSET else defaults.rounds,
        replay_rules=parse_replay_rules(raw.replay, source=source, error=GatesConfigError),
        quarantine_max_days=raw.quarantine.max_days,
    )


class _Checker:
    """Raises GatesConfigError at ``gates[i]`` or one of its keys."""

    def __init__(self, source: str, place: str) -> None:
        self.source, self.place = source, place

    def fail(self, key: str, expected: str) -> GatesConfigError:
        place = f"{self.place}.{key}" if key else self.place
        return GatesConfigError(self.source, place, expected)


def _gate(raw: GateTable, index: int, source: str, seen: set[str]) -> Gate:
    """One ``[[gates]]`` table, already of the right shape: the rules between its keys."""
    at = _Checker(source, f"gates[{index}]")
    name, metric, calibrated, exact, ab = raw.name, raw.metric, raw.calibrated, raw.exact, raw.ab
    if name in seen:
        raise at.fail("name", f"a unique gate name ({name!r} repeats)")
    seen.add(name)
    given = {key: getattr(raw, key) for key in ("tests", "fixtures", "markers")}
    selectors = {
        key: (value,) if isinstance(value, str) else tuple(value)
        for key, value in given.items()
        if value is not UNSET
    }
    if not selectors:
        raise at.fail("", "at least one selector: tests, fixtures or markers")
    if not any(selectors.values()):
        raise at.fail(
            "",
            f"a selector that names something: gate {name!r} must select at least one test, "
            "fixture or marker (tests, fixtures and markers are all empty lists)",
        )
    if calibrated and metric not in CALIBRATED_METRICS:
        raise at.fail("calibrated", f"wall_time or cpu_time for calibrated = true ({metric})")

    def number(key: str, value: Any) -> float | None:
        if value is UNSET:
            return None
        if calibrated and isinstance(value, str):
            raise at.fail(
                key, f"a plain number of calibration units for a calibrated gate (got {value!r})"
            )
        return parse_quantity(value, metric=metric, source=source, place=f"{at.place}.{key}")

    minimum, maximum = number("min", raw.min), number("max", raw.max)
    pct = None if raw.max_regression_pct is UNSET else raw.max_regression_pct
    if pct is not None and not math.isfinite(pct):
        raise at.fail("max_regression_pct", f"a finite percentage, e.g. 10 for 10% (got {pct})")
    absolute = number("max_regression", raw.max_regression)
    if absolute is not None and absolute < 0:
        raise at.fail("max_regression", f"a number >= 0 (got {absolute:g})")
    if minimum is not None and maximum is not None and minimum > maximum:
        raise at.fail("min", f"min <= max (min {minimum:g} > max {maximum:g}): no value passes")
    numeric = (minimum, maximum, pct, absolute)
    if exact and any(rule is not None for rule in numeric):
        raise at.fail("exact", "exact alone: an exact gate compares digests, not numbers")
    if exact and metric in BUILTIN_METRICS:
        raise at.fail("exact", f"a digest metric for exact = true ({metric} is a measurement)")
    if ab and metric not in AB_METRICS:
        raise at.fail("ab", f"a timing metric ({', '.join(AB_METRICS)}) for ab = true")
    if ab and calibrated:
        raise at.fail("calibrated", "ab or calibrated, not both (A/B needs no calibration)")
    if ab and pct is None and absolute is None:
        raise at.fail("ab", "a regression rule (max_regression_pct or max_regression)")
    if not exact and all(rule is None for rule in numeric):
        raise at.fail("", "a rule: min, max, max_regression_pct, max_regression or exact = true")
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
        place=at.place,
    )
