"""The replay comparison: a recorded session's checkpoints against its replay's, in
causal order, the first divergence named (the outcome: ``core/replay_verdict.py``).

Pure: records, rules and a ``load`` function in, values out; ``rtgov replay``
(``cli/``) runs the session again, loads kept arrays from the object store and records
the result. A checkpoint is *identical* when its sha256 is; *within tolerance* when a
``[[replay]]`` rule (``core/replay_rules.py``) selects it, both arrays were kept, their
dtype and shape agree and every element is inside the rule; else *diverged*. Recorded
checkpoints of an owner (test or fixture) the replay ran but did not produce are
*not reproduced* (a divergence); replayed checkpoints the record lacks are *new* (not a
divergence: a stage body's checkpoints, when the original session served the stage from
its cache). The first divergence is the first diverged checkpoint in the replay's
causal order; every later one is downstream of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard, cast

from pytest_rtgov.core.array_checkpoints import ArrayCheckpoint
from pytest_rtgov.core.records import FixtureEntry, RunRecord
from pytest_rtgov.core.replay_rules import (
    ReplayRule,
    bitwise_mismatch,
    check_rules_used,
    mismatch_mask,
    rule_for,
    ulp_distance,
    unused_rules,
)
from pytest_rtgov.core.replay_verdict import (
    DIVERGED,
    DRIFT_FIELDS,
    IDENTICAL,
    NEW,
    NOT_REPRODUCED,
    STATUSES,
    WITHIN,
    ReplayOutcome,
    ReplayResult,
    decide,
    environment_drift,
)

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [  # the verdict's and the rules' names too: one import for the CLI
    "DRIFT_FIELDS",
    "STATUSES",
    "ArrayDiff",
    "CheckpointRef",
    "CheckpointResult",
    "Comparison",
    "ReplayOutcome",
    "ReplayResult",
    "check_rules_used",
    "checkpoint_refs",
    "compare",
    "decide",
    "environment_drift",
    "fixture_owner",
    "unused_rules",
]


@dataclass(frozen=True, slots=True)
class CheckpointRef:
    """A checkpoint with its owner: ``("test", node id)`` or ``("fixture", scope node id
    ::name[param])``, the worker that captured it and its occurrence (its index among
    the owner's checkpoints of that name, in capture order)."""

    owner_kind: str
    owner: str
    checkpoint: ArrayCheckpoint
    worker: str
    occurrence: int = 0
    markers: tuple[str, ...] = ()  # a test's markers, for the rules' selectors
    fixture: str = ""  # a fixture's name, for the rules' selectors
    stage: bool = False  # the fixture is a @stage

    @property
    def name(self) -> str:
        return self.checkpoint.name

    @property
    def key(self) -> tuple[str, str, str, int]:
        """What matches a replayed checkpoint to a recorded one."""
        return (self.owner_kind, self.owner, self.name, self.occurrence)

    @property
    def role(self) -> str:
        """``test``, ``fixture`` or ``stage``: what people call the owner."""
        return "stage" if self.stage else self.owner_kind

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.name,
            "kind": self.checkpoint.kind,
            "occurrence": self.occurrence,
            "owner": self.owner,
            "role": self.role,
        }


def fixture_owner(entry: FixtureEntry) -> str:
    """``<scope node id>::<name>[param index]`` (the name alone at session scope)."""
    owner = f"{entry.nodeid}::{entry.name}" if entry.nodeid else entry.name
    return owner if entry.param_index is None else f"{owner}[{entry.param_index}]"


def checkpoint_refs(record: RunRecord) -> list[CheckpointRef]:
    """Every checkpoint of ``record`` with its owner, in causal order: by (worker, seq).
    A fixture set up by several xdist workers counts with its first worker's setups."""
    found: list[tuple[str, str, ArrayCheckpoint, str, tuple[str, ...], str, bool]] = []
    for test in record.tests:
        found += [("test", test.nodeid, c, test.worker, test.markers, "", False)
                  for c in test.checkpoints]
    for entry in record.fixtures:
        if not entry.setups:
            continue
        owner, first = fixture_owner(entry), entry.setups[0].worker
        for setup in entry.setups:
            if setup.worker == first:
                found += [("fixture", owner, c, first, (), entry.name, setup.stage is not None)
                          for c in setup.checkpoints]
    found.sort(key=lambda f: (f[3], f[2].seq, f[0], f[1], f[2].name))
    seen: dict[tuple[str, str, str], int] = {}
    refs = []
    for kind, owner, cp, worker, markers, fixture, stage in found:
        occurrence = seen.get((kind, owner, cp.name), 0)
        seen[(kind, owner, cp.name)] = occurrence + 1
        refs.append(CheckpointRef(kind, owner, cp, worker, occurrence, markers, fixture, stage))
    return refs


CHUNK = 1 << 20  # elements compared at once (see _array_diff)


@dataclass(frozen=True, slots=True)
class ArrayDiff:
    """Two kept arrays of one checkpoint, element by element (C order). ``mismatches``
    counts the elements outside the rule's tolerance (without a rule: whose bytes
    differ); ``index`` is the first of them in C order, ``position`` the same element as an
    index into the shape (``np.unravel_index``). ULP distances as numpy defines them (None
    for dtypes without one); values as numpy prints them, exact for the dtype."""

    size: int | None
    mismatches: int | None
    index: int | None = None
    position: tuple[int, ...] | None = None
    expected: str | None = None
    actual: str | None = None
    ulp: int | None = None
    max_ulp: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "actual": self.actual,
            "expected": self.expected,
            "index": self.index,
            "position": None if self.position is None else list(self.position),
            "max_ulp": self.max_ulp,
            "mismatches": self.mismatches,
            "size": self.size,
            "ulp": self.ulp,
        }


def _array_diff(
    expected: NDArray[Any], actual: NDArray[Any], rule: ReplayRule | None
) -> tuple[ArrayDiff, str]:
    """Only the elements whose bytes differ are measured: an identical element has 0
    ULP and satisfies every tolerance. So a large array with a few changes costs one
    bitwise pass. The arrays are walked in chunks of :data:`CHUNK` elements, so that the
    memory a comparison takes beyond the two arrays is bounded, however many differ."""
    import numpy as np

    flat_expected, flat_actual = expected.ravel(), actual.ravel()
    mismatches, max_ulp, why = 0, 0, ""
    has_ulp = True
    first: tuple[int, str, str, int | None] | None = None  # index, expected, actual, ulp
    for start in range(0, int(expected.size), CHUNK):
        part_expected = flat_expected[start : start + CHUNK]
        part_actual = flat_actual[start : start + CHUNK]
        differ = np.flatnonzero(bitwise_mismatch(part_expected, part_actual))
        if not differ.size:
            continue
        some_expected, some_actual = part_expected[differ], part_actual[differ]
        ulp = ulp_distance(some_expected, some_actual)
        outside, why = mismatch_mask(some_expected, some_actual, rule, ulp)
        which = np.flatnonzero(outside)
        has_ulp = ulp is not None
        if ulp is not None and ulp.size:
            max_ulp = max(max_ulp, int(ulp.max()))
        mismatches += int(which.size)
        if first is None and which.size:
            j = int(which[0])
            first = (start + int(differ[j]), str(some_expected[j]), str(some_actual[j]),
                     None if ulp is None else int(ulp[j]))  # fmt: skip
    size = int(expected.size)
    top = max_ulp if has_ulp else None
    if first is None:
        return ArrayDiff(size=size, mismatches=0, max_ulp=top), why
    index, shown_expected, shown_actual, first_ulp = first
    return (
        ArrayDiff(
            size=size,
            mismatches=mismatches,
            index=index,
            position=tuple(int(i) for i in np.unravel_index(index, expected.shape)),
            expected=shown_expected,
            actual=shown_actual,
            ulp=first_ulp,
            max_ulp=top,
        ),
        why,
    )


@dataclass(frozen=True, slots=True)
class CheckpointResult:
    """One checkpoint's status (``STATUSES``), why, and its arrays' difference when both
    were kept (``diff``; None: digests only, "kept: no")."""

    status: str
    recorded: CheckpointRef | None
    replayed: CheckpointRef | None
    reason: str = ""
    rule: str | None = None
    diff: ArrayDiff | None = None

    @property
    def ref(self) -> CheckpointRef:
        ref = self.recorded or self.replayed
        assert ref is not None  # a result has one side at least
        return ref

    @property
    def diverged(self) -> bool:
        return self.status in (DIVERGED, NOT_REPRODUCED)

    def to_dict(self) -> dict[str, Any]:
        rec, rep, ref = self.recorded, self.replayed, self.ref
        return {
            **ref.to_dict(),
            "actual_sha256": rep.checkpoint.sha256 if rep else None,
            "dtype": ref.checkpoint.dtype,
            "expected_sha256": rec.checkpoint.sha256 if rec else None,
            "kept": self.diff is not None,
            "reason": self.reason,
            "rule": self.rule,
            "shape": _shape(ref.checkpoint.shape),
            "status": self.status,
            # the arrays' difference, flat (all None when a side was not kept)
            **(self.diff or _NO_DIFF).to_dict(),
        }


_NO_DIFF = ArrayDiff(size=None, mismatches=None)


def _shape(shape: tuple[int, ...] | None) -> list[int] | None:
    return None if shape is None else list(shape)


def _check(
    rec: CheckpointRef,
    rep: CheckpointRef,
    load: Callable[[CheckpointRef], NDArray[Any] | None],
    rule: ReplayRule | None,
) -> CheckpointResult:
    """One matched checkpoint: identical, within the rule's tolerance, or diverged."""
    a, b = rec.checkpoint, rep.checkpoint
    label = rule.label if rule else None
    if a.sha256 == b.sha256:
        return CheckpointResult(IDENTICAL, rec, rep)
    changed = _layout_change(a.dtype, a.shape, b.dtype, b.shape)
    if changed:
        return CheckpointResult(DIVERGED, rec, rep, changed, label)
    expected, actual = load(rec), load(rep)
    if expected is None or actual is None:
        missing = " and ".join(
            side for side, arr in (("recorded", expected), ("replayed", actual)) if arr is None
        )
        reason = f"digests differ (kept: no; the {missing} array was not kept)"
        if rule is not None:
            reason += f"; rule {rule.label} cannot be checked without both arrays"
        return CheckpointResult(DIVERGED, rec, rep, reason, label)
    changed = _layout_change(
        expected.dtype.str, tuple(expected.shape), actual.dtype.str, tuple(actual.shape)
    )
    if changed:
        return CheckpointResult(DIVERGED, rec, rep, changed, label)
    diff, why = _array_diff(expected, actual, rule)
    if diff.mismatches:
        reason = why or (f"outside {rule.tolerance()}" if rule else "values differ")
        return CheckpointResult(DIVERGED, rec, rep, reason, label, diff)
    if rule is not None and not why:
        return CheckpointResult(WITHIN, rec, rep, f"within {rule.tolerance()}", label, diff)
    reason = "the .npy bytes differ but no element does (header or memory layout)"
    return CheckpointResult(DIVERGED, rec, rep, reason, label, diff)


def _layout_change(
    dtype_a: str | None, shape_a: tuple[int, ...] | None, dtype_b: str | None,
    shape_b: tuple[int, ...] | None,
) -> str:
    parts = []
    if dtype_a != dtype_b:
        parts.append(f"dtype {dtype_a} -> {dtype_b}")
    if shape_a != shape_b:
        parts.append(f"shape {_shape(shape_a)} -> {_shape(shape_b)}")
    return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class Comparison:
    """Every compared checkpoint, in the replay's causal order (not reproduced ones
    after the replayed checkpoint matched to their nearest recorded predecessor)."""

    results: tuple[CheckpointResult, ...]

    def counts(self) -> dict[str, int]:
        return {status: sum(r.status == status for r in self.results) for status in STATUSES}

    @property
    def divergences(self) -> tuple[CheckpointResult, ...]:
        return tuple(r for r in self.results if r.diverged)

    @property
    def first_divergence(self) -> CheckpointResult | None:
        return next((r for r in self.results if r.diverged), None)

    @property
    def downstream(self) -> tuple[CheckpointResult, ...]:
        return self.divergences[1:]


def compare(
    recorded: RunRecord | Sequence[CheckpointRef],
    replayed: RunRecord | Sequence[CheckpointRef],
    *,
    load: Callable[[CheckpointRef], NDArray[Any] | None],
    rules: Sequence[ReplayRule] = (),
) -> Comparison:
    """Walk the replay's checkpoints in causal order, each against the recorded one of
    the same owner, name and occurrence (see the module's docstring). ``load`` gives a
    kept array (None when it was not kept); rules apply as the recorded checkpoint is
    selected. Owners the replay did not run are not compared: given the replay's
    record, an owner ran when it has an entry (a test that stopped before its first
    checkpoint too); given its checkpoints only, when it produced one."""
    recorded_refs = _refs(recorded)
    by_key = {ref.key: ref for ref in recorded_refs}
    replayed_refs = _refs(replayed)
    owners = {(ref.owner_kind, ref.owner) for ref in replayed_refs}
    if _is_record(replayed):
        owners |= {("test", t.nodeid) for t in replayed.tests}
        owners |= {("fixture", fixture_owner(f)) for f in replayed.fixtures}
    placed: list[tuple[tuple[int, int, int], CheckpointResult]] = []
    matched: dict[tuple[str, str, str, int], int] = {}
    for position, rep in enumerate(replayed_refs):
        rec = by_key.get(rep.key)
        if rec is None:
            result = CheckpointResult(NEW, None, rep, "not in the record")
        else:
            matched[rec.key] = position
            result = _check(rec, rep, load, rule_for(rules, rec))
        placed.append(((position, 0, 0), result))
    last = -1
    for index, rec in enumerate(recorded_refs):
        if rec.key in matched:
            last = matched[rec.key]
        elif (rec.owner_kind, rec.owner) in owners:
            result = CheckpointResult(
                NOT_REPRODUCED, rec, None, f"the replayed {rec.role} did not produce it"
            )
            placed.append(((last, 1, index), result))
    placed.sort(key=lambda item: item[0])
    return Comparison(tuple(result for _, result in placed))


def _is_record(source: object) -> TypeGuard[RunRecord]:
    """A run record, told by its shape: a class identity check fails where a module
    was imported twice (pytester's in-process runs drop and re-import modules)."""
    return hasattr(source, "tests") and hasattr(source, "fixtures")


def _refs(source: RunRecord | Sequence[CheckpointRef]) -> list[CheckpointRef]:
    if _is_record(source):
        return checkpoint_refs(source)
    return list(cast("Sequence[CheckpointRef]", source))
