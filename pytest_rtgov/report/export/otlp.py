"""The OTLP export: an OTLP/JSON ``ExportMetricsServiceRequest`` of the rows. Pure."""

from __future__ import annotations

from typing import Any, Final

from pytest_rtgov.core.metrics import BUILTIN_METRICS
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.core.verdict import Verdict
from pytest_rtgov.report.export.common import _time_ns, metrics_of
from pytest_rtgov.report.export.needs import require_format
from pytest_rtgov.report.quarantine import QuarantinedRow, QuarantineView, quarantine_view

__all__ = ["to_otlp"]

_OTLP_UNITS: Final = {"s": "s", "bytes": "By", "calibration units": "1"}


def _attributes(row: QuarantinedRow) -> list[tuple[str, str]]:
    """A quarantined result's ``rtgov.quarantine.*`` attributes."""
    return [
        ("rtgov.quarantine.entry", row.entry),
        ("rtgov.quarantine.outcome", row.outcome),
        ("rtgov.quarantine.owner", row.owner),
        ("rtgov.quarantine.issue", row.issue),
        ("rtgov.quarantine.expires", row.expires),
        ("rtgov.quarantine.state", row.state),
        ("rtgov.quarantine.excused", "true" if row.excused else "false"),
    ]


def _quarantined(
    view: QuarantineView | None, subject: str, gate: str, metric: str
) -> list[tuple[str, str]]:
    """The attributes of a data point of a quarantined test, or of a quarantined gate's
    judgement (the gate's entry when both are)."""
    if view is None:
        return []
    row = (view.for_gate(gate, subject, metric) if gate else None) or view.for_test(subject)
    return _attributes(row) if row is not None else []


def to_otlp(record: RunRecord) -> bytes:
    """An OTLP/JSON ``ExportMetricsServiceRequest`` (the protobuf JSON mapping).

    Gauges ``rtgov.wall_time`` (unit ``s``), ``rtgov.cpu_time``, ``rtgov.gpu_time``,
    ``rtgov.peak_memory`` (``By``), ``rtgov.gpu_memory``, ``rtgov.metric`` (recorded
    numbers, with ``metric`` and ``unit`` attributes), ``rtgov.digest`` (1, with a
    ``digest`` attribute), ``rtgov.run.exit_status`` and ``rtgov.run.gate_breaches``.
    Data points carry ``subject``, ``metric``, ``backend`` and, when judged, ``gate``,
    ``verdict`` and ``threshold``, at ``timeUnixNano`` = the run's end.

    Quarantine (docs/quarantine.md): the data points of a quarantined test or gate
    result carry ``rtgov.quarantine.entry``, ``.outcome``, ``.owner``, ``.issue``,
    ``.expires``, ``.state`` and ``.excused``; and each quarantined result is a point
    of ``rtgov.quarantine.result`` (1 when it failed), with those attributes, so a
    failed test that measured nothing is there too.
    """
    require_format("otlp")
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
    verdict = Verdict.of_record(record)
    view = quarantine_view(record)
    request = ExportMetricsServiceRequest()
    resource_metrics = request.resource_metrics.add()
    resource = [
        attribute("service.name", "pytest-rtgov"),
        attribute("rtgov.run_id", record.run_id),
        attribute("rtgov.mode", record.mode),
        attribute("rtgov.backend", record.backend),
        attribute("rtgov.verdict", verdict.status),
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

    for row in metrics_of(record, verdict):
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
        quarantined = _quarantined(view, row.subject, row.gate, row.metric)
        attributes += [attribute(k, v) for k, v in quarantined]
        point.attributes.extend(attributes)
        point.start_time_unix_nano, point.time_unix_nano = start, end
    for q in view.rows if view else ():
        point = gauge(
            "rtgov.quarantine.result",
            "1",
            "A quarantined test or gate result: 1 when it failed (quarantined-fail), else 0",
        ).data_points.add(as_int=int(q.failed))
        point.attributes.extend(
            [attribute("subject", q.subject), attribute("backend", record.backend)]
            + [attribute(k, v) for k, v in (("gate", q.gate), ("metric", q.metric)) if v]
            + [attribute(k, v) for k, v in _attributes(q)]
        )
        point.start_time_unix_nano, point.time_unix_nano = start, end
    run = [attribute("rtgov.run_id", record.run_id)]
    for name, value, description in (
        ("rtgov.run.exit_status", verdict.exit_status, "pytest exit status of the run"),
        (
            "rtgov.run.gate_breaches",
            len(verdict.breaches),
            "Gates breached in the run",
        ),
    ):
        point = gauge(name, "1", description).data_points.add(as_int=value)
        point.attributes.extend(run)
        point.start_time_unix_nano, point.time_unix_nano = start, end
    text = json_format.MessageToJson(request, use_integers_for_enums=True, sort_keys=True)
    return text.encode("utf-8") + b"\n"
