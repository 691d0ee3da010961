"""The Prometheus export: text exposition format 0.0.4 of the rows. Pure."""

from __future__ import annotations

import calendar
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from typing import Any, Final

from pytest_rtgov.core.metrics import BUILTIN_METRICS
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.core.verdict import GATE_STATUSES, Verdict
from pytest_rtgov.report.export.common import metrics_of
from pytest_rtgov.report.export.needs import require_format
from pytest_rtgov.report.quarantine import QUARANTINED_FAIL, QUARANTINED_PASS, quarantine_view

__all__ = ["to_prometheus"]

OUTCOMES: Final = (QUARANTINED_PASS, QUARANTINED_FAIL)

_PROMETHEUS_BUILTIN: Final = {
    m.name: f"rtgov_{m.name}_{'seconds' if m.is_time else 'bytes'}"
    for m in BUILTIN_METRICS.values()
}


def _quarantine_families(record: RunRecord, family: Callable[..., Any]) -> None:
    """The run's quarantine section (docs/quarantine.md), when it has one: counts by
    outcome, one sample per quarantined result and state, one info series per entry."""
    view = quarantine_view(record)
    if view is None:
        return
    backend = record.backend
    for kind in ("test", "gate"):
        counts = family(
            f"rtgov_quarantined_{kind}s",
            f"Quarantined {kind} results of the run, by outcome",
            ["outcome", "backend"],
        )
        for outcome in OUTCOMES:
            counts.add_metric([outcome, backend], view.count(kind, outcome))
    family(
        "rtgov_quarantine_excused_failures",
        "Quarantined failures the exit status ignored (their entry was valid)",
        ["backend"],
    ).add_metric([backend], sum(1 for r in view.rows if r.excused))
    results = family(
        "rtgov_quarantined_result",
        "A quarantined test or gate result: 1 for its current outcome, else 0",
        ["subject", "gate", "metric", "entry", "outcome", "backend"],
    )
    for row in view.rows:
        labels = [row.subject, row.gate, row.metric, row.entry]
        for outcome in OUTCOMES:
            results.add_metric([*labels, outcome, backend], 1.0 if outcome == row.outcome else 0.0)
    info = family(
        "rtgov_quarantine_entry_info",
        "A quarantine entry: subject, owner, issue, expiry and state (valid, expired, ...)",
        ["entry", "subject", "owner", "issue", "expires", "state", "backend"],
    )
    expiry = family(
        "rtgov_quarantine_entry_expires_timestamp_seconds",
        "A quarantine entry's expiry date (its start, UTC) as a Unix time",
        ["entry", "subject", "backend"],
    )
    for entry in view.entries:
        text = {k: str(entry.get(k) or "") for k in ("id", "subject", "expires", "state")}
        info.add_metric(
            [
                text["id"],
                text["subject"],
                str(entry.get("owner") or ""),
                str(entry.get("issue") or ""),
                text["expires"],
                text["state"],
                backend,
            ],
            1,
        )
        try:
            day = date.fromisoformat(text["expires"])
        except ValueError:
            continue  # an entry that did not parse: its state says why
        stamp = calendar.timegm(day.timetuple())
        expiry.add_metric([text["id"], text["subject"], backend], stamp)


def to_prometheus(record: RunRecord) -> bytes:
    """Prometheus text exposition (format 0.0.4), written by ``prometheus_client``.

    Values: ``rtgov_wall_time_seconds``, ``rtgov_cpu_time_seconds``,
    ``rtgov_gpu_time_seconds``, ``rtgov_peak_memory_bytes``, ``rtgov_gpu_memory_bytes``
    and ``rtgov_metric_value`` (recorded numbers, calibrated times), labelled
    ``subject``, ``metric``, ``backend``; digests as ``rtgov_digest_info{digest=...} 1``.
    Judgements, with a ``gate`` label: ``rtgov_gate_threshold`` and
    ``rtgov_gate_verdict`` (one sample per state of ``verdict``, 1 for the current
    one). The run: ``rtgov_run_exit_status``, ``rtgov_run_gate_breaches``, and
    ``rtgov_run_info{run_id=..., commit=..., mode=..., verdict=...} 1``.

    Labels are of bounded cardinality: every run exports the same series (one per
    subject, metric and gate), so a scrape or a push of each run updates them rather
    than adding new ones. The run's id and commit, which change every run, are labels
    of the info metric only (Prometheus's convention for such facts, as ``*_build_info``);
    a query joins them on ``backend`` when it needs them.

    Quarantine, when the project has a quarantine file (docs/quarantine.md):
    ``rtgov_quarantined_tests{outcome=...}`` and ``rtgov_quarantined_gates{outcome=...}``
    (``quarantined-pass``, ``quarantined-fail``), ``rtgov_quarantine_excused_failures``,
    ``rtgov_quarantined_result{subject, gate, metric, entry, outcome}`` (1 for the
    current outcome), ``rtgov_quarantine_entry_info{entry, subject, owner, issue,
    expires, state} 1`` and ``rtgov_quarantine_entry_expires_timestamp_seconds``.
    """
    require_format("prometheus")
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector

    run, backend = record.run_id, record.backend
    series = ["subject", "metric", "backend"]
    families: dict[str, GaugeMetricFamily] = {}

    def family(name: str, doc: str, labels: Sequence[str]) -> GaugeMetricFamily:
        if name not in families:
            families[name] = GaugeMetricFamily(name, doc, labels=list(labels))
        return families[name]

    verdict = Verdict.of_record(record)
    seen: set[tuple[str, str]] = set()
    for row in metrics_of(record, verdict):
        key = [row.subject, row.metric, backend]
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
        gated = [row.subject, row.metric, row.gate, backend]
        gate_labels = ["subject", "metric", "gate", "backend"]
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
        for state in GATE_STATUSES:
            verdicts.add_metric([*gated, state], 1.0 if state == row.verdict else 0.0)

    _quarantine_families(record, family)
    run_labels = ["backend"]
    family("rtgov_run_exit_status", "pytest exit status of the run", run_labels).add_metric(
        [backend], verdict.exit_status
    )
    family("rtgov_run_gate_breaches", "Gates breached in the run", run_labels).add_metric(
        [backend], len(verdict.breaches)
    )
    family(
        "rtgov_run_info",
        "The run: its id, mode, verdict and commit (the only series labelled by run)",
        ["run_id", *run_labels, "mode", "verdict", "commit"],
    ).add_metric(
        [
            run,
            backend,
            record.mode,
            verdict.status,
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
