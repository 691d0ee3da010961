"""The ``[[replay]]`` tolerance rules of ``gates.toml``: parsed, matched to checkpoints,
and the arithmetic that checks them on two arrays (ULP distance as numpy defines it).

A rule names a checkpoint (a name or an fnmatch glob), may narrow it with the gates'
selectors (``tests``, ``fixtures``, ``markers``: the same meaning and matching,
:func:`pytest_rtgov.core.subjects.selects`; a rule without selectors selects every test
and fixture), and declares one tolerance: ``max_ulp``, or ``rtol``/``atol`` as
``numpy.isclose`` reads them (``|actual - expected| <= atol + rtol * |expected|``, NaN
equal to NaN). The first rule in file order that selects a checkpoint applies to it.

Pure: no disk. numpy is imported where arrays are compared, as the core's other array
code does.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from msgspec import UNSET

from pytest_rtgov.core.schema import ErrorFactory
from pytest_rtgov.core.subjects import Subject, selects

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from pytest_rtgov.core.gates_schema import ReplayTable
    from pytest_rtgov.core.replay import CheckpointRef

__all__ = [
    "ReplayRule",
    "bitwise_mismatch",
    "check_rules_used",
    "mismatch_mask",
    "parse_replay_rules",
    "rule_for",
    "ulp_distance",
    "unused_rules",
]

_ULP_FLOATS = {2: "uint16", 4: "uint32", 8: "uint64"}  # numpy's nulp_diff: float16/32/64


@dataclass(frozen=True, slots=True)
class ReplayRule:
    """One ``[[replay]]`` table: which checkpoints, and the tolerance they are granted."""

    checkpoint: str
    name: str | None = None
    tests: tuple[str, ...] = ()
    fixtures: tuple[str, ...] = ()
    markers: tuple[str, ...] = ()
    max_ulp: int | None = None
    rtol: float | None = None
    atol: float | None = None
    place: str = ""

    @property
    def label(self) -> str:
        """The rule's name, else its place in the file (``replay[1]``)."""
        return self.name or self.place or f"checkpoint {self.checkpoint!r}"

    def __str__(self) -> str:
        return self.label

    def tolerance(self) -> str:
        """``max_ulp 2`` or ``rtol 1e-06, atol 0``."""
        if self.max_ulp is not None:
            return f"max_ulp {self.max_ulp}"
        return f"rtol {self.rtol or 0:g}, atol {self.atol or 0:g}"

    def to_dict(self) -> dict[str, Any]:
        """Canonical and JSON-ready: the policy a replay attestation names by digest."""
        return {
            "atol": self.atol,
            "checkpoint": self.checkpoint,
            "fixtures": list(self.fixtures),
            "markers": list(self.markers),
            "max_ulp": self.max_ulp,
            "name": self.name,
            "rtol": self.rtol,
            "tests": list(self.tests),
        }


def parse_replay_rules(
    tables: Sequence[ReplayTable], *, source: str, error: ErrorFactory
) -> tuple[ReplayRule, ...]:
    """The ``[[replay]]`` tables, already of the right shape (``core/gates_schema.py``),
    checked for what a type cannot say: one form of tolerance, finite bounds, selectors
    that name something, unique names. ``error(source, place, expected)`` is raised."""
    rules, seen = [], set()
    for index, raw in enumerate(tables):
        place = f"replay[{index}]"
        name = None if raw.name is UNSET else raw.name
        if name is not None:
            if name in seen:
                raise error(source, f"{place}.name", f"a unique rule name ({name!r} repeats)")
            seen.add(name)
        given = {key: getattr(raw, key) for key in ("tests", "fixtures", "markers")}
        selectors = {
            key: (value,) if isinstance(value, str) else tuple(value)
            for key, value in given.items()
            if value is not UNSET
        }
        if selectors and not any(selectors.values()):
            raise error(
                source,
                place,
                "a selector that names something (tests, fixtures and markers are all "
                "empty lists; leave them out to select every test and fixture)",
            )
        max_ulp = None if raw.max_ulp is UNSET else raw.max_ulp
        rtol = None if raw.rtol is UNSET else raw.rtol
        atol = None if raw.atol is UNSET else raw.atol
        if max_ulp is not None and (rtol is not None or atol is not None):
            key = "rtol" if rtol is not None else "atol"
            raise error(
                source, f"{place}.{key}", "max_ulp or rtol/atol, not both (one tolerance a rule)"
            )
        if max_ulp is None and rtol is None and atol is None:
            raise error(source, place, "a tolerance: max_ulp, or rtol and/or atol")
        for key, bound in (("rtol", rtol), ("atol", atol)):
            if bound is not None and not math.isfinite(bound):
                raise error(source, f"{place}.{key}", f"a finite number >= 0 (got {bound})")
        rules.append(
            ReplayRule(
                checkpoint=raw.checkpoint,
                name=name,
                tests=selectors.get("tests", ()),
                fixtures=selectors.get("fixtures", ()),
                markers=selectors.get("markers", ()),
                max_ulp=max_ulp,
                rtol=None if max_ulp is not None else (rtol or 0.0),
                atol=None if max_ulp is not None else (atol or 0.0),
                place=place,
            )
        )
    return tuple(rules)


def _selects(rule: ReplayRule, ref: CheckpointRef) -> bool:
    if not fnmatch.fnmatchcase(ref.name, rule.checkpoint):
        return False
    if not (rule.tests or rule.fixtures or rule.markers):
        return True
    test = ref.owner_kind == "test"
    subject = Subject(
        id=ref.owner,
        kind=ref.owner_kind,
        name=ref.owner if test else ref.fixture,
        markers=ref.markers,
        ran=True,
        samples=(),
        metrics=(),
    )
    return selects(rule, subject)


def rule_for(rules: Iterable[ReplayRule], ref: CheckpointRef) -> ReplayRule | None:
    """The first rule, in file order, that selects ``ref``; None when none does."""
    return next((rule for rule in rules if _selects(rule, ref)), None)


def unused_rules(rules: Iterable[ReplayRule], refs: Sequence[CheckpointRef]) -> list[ReplayRule]:
    """The rules that select none of ``refs`` (a recorded session's checkpoints): a typo
    in a name or glob, which a replay reports as an error rather than ignore."""
    return [rule for rule in rules if not any(_selects(rule, ref) for ref in refs)]


def check_rules_used(
    rules: Iterable[ReplayRule],
    refs: Sequence[CheckpointRef],
    *,
    source: str,
    error: ErrorFactory,
) -> None:
    """Raise ``error`` at the first rule that selects no recorded checkpoint."""
    for rule in unused_rules(rules, refs):
        names = sorted({ref.name for ref in refs})
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        raise error(
            source,
            rule.place or "replay",
            f"a rule that selects a recorded checkpoint (checkpoint {rule.checkpoint!r} "
            f"selects none of the run's {len(refs)} checkpoints: {shown or 'none recorded'})",
        )


def _native(array: NDArray[Any]) -> NDArray[Any]:
    """``array`` in the machine's byte order, contiguous in C order."""
    import numpy as np

    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("="))


def ulp_distance(expected: NDArray[Any], actual: NDArray[Any]) -> NDArray[np.uint64] | None:
    """Elementwise distance in units in the last place, exact, as ``uint64``.

    numpy's definition (``numpy.testing.nulp_diff``, which
    ``assert_array_max_ulp`` compares): the number of representable floating-point
    values between the two, each float read as a sign-magnitude integer, ``-0.0`` and
    ``0.0`` one value, every NaN one value (NaN to NaN: 0). numpy computes the
    difference in the arrays' float type; here it is an exact integer. For integers and
    booleans: the difference of the values (every integer is representable). None for
    other dtypes (complex, strings, long double): the rule cannot measure them.
    Both arrays have the same shape and dtype.

    >>> import numpy as np
    >>> one = np.float32([1.0, -0.0, np.nan])
    >>> ulp_distance(one, np.float32([np.nextafter(one[0], 2), 0.0, -np.nan])).tolist()
    [1, 0, 0]
    """
    import numpy as np

    kind, size = expected.dtype.kind, expected.dtype.itemsize
    if kind == "b":
        expected, actual = expected.astype(np.uint8), actual.astype(np.uint8)
        kind = "u"
    if kind in "iu":
        a, b = _native(expected), _native(actual)
        # two's complement modulo 2**64: the difference is exact in uint64
        ua, ub = a.astype(np.uint64), b.astype(np.uint64)
        return np.where(a >= b, ua - ub, ub - ua)
    if kind != "f" or size not in _ULP_FLOATS:
        return None
    uint = np.dtype(_ULP_FLOATS[size])
    sign = np.uint64(1) << np.uint64(8 * size - 1)
    canonical_nan = np.array(np.nan, dtype=expected.dtype.newbyteorder("=")).view(uint)

    def ordered(x: NDArray[Any]) -> NDArray[np.uint64]:
        x = _native(x)
        bits = np.where(np.isnan(x), canonical_nan, x.view(uint)).astype(np.uint64)
        magnitude = bits & (sign - np.uint64(1))
        # biased so that every value is >= 0: -m at sign - m, +m at sign + m
        return np.where(bits & sign, sign - magnitude, sign + magnitude)  # type: ignore[no-any-return]

    oa, ob = ordered(expected), ordered(actual)
    return np.maximum(oa, ob) - np.minimum(oa, ob)


def mismatch_mask(
    expected: NDArray[Any],
    actual: NDArray[Any],
    rule: ReplayRule | None,
    ulp: NDArray[np.uint64] | None = None,
) -> tuple[NDArray[np.bool_], str]:
    """Which elements mismatch, and why none could be measured when the rule does not
    apply to the dtype (``""`` otherwise). Without a rule: every element whose bytes
    differ (a NaN's payload and ``-0.0`` against ``0.0`` included); with one: every
    element outside its tolerance. Same shape and dtype; ``ulp``: their
    :func:`ulp_distance`, when the caller has it already."""
    import numpy as np

    a, b = _native(expected), _native(actual)
    if rule is None:
        return bitwise_mismatch(a, b), ""
    if rule.max_ulp is not None:
        ulp = ulp if ulp is not None else ulp_distance(a, b)
        if ulp is None:
            return bitwise_mismatch(a, b), f"max_ulp does not apply to dtype {a.dtype.str}"
        return ulp > np.uint64(rule.max_ulp), ""
    if a.dtype.kind not in "biufc":
        return bitwise_mismatch(a, b), f"rtol/atol do not apply to dtype {a.dtype.str}"
    if a.dtype.kind == "b":
        a, b = a.astype(np.uint8), b.astype(np.uint8)
    close = np.isclose(b, a, rtol=rule.rtol or 0.0, atol=rule.atol or 0.0, equal_nan=True)
    return ~close, ""


def bitwise_mismatch(a: NDArray[Any], b: NDArray[Any]) -> NDArray[np.bool_]:
    """Elements whose bytes differ (``a`` and ``b`` of one dtype and shape)."""
    import numpy as np

    size = a.dtype.itemsize
    if size in (1, 2, 4, 8):
        uint = np.dtype(f"u{size}")
        return a.view(uint) != b.view(uint)  # type: ignore[no-any-return]
    width = max(size, 1)
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    differ = a.view(np.uint8).reshape(a.size, width) != b.view(np.uint8).reshape(b.size, width)
    return differ.any(axis=1).reshape(a.shape)  # type: ignore[no-any-return]
