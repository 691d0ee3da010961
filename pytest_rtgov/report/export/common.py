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
from pytest_rtgov.core.gates import CALIBRATED_SUFFIX, subject_id
from pytest_rtgov.core.gates_config import BUILTIN_METRICS, format_quantity
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.errors import RtgovError

__all__ = [
    "EXPORT_SCHEMA",
    "VERDICT_STATES",
    "ExportError",
    "ExportedMetric",
    "describe_result",
    "metrics_of",
]

EXPORT_SCHEMA: Final = "rtgov.export/1"
VERDICT_STATES: Final = ("pass", "breach", "missing", "unconfirmed", "new", "not-run")
_BREACHED: Final = ("breach", "missing")


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
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


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
    if metric in BUILTIN_METRICS:
        return BUILTIN_METRICS[metric][0]
    if metric.endswith(CALIBRATED_SUFFIX):
        return "calibration units"
    return units.get((subject, metric), "")


def metrics_of(record: RunRecord) -> list[ExportedMetric]:
    """Every exported row of a run, sorted by (subject, metric, gate)."""
    results: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for result in record.gate_results:
        results.setdefault((str(result["subject"]), str(result["metric"])), []).append(result)
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
            baseline = result.get("baseline")
            rows.append(
                ExportedMetric(
                    **common,  # type: ignore[arg-type]
                    gate=str(result.get("gate", "")),
                    threshold=_number(result.get("threshold")),  # absent in old records
                    verdict=str(result.get("status", "")),
                    rule=str(result.get("rule", "")),
                    baseline=baseline if isinstance(baseline, str) else _number(baseline),
                )
            )

    observed = set()
    for obs in observations_of(record):
        observed.add((obs.subject, obs.metric))
        value = None if obs.text is not None else _number(obs.value)
        add(obs.subject, obs.metric, value, obs.text)
    for subject, metric in sorted(set(results) - observed):
        current = results[(subject, metric)][0].get("current")
        text = current if isinstance(current, str) else None
        add(subject, metric, _number(current), text)
    rows.sort(key=lambda r: (r.subject, r.metric, r.gate))
    return rows


def _verdict(record: RunRecord) -> dict[str, Any]:
    verdict = dict(record.verdict)
    verdict.setdefault("status", "recorded")
    verdict.setdefault("exit_status", record.exit_status)
    return verdict


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



def _format(metric: str, value: float | str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value[:19] + "..." if value.startswith("sha256:") and len(value) > 22 else value
    if metric in BUILTIN_METRICS:  # seconds, bytes; not calibration units
        return format_quantity(metric, value)
    return f"{value:.6g}"


def describe_result(result: Mapping[str, Any]) -> str:
    """One line on a gate result: gate, status, subject, values, threshold, rule, reason."""
    metric = str(result.get("metric", ""))
    return (
        f"gate {result.get('gate')!r} {result.get('status')}: {result.get('subject')} {metric}: "
        f"current {_format(metric, result.get('current'))}, "
        f"baseline {_format(metric, result.get('baseline'))}, "
        f"threshold {_format(metric, _number(result.get('threshold')))}; "
        f"rule: {result.get('rule') or '-'}"
        + (f"; {result['reason']}" if result.get("reason") else "")
    )
