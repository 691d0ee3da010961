"""Exports of a run record for other tools: JSON, Prometheus, OTLP, JUnit XML, Markdown.

Pure: a :class:`~pytest_rtgov.core.records.RunRecord` in, bytes out; nothing here
touches the disk or the environment (:mod:`pytest_rtgov.report.ci` and the CLI write).
This module dispatches by format; one module per format holds the writer
(:mod:`.json`, :mod:`.prometheus`, :mod:`.otlp`, :mod:`.junit`, :mod:`.markdown`) and
:mod:`.common` the rows they all export.

>>> FORMATS
('json', 'prometheus', 'otlp', 'junit', 'markdown')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from pytest_rtgov.core.constants import EXPORT_FORMATS
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.report.export.common import (
    EXPORT_SCHEMA,
    ExportedMetric,
    ExportError,
    describe_result,
    metrics_of,
)
from pytest_rtgov.report.export.json import to_json
from pytest_rtgov.report.export.junit import to_junit
from pytest_rtgov.report.export.markdown import to_markdown
from pytest_rtgov.report.export.needs import require_format
from pytest_rtgov.report.export.otlp import to_otlp
from pytest_rtgov.report.export.prometheus import to_prometheus

__all__ = [
    "EXPORT_SCHEMA",
    "FORMATS",
    "ExportError",
    "ExportedMetric",
    "describe_result",
    "export",
    "metrics_of",
    "require_format",
    "to_json",
    "to_junit",
    "to_markdown",
    "to_otlp",
    "to_prometheus",
]

FORMATS: Final = EXPORT_FORMATS

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
