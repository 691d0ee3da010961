"""What one run contributes to the delta index: its observations and its run facts.

An *observation* is one subject (test or fixture) x one metric x one run: the median
and quartiles of a measured metric (wall time, CPU time, peak memory, GPU time, GPU
memory), or the value of a recorded metric (a number, or a digest string), plus what
the run's gates said about it (baseline value, verdict). :func:`observations_of` reads
them from a run record through :func:`pytest_rtgov.core.stats.counted`, so the index
shows the medians every other face shows; :func:`run_info` reads the run's facts
(commit, fingerprint, verdict) through :func:`pytest_rtgov.core.provenance.provenance`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pytest_rtgov.core.metrics import BUILTIN_METRICS
from pytest_rtgov.core.provenance import provenance
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.core.stats import counted
from pytest_rtgov.core.subjects import subjects_of
from pytest_rtgov.core.verdict import BREACHING, UNGATED

__all__ = [
    "MEASURED",
    "NAN",
    "BaselineEvent",
    "Observation",
    "RunInfo",
    "observations_of",
    "quartiles",
    "run_info",
]

MEASURED = tuple(BUILTIN_METRICS)
NAN = float("nan")


class Observation(NamedTuple):
    """One subject x metric of a run. A NamedTuple, not a frozen dataclass: a report
    makes several per test, and a tuple is made ~5x faster."""

    subject: str
    metric: str
    value: float = NAN  # NaN for digests
    q1: float = NAN
    q3: float = NAN
    text: str | None = None  # a digest
    base: float = NAN  # the gate's baseline value
    verdict: str = ""
    gate: str = ""
    n: int = 1  # samples behind value/q1/q3


@dataclass(frozen=True, slots=True)
class RunInfo:
    run_id: str
    started_at: str
    commit: str
    branch: str
    dirty: bool
    diff_sha256: str
    fingerprint: str
    backend: str
    status: str  # the verdict's status, or "recorded"
    exit_status: int
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunInfo:
        return cls(**data)

    @property
    def code(self) -> str:
        """``commit`` or ``commit+dirty:<diff hash prefix>``: what a bisect would check out."""
        if not self.commit:
            return "(no git)"
        short = self.commit[:12]
        return f"{short}+dirty:{self.diff_sha256[:8]}" if self.dirty else short


@dataclass(frozen=True, slots=True)
class BaselineEvent:
    """A baseline change read from a ``baseline_refresh`` leaf."""

    sequence: int
    leaf_index: int
    at: str
    who: str
    reason: str
    run_id: str
    fingerprint: str
    changes: int
    seal_sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """Median and quartiles with linear interpolation (numpy's default), in pure Python:
    a few microseconds for the handful of rounds a test has.

    >>> quartiles([4.0, 1.0, 3.0, 2.0])
    (2.5, 1.75, 3.25)
    """
    ordered = sorted(values)
    last = len(ordered) - 1
    out = []
    for q in (0.5, 0.25, 0.75):
        pos = last * q
        low = int(pos)  # floor: pos >= 0
        high = low + 1 if low < last else low
        out.append(ordered[low] + (ordered[high] - ordered[low]) * (pos - low))
    return out[0], out[1], out[2]


def observations_of(record: RunRecord) -> list[Observation]:
    """One observation per subject x metric of a run, sorted by (subject, metric)."""
    gates: dict[tuple[str, str], Mapping[str, Any]] = {}
    for result in record.gate_results:
        key = (str(result["subject"]), str(result["metric"]))
        # A breach outranks a pass when two gates look at the same metric.
        if key not in gates or result["status"] in BREACHING:
            gates[key] = result
    rows: dict[tuple[str, str], Observation] = {}
    fields = [(m.name, m.field, m.scale) for m in BUILTIN_METRICS.values()]
    for subject in subjects_of(record):
        measured = counted(subject.samples)  # filtered once for every metric
        if measured:
            for metric, field_name, scale in fields:
                values = [v * scale for s in measured if (v := getattr(s, field_name)) is not None]
                if not values:
                    continue
                if len(values) == 1:
                    median = q1 = q3 = values[0]
                else:
                    median, q1, q3 = quartiles(values)
                rows[(subject.id, metric)] = Observation(
                    subject.id, metric, median, q1, q3, n=min(len(values), 32767)
                )
        for name, value, _ in subject.metrics:
            if (subject.id, name) in rows:
                continue  # first recording wins (every worker records a session fixture's)
            if isinstance(value, str):
                rows[(subject.id, name)] = Observation(subject.id, name, text=value)
            else:
                v = float(value)
                rows[(subject.id, name)] = Observation(subject.id, name, v, v, v)
    out = []
    for key in sorted(rows):
        obs = rows[key]
        gated = gates.get(key)
        if gated is not None:
            base = gated.get("baseline")
            obs = Observation(
                obs.subject,
                obs.metric,
                obs.value,
                obs.q1,
                obs.q3,
                obs.text,
                float(base) if isinstance(base, (int, float)) else NAN,
                str(gated["status"]),
                str(gated["gate"]),
                obs.n,
            )
        out.append(obs)
    return out


def run_info(record: RunRecord) -> RunInfo:
    """The facts of a run the index keeps beside its observations."""
    prov = provenance(record)
    verdict = record.verdict or {}
    return RunInfo(
        run_id=record.run_id,
        started_at=record.started_at,
        commit=prov["git"]["commit"],
        branch=prov["git"]["branch"],
        dirty=prov["git"]["dirty"],
        diff_sha256=prov["git"]["diff_sha256"],
        fingerprint=prov["fingerprint"],
        backend=record.backend,
        status=str(verdict.get("status", UNGATED)),
        exit_status=record.exit_status,
        provenance=prov,
    )
