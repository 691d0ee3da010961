"""What gates read from a run: its subjects (tests and fixtures), their ids, which
gate selects which subject, and the baseline's view for the run's fingerprint.

Pure. Tests are subjects by node id, fixtures as ``fixture:<scope node id>::<name>``;
a subject's measurements count the samples :func:`pytest_rtgov.core.stats.counts`
admits (current code, not warm-up, completed).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pytest_rtgov.core.constants import AUTO_CHEAP_PROBE
from pytest_rtgov.core.metrics import BUILTIN_METRICS
from pytest_rtgov.core.records import FixtureEntry, RunRecord, Sample, TestEntry
from pytest_rtgov.core.stats import counts, measured

__all__ = ["BaselineView", "Selectors", "Subject", "selects", "subject_id", "subjects_of"]

_SAMPLE_FIELD = {m.name: (m.field, m.scale) for m in BUILTIN_METRICS.values()}


@dataclass(frozen=True, slots=True)
class Subject:
    """A test or a fixture of a run, with what gates can read from it."""

    id: str
    kind: str  # "test" or "fixture"
    name: str  # node id for tests, fixture name for fixtures
    markers: tuple[str, ...]
    ran: bool
    samples: tuple[Sample, ...]
    metrics: tuple[tuple[str, float | str, bool | None], ...]
    workers: tuple[str, ...] = ()  # the worker of each sample
    calibration: Mapping[str, int] = field(default_factory=dict)  # worker -> ns
    # The auto memory mode's cheap probe, whose peak_memory values no gate judges
    # (docs/memory.md): None in the other modes, where the user chose the probe.
    cheap_probe: str | None = None
    # A @stage fixture every setup of which was served from the cache: nothing measured
    # its body this session (core/gates.py says so instead of "missing").
    cached: bool = False

    def calibrated(self, metric: str) -> list[float]:
        """Measured time divided by the calibration time of the process that ran it."""
        field_name, _ = _SAMPLE_FIELD[metric]
        out = []
        for sample, worker in zip(self.samples, self.workers, strict=False):
            ns = getattr(sample, field_name)
            unit = self.calibration.get(worker)
            if not counts(sample):
                continue
            if ns is not None and unit:
                out.append(ns / unit)
        return out

    def measurement(
        self, metric: str, variant: str = "current", block: int | None = None
    ) -> list[float]:
        field_name, scale = _SAMPLE_FIELD[metric]
        samples = measured(self.samples, variant, block)
        if self.cheap_probe is not None and field_name == "peak_memory_bytes":
            samples = [s for s in samples if s.memory_probe != self.cheap_probe]
        values = [getattr(s, field_name) for s in samples]
        return [v * scale for v in values if v is not None]

    def pairs(self, metric: str, block: int = 0) -> list[tuple[float, float]]:
        """(current, baseline) pairs of one A/B block, in the order they were measured."""
        current = self.measurement(metric, "current", block)
        baseline = self.measurement(metric, "baseline", block)
        return list(zip(current, baseline, strict=False))

    def blocks(self) -> int:
        return 1 + max((s.block for s in self.samples), default=0)

    def recorded(self, metric: str) -> list[tuple[float | str, bool | None]]:
        return [(value, hib) for name, value, hib in self.metrics if name == metric]


def subject_id(entry: TestEntry | FixtureEntry) -> str:
    """Tests by node id; fixtures as ``fixture:<scope node id>::<name>``."""
    if isinstance(entry, TestEntry):
        return entry.nodeid
    return f"fixture:{entry.nodeid}::{entry.name}" if entry.nodeid else f"fixture:{entry.name}"



def subjects_of(record: RunRecord) -> list[Subject]:
    calibration = dict(record.calibration.get("workers", {}))
    cheap = AUTO_CHEAP_PROBE if record.memory_mode == "auto" else None
    subjects = [
        Subject(
            id=subject_id(t),
            kind="test",
            name=t.nodeid,
            markers=t.markers,
            ran=t.outcome == "passed",
            samples=t.samples,
            metrics=tuple((m.name, m.value, m.higher_is_better) for m in t.metrics),
            workers=(t.worker,) * len(t.samples),
            calibration=calibration,
            cheap_probe=cheap,
        )
        for t in record.tests
    ]
    for f in record.fixtures:
        # A @stage served from its cache did not run its body: what its setup measured is
        # the cost of the hit, not of the stage, and is no measurement of it (its recorded
        # metrics, sealed in the entry, still count).
        executed = [s for s in f.setups if not s.stage or s.stage.get("outcome") != "hit"]
        subjects.append(
            Subject(
                id=subject_id(f),
                kind="fixture",
                name=f.name,
                markers=(),
                ran=all(s.outcome == "passed" for s in f.setups),
                samples=tuple(s.sample for s in executed),
                metrics=tuple(
                    (m.name, m.value, m.higher_is_better) for s in f.setups for m in s.metrics
                ),
                workers=tuple(s.worker for s in executed),
                cached=bool(f.setups) and not executed,
                calibration=calibration,
                cheap_probe=cheap,
            )
        )
    return subjects


class Selectors(Protocol):
    """What selects subjects: a gate, or a ``[[replay]]`` tolerance rule
    (``core/replay_rules.py``), with the same meaning and matching."""

    @property
    def tests(self) -> tuple[str, ...]: ...

    @property
    def fixtures(self) -> tuple[str, ...]: ...

    @property
    def markers(self) -> tuple[str, ...]: ...


def selects(gate: Selectors, subject: Subject) -> bool:
    if subject.kind == "test":
        if any(fnmatch.fnmatchcase(subject.name, pattern) for pattern in gate.tests):
            return True
        return any(marker in gate.markers for marker in subject.markers)
    return any(fnmatch.fnmatchcase(subject.name, pattern) for pattern in gate.fixtures)


@dataclass(frozen=True, slots=True)
class BaselineView:
    """What the baseline holds for this run's fingerprint.

    ``measurements[subject][metric]`` are samples (seconds or bytes) from the
    fingerprint's baseline file; ``metrics[subject][metric]`` are recorded values
    (numbers or digests) shared across fingerprints.
    """

    measurements: Mapping[str, Mapping[str, Sequence[float]]]
    metrics: Mapping[str, Mapping[str, Sequence[float | str]]]
    fingerprint_note: str = ""
