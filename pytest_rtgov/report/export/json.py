"""The JSON export: canonical JSON of the run id, its verdict, the flat rows and the
quarantine section. Pure."""

from __future__ import annotations

from pytest_rtgov.core.canonical import canonical_json
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.core.verdict import Verdict
from pytest_rtgov.report.export.common import EXPORT_SCHEMA, metrics_of

__all__ = ["to_json"]


def to_json(record: RunRecord) -> bytes:
    """Canonical JSON: the run id, its verdict and the flat list of rows; the record's
    ``quarantine`` section too when the project has a quarantine file."""
    verdict = Verdict.of_record(record)
    rows = [row.to_dict() for row in metrics_of(record, verdict)]
    doc = {
        "schema": EXPORT_SCHEMA,
        "run_id": record.run_id,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "backend": record.backend,
        "exit_status": verdict.exit_status,
        "verdict": verdict.to_dict(),
        "metrics": rows,
    }
    if record.quarantine:  # the record's section as it is (docs/quarantine.md), when any
        doc["quarantine"] = dict(record.quarantine)
    return canonical_json(doc) + b"\n"
