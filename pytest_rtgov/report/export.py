"""Exports of a run record for other tools: JSON, Prometheus, OTLP, JUnit XML, Markdown.

Pure: a :class:`~pytest_rtgov.core.records.RunRecord` in, bytes out; nothing here
touches the disk or the environment (:mod:`pytest_rtgov.report.ci` and the CLI write).

Every format exports the same rows, :func:`metrics_of`: one per observation of
:func:`pytest_rtgov.core.delta_index.observations_of` (a subject x metric: the median of a
measurement, or a recorded value or digest) and per gate that judged it, each with the
gate's threshold and verdict. A metric two gates judge (a budget and a regression
rule on ``wall_time``) gives two rows with the same value. Gate results with no
observation (a ``missing`` metric, a calibrated time) still give a row, with the
gate's current value when it has one, so no verdict is left out of an export.

>>> FORMATS
('json', 'prometheus', 'otlp', 'junit', 'markdown')
"""

from __future__ import annotations

import calendar
import math
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from pytest_rtgov.core.canonical import canonical_json
from pytest_rtgov.core.constants import EXPORT_FORMATS
from pytest_rtgov.core.delta_index import observations_of
from pytest_rtgov.core.gates import CALIBRATED_SUFFIX, subject_id
from pytest_rtgov.core.gates_config import BUILTIN_METRICS, format_quantity
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.errors import RtgovError

__all__ = [
    "EXPORT_SCHEMA",
    "FORMATS",
    "VERDICT_STATES",
    "ExportError",
    "ExportedMetric",
    "describe_result",
    "export",
    "metrics_of",
    "to_json",
    "to_junit",
    "to_markdown",
    "to_otlp",
    "to_prometheus",
]

FORMATS: Final = EXPORT_FORMATS
EXPORT_SCHEMA: Final = "rtgov.export/1"
VERDICT_STATES: Final = ("pass", "breach", "missing", "unconfirmed", "new", "not-run")
_BREACHED: Final = ("breach", "missing")
_PROMETHEUS_BUILTIN: Final = {
    "wall_time": "rtgov_wall_time_seconds",
    "cpu_time": "rtgov_cpu_time_seconds",
    "gpu_time": "rtgov_gpu_time_seconds",
    "peak_memory": "rtgov_peak_memory_bytes",
    "gpu_memory": "rtgov_gpu_memory_bytes",
}
_OTLP_UNITS: Final = {"s": "s", "bytes": "By", "calibration units": "1"}
_MARKDOWN_ROWS: Final = 30


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


# -- rows ----------------------------------------------------------------------------


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


# -- json ----------------------------------------------------------------------------


def to_json(record: RunRecord) -> bytes:
    """Canonical JSON: the run id, its verdict and the flat list of rows."""
    rows = [row.to_dict() for row in metrics_of(record)]
    doc = {
        "schema": EXPORT_SCHEMA,
        "run_id": record.run_id,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "backend": record.backend,
        "exit_status": record.exit_status,
        "verdict": _verdict(record),
        "metrics": rows,
    }
    return canonical_json(doc) + b"\n"


# -- prometheus ----------------------------------------------------------------------


def to_prometheus(record: RunRecord) -> bytes:
    """Prometheus text exposition (format 0.0.4), written by ``prometheus_client``.

    Values: ``rtgov_wall_time_seconds``, ``rtgov_cpu_time_seconds``,
    ``rtgov_gpu_time_seconds``, ``rtgov_peak_memory_bytes``, ``rtgov_gpu_memory_bytes``
    and ``rtgov_metric_value`` (recorded numbers, calibrated times), labelled
    ``subject``, ``metric``, ``backend``, ``run_id``; digests as
    ``rtgov_digest_info{digest=...} 1``. Judgements, with a ``gate`` label:
    ``rtgov_gate_threshold`` and ``rtgov_gate_verdict`` (one sample per state of
    ``verdict``, 1 for the current one). The run: ``rtgov_run_exit_status``,
    ``rtgov_run_gate_breaches``, ``rtgov_run_info``.
    """
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector

    run, backend = record.run_id, record.backend
    series = ["subject", "metric", "backend", "run_id"]
    families: dict[str, GaugeMetricFamily] = {}

    def family(name: str, doc: str, labels: Sequence[str]) -> GaugeMetricFamily:
        if name not in families:
            families[name] = GaugeMetricFamily(name, doc, labels=list(labels))
        return families[name]

    seen: set[tuple[str, str]] = set()
    for row in metrics_of(record):
        key = [row.subject, row.metric, backend, run]
        if (row.subject, row.metric) not in seen:
            seen.add((row.subject, row.metric))
            if row.text is not None:
                family(
                    "rtgov_digest_info", "Recorded digest of a subject", [*series, "digest"]
                ).add_metric([*key, row.text], 1)
            elif row.value is not None:
                name = _PROMETHEUS_BUILTIN.get(row.metric, "rtgov_metric_value")
                doc = (
                    f"Median {row.metric} of a test or fixture"
                    if name != "rtgov_metric_value"
                    else "Recorded metric of a test or fixture (unit in the unit label)"
                )
                labels = series if name != "rtgov_metric_value" else [*series, "unit"]
                values = key if name != "rtgov_metric_value" else [*key, row.unit]
                family(name, doc, labels).add_metric(values, row.value)
        if not row.gate:
            continue
        gated = [row.subject, row.metric, row.gate, backend, run]
        gate_labels = ["subject", "metric", "gate", "backend", "run_id"]
        if row.threshold is not None:
            family(
                "rtgov_gate_threshold",
                "Value the gate compares the metric against, in the metric's unit",
                gate_labels,
            ).add_metric(gated, row.threshold)
        verdicts = family(
            "rtgov_gate_verdict",
            "Gate verdict: 1 for the current state of the verdict label, else 0",
            [*gate_labels, "verdict"],
        )
        for state in VERDICT_STATES:
            verdicts.add_metric([*gated, state], 1.0 if state == row.verdict else 0.0)

    verdict = _verdict(record)
    run_labels = ["run_id", "backend"]
    family("rtgov_run_exit_status", "pytest exit status of the run", run_labels).add_metric(
        [run, backend], record.exit_status
    )
    family("rtgov_run_gate_breaches", "Gates breached in the run", run_labels).add_metric(
        [run, backend], sum(1 for g in record.gate_results if g.get("status") in _BREACHED)
    )
    family(
        "rtgov_run_info",
        "The run: mode, verdict, commit",
        [*run_labels, "mode", "verdict", "commit"],
    ).add_metric(
        [
            run,
            backend,
            record.mode,
            str(verdict["status"]),
            record.environment.get("git.commit", ""),
        ],
        1,
    )

    class _RunCollector(Collector):
        def collect(self) -> Iterator[GaugeMetricFamily]:
            yield from (families[name] for name in sorted(families))

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_RunCollector())
    return bytes(generate_latest(registry))


# -- otlp ----------------------------------------------------------------------------


def to_otlp(record: RunRecord) -> bytes:
    """An OTLP/JSON ``ExportMetricsServiceRequest`` (the protobuf JSON mapping).

    Gauges ``rtgov.wall_time`` (unit ``s``), ``rtgov.cpu_time``, ``rtgov.gpu_time``,
    ``rtgov.peak_memory`` (``By``), ``rtgov.gpu_memory``, ``rtgov.metric`` (recorded
    numbers, with ``metric`` and ``unit`` attributes), ``rtgov.digest`` (1, with a
    ``digest`` attribute), ``rtgov.run.exit_status`` and ``rtgov.run.gate_breaches``.
    Data points carry ``subject``, ``metric``, ``backend`` and, when judged, ``gate``,
    ``verdict`` and ``threshold``, at ``timeUnixNano`` = the run's end.
    """
    from google.protobuf import json_format
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.common.v1 import common_pb2
    from opentelemetry.proto.metrics.v1 import metrics_pb2

    def attribute(key: str, value: str | float | int) -> common_pb2.KeyValue:
        if isinstance(value, str):
            return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=value))
        if isinstance(value, int):
            return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(int_value=value))
        return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(double_value=value))

    start = _time_ns(record.started_at, record, "started_at")
    end = _time_ns(record.ended_at, record, "ended_at")
    verdict = _verdict(record)
    request = ExportMetricsServiceRequest()
    resource_metrics = request.resource_metrics.add()
    resource = [
        attribute("service.name", "pytest-rtgov"),
        attribute("rtgov.run_id", record.run_id),
        attribute("rtgov.mode", record.mode),
        attribute("rtgov.backend", record.backend),
        attribute("rtgov.verdict", str(verdict["status"])),
    ]
    for env_key, key in (
        ("git.commit", "vcs.ref.head.revision"),
        ("git.branch", "vcs.ref.head.name"),
    ):
        if record.environment.get(env_key):
            resource.append(attribute(key, record.environment[env_key]))
    if record.environment.get("pytest_rtgov"):
        resource.append(attribute("service.version", record.environment["pytest_rtgov"]))
    resource_metrics.resource.attributes.extend(resource)
    scope = resource_metrics.scope_metrics.add()
    scope.scope.name = "pytest-rtgov"
    scope.scope.version = record.environment.get("pytest_rtgov", "")
    metrics: dict[str, metrics_pb2.Metric] = {}

    def gauge(name: str, unit: str, description: str) -> Any:
        if name not in metrics:
            metric = metrics[name] = scope.metrics.add()
            metric.name, metric.unit, metric.description = name, unit, description
        return metrics[name].gauge

    for row in metrics_of(record):
        attributes = [
            attribute("subject", row.subject),
            attribute("metric", row.metric),
            attribute("backend", row.backend),
        ]
        if row.gate:
            attributes += [attribute("gate", row.gate), attribute("verdict", row.verdict)]
            if row.rule:
                attributes.append(attribute("rule", row.rule))
            if row.threshold is not None:
                attributes.append(attribute("threshold", row.threshold))
        if row.text is not None:
            point = gauge("rtgov.digest", "1", "Recorded digest (in the digest attribute)")
            point = point.data_points.add(as_int=1)
            attributes.append(attribute("digest", row.text))
        elif row.value is not None:
            if row.metric in BUILTIN_METRICS:
                unit = _OTLP_UNITS[row.unit]
                point = gauge(f"rtgov.{row.metric}", unit, f"Median {row.metric}")
            else:
                point = gauge("rtgov.metric", "", "Recorded metric (unit in the unit attribute)")
                attributes.append(attribute("unit", row.unit))
            point = point.data_points.add(as_double=row.value)
        else:
            continue  # a missing metric: its verdict is in the run's breach count
        point.attributes.extend(attributes)
        point.start_time_unix_nano, point.time_unix_nano = start, end
    run = [attribute("rtgov.run_id", record.run_id)]
    for name, value, description in (
        ("rtgov.run.exit_status", record.exit_status, "pytest exit status of the run"),
        (
            "rtgov.run.gate_breaches",
            sum(1 for g in record.gate_results if g.get("status") in _BREACHED),
            "Gates breached in the run",
        ),
    ):
        point = gauge(name, "1", description).data_points.add(as_int=value)
        point.attributes.extend(run)
        point.start_time_unix_nano, point.time_unix_nano = start, end
    text = json_format.MessageToJson(request, use_integers_for_enums=True, sort_keys=True)
    return text.encode("utf-8") + b"\n"


# -- junit ---------------------------------------------------------------------------


def _junit_names(nodeid: str) -> tuple[str, str]:
    """pytest's own mangling: ``a/b.py::C::t[x]`` -> ``("a.b.C", "t[x]")``."""
    parts = nodeid.split("::")
    path = parts[0].replace("/", ".")
    parts[0] = path[: -len(".py")] if path.endswith(".py") else path
    if len(parts) == 1:
        return parts[0], parts[0]
    return ".".join(parts[:-1]), parts[-1]


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


def to_junit(record: RunRecord) -> bytes:
    """JUnit XML: a testcase per test (and per gated fixture), time = median wall time.

    Failed tests and gate breaches are ``<failure>`` elements (the breach's rule and
    values in the text); every metric's value, threshold and verdict are testcase
    properties named ``rtgov.<metric>``, ``rtgov.<metric>[<gate>].threshold`` and
    ``rtgov.<metric>[<gate>].verdict``.
    """
    rows: dict[str, list[ExportedMetric]] = {}
    for row in metrics_of(record):
        rows.setdefault(row.subject, []).append(row)
    breaches: dict[str, list[Mapping[str, Any]]] = {}
    for result in record.gate_results:
        if result.get("status") in _BREACHED:
            breaches.setdefault(str(result["subject"]), []).append(result)
    verdict = _verdict(record)

    cases: list[tuple[str, str, str, str]] = []  # subject, classname, name, outcome
    for test in record.tests:
        cases.append((test.nodeid, *_junit_names(test.nodeid), test.outcome))
    fixtures = {subject_id(f): f for f in record.fixtures}
    for subject in sorted({str(g["subject"]) for g in record.gate_results} & set(fixtures)):
        fixture = fixtures[subject]
        classname = _junit_names(fixture.nodeid)[0] if fixture.nodeid else "rtgov.session"
        failed = any(s.outcome != "passed" for s in fixture.setups)
        cases.append(
            (subject, classname, f"fixture:{fixture.name}", "error" if failed else "passed")
        )

    suite = ET.Element("testsuite", name="pytest-rtgov", timestamp=record.started_at)
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("rtgov.run_id", record.run_id),
        ("rtgov.verdict", str(verdict["status"])),
        ("rtgov.exit_status", str(verdict["exit_status"])),
        ("rtgov.backend", record.backend),
        ("rtgov.mode", record.mode),
        ("rtgov.git.commit", record.environment.get("git.commit", "")),
    ):
        if value:
            ET.SubElement(properties, "property", name=name, value=value)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total = 0.0
    for subject, classname, name, outcome in cases:
        wall = next(
            (r.value for r in rows.get(subject, ()) if r.metric == "wall_time" and r.value),
            0.0,
        )
        total += wall or 0.0
        case = ET.SubElement(suite, "testcase", classname=classname, name=name)
        case.set("time", f"{wall or 0.0:.6f}")
        props = ET.SubElement(case, "properties")
        named: set[str] = set()
        for row in rows.get(subject, ()):
            if row.metric not in named:
                named.add(row.metric)
                shown = row.text if row.text is not None else row.value
                if shown is not None:
                    ET.SubElement(props, "property", name=f"rtgov.{row.metric}", value=f"{shown}")
            if row.gate:
                prefix = f"rtgov.{row.metric}[{row.gate}]"
                if row.threshold is not None:
                    ET.SubElement(
                        props, "property", name=f"{prefix}.threshold", value=f"{row.threshold!r}"
                    )
                ET.SubElement(props, "property", name=f"{prefix}.verdict", value=row.verdict)
        if not len(props):
            case.remove(props)
        counts["tests"] += 1
        texts = [describe_result(b) for b in breaches.get(subject, ())]
        if outcome == "skipped":
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", message="skipped")
        elif outcome == "error":
            counts["errors"] += 1
            ET.SubElement(case, "error", message="setup or teardown failed")
        elif outcome == "failed" or texts:
            counts["failures"] += 1
            message = "test failed" if outcome == "failed" else texts[0]
            if outcome != "failed" and len(texts) > 1:
                message = f"{len(texts)} rtgov gates breached"
            failure = ET.SubElement(
                case, "failure", message=message, type="failed" if outcome == "failed" else "rtgov"
            )
            failure.text = "\n".join(texts) or None
    for key, value in counts.items():
        suite.set(key, str(value))
    suite.set("time", f"{total:.6f}")
    root = ET.Element("testsuites", name="pytest-rtgov")
    for key, value in suite.attrib.items():
        if key in counts or key == "time":
            root.set(key, value)
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


# -- markdown ------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(record: RunRecord) -> str:
    """A short summary for people and CI step summaries: verdict, then what breached."""
    verdict = _verdict(record)
    status = str(verdict["status"])
    icon = {"passed": "✅", "recorded": "📝"}.get(status, "❌")
    lines = [
        f"### {icon} rtgov: {status.upper()} (exit status {verdict['exit_status']})",
        "",
        f"Run `{record.run_id}`, {record.mode} mode, backend {record.backend}, "
        f"{len(record.tests)} tests.",
    ]
    judged = [g for g in record.gate_results if g.get("status") in (*_BREACHED, "unconfirmed")]
    judged.sort(
        key=lambda g: (g.get("status") not in _BREACHED, str(g["subject"]), str(g["metric"]))
    )
    if judged:
        lines += [
            "",
            "| status | subject | metric | current | baseline | threshold | rule |",
            "|---|---|---|---|---|---|---|",
        ]
        for g in judged[:_MARKDOWN_ROWS]:
            metric = str(g["metric"])
            cells = [
                f"**{g['status']}**",
                f"`{g['subject']}`",
                metric,
                _format(metric, g.get("current")),
                _format(metric, g.get("baseline")),
                _format(metric, _number(g.get("threshold"))),
                str(g.get("rule") or "-"),
            ]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        if len(judged) > _MARKDOWN_ROWS:
            lines.append(f"\n... and {len(judged) - _MARKDOWN_ROWS} more (`rtgov show`).")
    if record.gate_results:
        counts = {state: 0 for state in VERDICT_STATES}
        for g in record.gate_results:
            counts[str(g.get("status"))] = counts.get(str(g.get("status")), 0) + 1
        shown = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
        lines += ["", f"{len(record.gate_results)} gate checks: {shown}."]
    outcomes: dict[str, int] = {}
    for test in record.tests:
        outcomes[test.outcome] = outcomes.get(test.outcome, 0) + 1
    if outcomes:
        lines.append("Tests: " + ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())) + ".")
    notes = verdict.get("notes") or []
    if notes:
        lines += ["", *(f"> {_cell(str(note))}" for note in notes[:3])]
    return "\n".join(lines) + "\n"


# -- dispatch ------------------------------------------------------------------------

_EXPORTERS: Final[dict[str, Callable[[RunRecord], bytes]]] = {
    "json": to_json,
    "prometheus": to_prometheus,
    "otlp": to_otlp,
    "junit": to_junit,
    "markdown": lambda record: to_markdown(record).encode("utf-8"),
}


def export(record: RunRecord, fmt: str) -> bytes:
    """The record in format ``fmt`` (one of :data:`FORMATS`), as bytes."""
    exporter = _EXPORTERS.get(fmt)
    if exporter is None:
        raise ExportError(f"unknown export format {fmt!r}, expected one of {', '.join(FORMATS)}")
    return exporter(record)
