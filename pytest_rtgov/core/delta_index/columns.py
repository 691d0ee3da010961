"""The columnar delta index: every observation of every run, in numpy columns.

:class:`DeltaIndex` keeps the observations of :mod:`.observations` as numpy columns,
appended run by run in ledger order, so a run's rows are contiguous and a metric's
series is one vectorised comparison over an int32 column. 10,000 runs of 200
observations are 2,000,000 rows of 39 bytes: about 78 MB, against the gigabytes that
the same number of networkx nodes would take. The experiment graph
(:mod:`pytest_rtgov.core.graph`) materialises runs, commits, environments, baselines,
artifacts and subjects for the whole history, and observation nodes only for the runs
asked for. Building (runs, string tables, pending rows) and the queries (series, a
run's values, top regressions, the first regression) are here; the store layer keeps
the columns on disk (``store/delta_index/``).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable
from typing import Any

import numpy as np

from pytest_rtgov.core.delta_index.observations import (
    BaselineEvent,
    Observation,
    RunInfo,
    observations_of,
    run_info,
)
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.core.verdict import BREACHING, GATE_STATUSES

__all__ = ["BREACH_CODES", "COLUMNS", "VERDICTS", "DeltaIndex"]

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
        self._pending: dict[str, array[Any]] = {
            name: array(_TYPECODES[name]) for name in COLUMNS
        }
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
