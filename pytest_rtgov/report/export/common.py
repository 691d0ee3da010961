"""Rows every export format shares: :class:`ExportedMetric` and :func:`metrics_of`.

Pure. Every format exports the same rows, :func:`metrics_of`: one per observation of
:func:`pytest_rtgov.core.delta_index.observations_of` (a subject x metric: the median of a
measurement, or a recorded value or digest) and per gate that judged it, each with the
gate's threshold and verdict. A metric two gates judge (a budget and a regression
rule on ``wall_time``) gives two rows with the same value. Gate results with no
observation (a ``missing`` metric, a calibrated time) still give a row, with the
gate's current value when it has one, so no verdict is left out of an export.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from pytest_rtgov.core.delta_index import observations_of
from pytest_rtgov.core.format import format_value
from pytest_rtgov.core.metrics import metric_unit
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.core.subjects import subject_id
from pytest_rtgov.core.verdict import GateResult, Verdict
from pytest_rtgov.errors import RtgovError

__all__ = [
    "EXPORT_SCHEMA",
    "ExportError",
    "ExportedMetric",
    "describe_result",
    "markdown_cell",
    "metrics_of",
]

EXPORT_SCHEMA: Final = "rtgov.export/1"


class ExportError(RtgovError):
    """A record cannot be exported in the requested format (the message says why)."""


@dataclass(frozen=True, slots=True)
class ExportedMetric:
    """One exported row: a subject's metric, and one gate's judgement of it.

    ``value`` is a number, ``text`` a digest (``sha256:...``); at most one is set.
    ``gate``, ``verdict`` and ``rule`` are empty for a metric no gate judged;
    ``threshold`` is None there and for exact and A/B gates (no single number).
    """

    subject: str
    metric: str
    value: float | None
    text: str | None
    unit: str
    backend: str
    gate: str = ""
    threshold: float | None = None
    verdict: str = ""
    rule: str = ""
    baseline: float | str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def _units(record: RunRecord) -> dict[tuple[str, str], str]:
    units: dict[tuple[str, str], str] = {}
    for test in record.tests:
        for m in test.metrics:
            units.setdefault((test.nodeid, m.name), m.unit)
    for fixture in record.fixtures:
        for setup in fixture.setups:
            for m in setup.metrics:
                units.setdefault((subject_id(fixture), m.name), m.unit)
    return units


def _unit(metric: str, units: Mapping[tuple[str, str], str], subject: str) -> str:
    return metric_unit(metric, units.get((subject, metric), ""))


def metrics_of(record: RunRecord, verdict: Verdict | None = None) -> list[ExportedMetric]:
    """Every exported row of a run, sorted by (subject, metric, gate); ``verdict`` is
    the record's (:meth:`Verdict.of_record`), read once by the caller."""
    verdict = verdict or Verdict.of_record(record)
    results: dict[tuple[str, str], list[GateResult]] = {}
    for result in verdict.results:
        results.setdefault((result.subject, result.metric), []).append(result)
    units = _units(record)
    rows: list[ExportedMetric] = []

    def add(subject: str, metric: str, value: float | None, text: str | None) -> None:
        common = dict(
            subject=subject,
            metric=metric,
            value=value,
            text=text,
            unit=_unit(metric, units, subject),
            backend=record.backend,
        )
        judged = results.get((subject, metric), ())
        if not judged:
            rows.append(ExportedMetric(**common))  # type: ignore[arg-type]
        for result in judged:
            baseline = result.baseline
            rows.append(
                ExportedMetric(
                    **common,  # type: ignore[arg-type]
                    gate=result.gate,
                    threshold=_number(result.threshold),  # None in old records
                    verdict=result.status,
                    rule=result.rule,
                    baseline=baseline if isinstance(baseline, str) else _number(baseline),
                )
            )

    observed = set()
    for obs in observations_of(record):
        observed.add((obs.subject, obs.metric))
        value = None if obs.text is not None else _number(obs.value)
        add(obs.subject, obs.metric, value, obs.text)
    for subject, metric in sorted(set(results) - observed):
        current = results[(subject, metric)][0].current
        text = current if isinstance(current, str) else None
        add(subject, metric, _number(current), text)
    rows.sort(key=lambda r: (r.subject, r.metric, r.gate))
    return rows


def _time_ns(stamp: str, record: RunRecord, key: str) -> int:
    """Nanoseconds since the epoch of a record's UTC ISO 8601 time."""
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        raise ExportError(
            f"run {record.run_id}: {key} {stamp!r} is not an ISO 8601 time "
            "(expected e.g. '2026-01-02T03:04:05.678Z')"
        ) from None
    return calendar.timegm(moment.utctimetuple()) * 10**9 + moment.microsecond * 1000



def describe_result(result: GateResult) -> str:
    """One line on a gate result: gate, status, subject, values, threshold, rule, reason."""
    metric = result.metric
    return (
        f"gate {result.gate!r} {result.status}: {result.subject} {metric}: "
        f"current {format_value(metric, result.current)}, "
        f"baseline {format_value(metric, result.baseline)}, "
        f"threshold {format_value(metric, _number(result.threshold))}; "
        f"rule: {result.rule or '-'}"
        + (f"; {result.reason}" if result.reason else "")
    )


def markdown_cell(text: str) -> str:
    """``text`` as one markdown table cell: pipes escaped, line breaks made spaces."""
    return text.replace("|", "\\|").replace("\n", " ")
