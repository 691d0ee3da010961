"""The delta index: every observation of every run, in columns, for fast queries.

An *observation* is one subject (test or fixture) x one metric x one run: the median
and quartiles of a measured metric (wall time, CPU time, peak memory, GPU time, GPU
memory), or the value of a recorded metric (a number, or a digest string), plus what
the run's gates said about it (baseline value, verdict).

Observations are kept as numpy columns, appended run by run in ledger order, so a
run's rows are contiguous and a metric's series is one vectorised comparison over an
int32 column. 10,000 runs of 200 observations are 2,000,000 rows of 39 bytes: about
78 MB, against the gigabytes that the same number of networkx nodes would take. The
experiment graph (:mod:`pytest_rtgov.core.graph`) materialises runs, commits,
environments, baselines, artifacts and subjects for the whole history, and
observation nodes only for the runs asked for.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from pytest_rtgov.core.metrics import BUILTIN_METRICS
from pytest_rtgov.core.provenance import provenance
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.core.stats import counted
from pytest_rtgov.core.subjects import subjects_of
from pytest_rtgov.core.verdict import BREACHING, GATE_STATUSES, UNGATED

__all__ = [
    "COLUMNS",
    "MEASURED",
    "VERDICTS",
    "BaselineEvent",
    "DeltaIndex",
    "Observation",
    "RunInfo",
    "observations_of",
    "run_info",
]

MEASURED = tuple(BUILTIN_METRICS)
VERDICTS = ("", *GATE_STATUSES)
_VERDICT_CODE = {name: code for code, name in enumerate(VERDICTS)}
BREACH_CODES = tuple(_VERDICT_CODE[status] for status in BREACHING)
_TYPECODES = {
    "run": "i",
    "key": "i",
    "value": "d",
    "q1": "f",
    "q3": "f",
    "base": "d",
    "verdict": "b",
    "text": "i",
    "n": "h",
}
COLUMNS = {
    "run": np.int32,
    "key": np.int32,
    "value": np.float64,
    "q1": np.float32,
    "q3": np.float32,
    "base": np.float64,
    "verdict": np.int8,
    "text": np.int32,
    "n": np.int16,
}
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
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]

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
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


def _quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """Median and quartiles with linear interpolation (numpy's default), in pure Python:
    a few microseconds for the handful of rounds a test has."""
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
    gates: dict[tuple[str, str], dict[str, Any]] = {}
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
                    median, q1, q3 = _quartiles(values)
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
        result = gates.get(key)
        if result is not None:
            base = result.get("baseline")
            obs = Observation(
                obs.subject,
                obs.metric,
                obs.value,
                obs.q1,
                obs.q3,
                obs.text,
                float(base) if isinstance(base, (int, float)) else NAN,
                str(result["status"]),
                str(result["gate"]),
                obs.n,
            )
        out.append(obs)
    return out


def run_info(record: RunRecord) -> RunInfo:
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


class DeltaIndex:
    """Runs, string tables and observation columns; append-only, in ledger order."""

    def __init__(self) -> None:
        self.runs: list[RunInfo] = []
        self.run_pos: dict[str, int] = {}
        self.keys: list[tuple[str, str]] = []
        self.key_pos: dict[tuple[str, str], int] = {}
        self.texts: list[str] = []
        self.text_pos: dict[str, int] = {}
        self.baselines: list[BaselineEvent] = []
        self.artifacts: list[dict[str, str]] = []  # name, digest, run_id, subject
        self.run_start: list[int] = []
        self.run_leaf: dict[str, int] = {}  # run id -> ledger index of its verdict leaf
        self.gate_of: dict[int, str] = {}  # key -> gate name (latest seen)
        self._columns = {name: np.empty(0, dtype) for name, dtype in COLUMNS.items()}
        # Pending rows in compact array buffers, not lists of Python objects: a
        # 2M-row build peaks ~140 MiB lower (benches/graph.py).
        self._pending = {name: array(_TYPECODES[name]) for name in COLUMNS}
        self.rows = 0

    # -- building ---------------------------------------------------------------

    def _key(self, subject: str, metric: str) -> int:
        key = (subject, metric)
        pos = self.key_pos.get(key)
        if pos is None:
            pos = self.key_pos[key] = len(self.keys)
            self.keys.append(key)
        return pos

    def _text(self, text: str) -> int:
        pos = self.text_pos.get(text)
        if pos is None:
            pos = self.text_pos[text] = len(self.texts)
            self.texts.append(text)
        return pos

    def add_run(
        self, info: RunInfo, observations: Iterable[Observation], *, leaf_index: int | None = None
    ) -> None:
        if info.run_id in self.run_pos:
            raise ValueError(f"run {info.run_id} is already in the index")
        if leaf_index is not None:
            self.run_leaf[info.run_id] = leaf_index
        r = len(self.runs)
        self.run_pos[info.run_id] = r
        self.runs.append(info)
        self.run_start.append(self.rows)
        p = self._pending
        for obs in observations:
            k = self._key(obs.subject, obs.metric)
            p["run"].append(r)
            p["key"].append(k)
            p["value"].append(obs.value)
            p["q1"].append(obs.q1)
            p["q3"].append(obs.q3)
            p["base"].append(obs.base)
            p["verdict"].append(_VERDICT_CODE.get(obs.verdict, 0))
            p["text"].append(self._text(obs.text) if obs.text is not None else -1)
            p["n"].append(obs.n)
            if obs.gate:
                self.gate_of[k] = obs.gate
            if obs.text is not None and obs.metric.startswith("artifact:"):
                self.artifacts.append(
                    {
                        "name": obs.metric.split(":", 1)[1],
                        "digest": obs.text,
                        "run_id": info.run_id,
                        "subject": obs.subject,
                    }
                )
            self.rows += 1

    def add_record(self, record: RunRecord, *, leaf_index: int | None = None) -> None:
        self.add_run(run_info(record), observations_of(record), leaf_index=leaf_index)

    def add_baseline(self, event: BaselineEvent) -> None:
        self.baselines.append(event)

    def column(self, name: str) -> np.ndarray:
        pending = self._pending[name]
        if pending:
            self._flush()
        return self._columns[name]

    def _flush(self) -> None:
        for name, dtype in COLUMNS.items():
            fresh = np.frombuffer(self._pending[name], dtype=dtype)
            self._columns[name] = np.concatenate([self._columns[name], fresh])
            self._pending[name] = array(_TYPECODES[name])

    def set_columns(self, columns: dict[str, np.ndarray]) -> None:
        """Install loaded columns (the store layer reads them from disk)."""
        self._columns = {name: columns[name].astype(COLUMNS[name], copy=False) for name in COLUMNS}
        self._pending = {name: array(_TYPECODES[name]) for name in COLUMNS}
        self.rows = len(self._columns["run"])

    # -- queries ----------------------------------------------------------------

    def rows_of_run(self, run_id: str) -> slice:
        r = self.run_pos[run_id]
        end = self.run_start[r + 1] if r + 1 < len(self.run_start) else self.rows
        return slice(self.run_start[r], end)

    def value_of(self, row: int) -> float | str | None:
        text = int(self.column("text")[row])
        if text >= 0:
            return self.texts[text]
        value = float(self.column("value")[row])
        return None if math.isnan(value) else value

    def series(self, subject: str, metric: str) -> list[tuple[RunInfo, float | str | None, str]]:
        """(run, value, verdict) of one metric over every run that has it, in ledger order."""
        k = self.key_pos.get((subject, metric))
        if k is None:
            return []
        rows = np.flatnonzero(self.column("key") == k)
        runs, verdicts = self.column("run")[rows], self.column("verdict")[rows]
        return [
            (self.runs[int(r)], self.value_of(int(row)), VERDICTS[int(v)])
            for row, r, v in zip(rows, runs, verdicts, strict=True)
        ]

    def run_values(self, run_id: str) -> dict[tuple[str, str], tuple[Any, float, float, int]]:
        """(subject, metric) -> (value, q1, q3, n) for one run."""
        rows = self.rows_of_run(run_id)
        columns = [self.column(name)[rows].tolist() for name in ("key", "value", "q1", "q3")]
        texts, counts = self.column("text")[rows].tolist(), self.column("n")[rows].tolist()
        names = self.keys
        out: dict[tuple[str, str], tuple[Any, float, float, int]] = {}
        for k, v, lo, hi, t, n in zip(*columns, texts, counts, strict=True):
            out[names[k]] = (self.texts[t] if t >= 0 else (None if v != v else v), lo, hi, n)
        return out

    def top_regressions(self, run_id: str, limit: int = 10) -> list[dict[str, Any]]:
        """Breaches first, then the largest relative increases against the gate baseline."""
        rows = self.rows_of_run(run_id)
        value = self.column("value")[rows]
        base = self.column("base")[rows]
        verdict = self.column("verdict")[rows]
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = np.where(base != 0, (value - base) / np.abs(base), np.nan)
        breached = np.isin(verdict, BREACH_CODES)
        order = np.lexsort((-np.nan_to_num(relative, nan=-np.inf), ~breached))
        out = []
        for i in order[:limit].tolist():
            row = rows.start + i
            if not breached[i] and not (relative[i] > 0):
                break
            subject, metric = self.keys[int(self.column("key")[row])]
            out.append(
                {
                    "subject": subject,
                    "metric": metric,
                    "value": float(value[i]),
                    "baseline": float(base[i]),
                    "relative": float(relative[i]),
                    "verdict": VERDICTS[int(verdict[i])],
                    "gate": self.gate_of.get(int(self.column("key")[row]), ""),
                }
            )
        return out

    def first_regression(
        self, subject: str, metric: str, *, threshold_pct: float | None = None
    ) -> dict[str, Any] | None:
        """The run where the metric's current streak of bad runs began, and the last
        good run before it: the range a ``git bisect`` needs.

        Bad means a gate breach, or with ``threshold_pct`` a value more than that
        percentage above the first run's (for metrics where lower is better).
        """
        k = self.key_pos.get((subject, metric))
        if k is None:
            return None
        rows = np.flatnonzero(self.column("key") == k)
        if threshold_pct is None:
            # Only gated runs have a say: a run recorded without --rtgov-gate in the
            # middle of a streak is neither good nor bad.
            verdicts = self.column("verdict")[rows]
            rows = rows[verdicts != 0]
            if not len(rows):
                return None
            bad = np.isin(verdicts[verdicts != 0], BREACH_CODES)
        else:
            values = self.column("value")[rows]
            bad = values > values[0] * (1 + threshold_pct / 100.0)
        if not bad.any():
            return None
        # The last streak of bad runs (the regression that is still there), or the
        # last one that happened if it has since been fixed.
        last_bad = int(np.flatnonzero(bad)[-1])
        good_before = np.flatnonzero(~bad[:last_bad])
        first_bad = int(good_before[-1]) + 1 if len(good_before) else 0
        runs = self.column("run")[rows]
        bad_run = self.runs[int(runs[first_bad])]
        good_run = self.runs[int(runs[first_bad - 1])] if first_bad > 0 else None
        return {
            "subject": subject,
            "metric": metric,
            "first_bad": bad_run,
            "first_bad_value": self.value_of(int(rows[first_bad])),
            "last_good": good_run,
            "last_good_value": self.value_of(int(rows[first_bad - 1])) if good_run else None,
            "still_bad": bool(bad[-1]),
            "bad_runs": int(bad[first_bad:].sum()),
        }
