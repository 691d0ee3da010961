"""Exports of a run record (JSON, Prometheus, OTLP, JUnit, Markdown), gate thresholds,
GitHub Actions annotations and ``rtgov export``.

The record under test is the committed fixture record judged by real gates
(:func:`evaluate_gates`), with a baseline that makes some of them breach.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import statistics
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_rtgov.core.gate_rules import gate_threshold
from pytest_rtgov.core.gates import evaluate_gates
from pytest_rtgov.core.gates_config import Gate, GatesConfig
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.core.subjects import BaselineView
from pytest_rtgov.report.ci import annotations, escape_data, escape_property, github_actions
from pytest_rtgov.report.export import FORMATS, ExportError, export, metrics_of
from pytest_rtgov.store.runs import RunStore

FIXTURE = Path(__file__).parents[2] / "fixtures" / "records" / "run-v1.json"
SOFTMAX = "tests/workload/test_kernel_perf.py::test_softmax"
ACCURACY = "tests/workload/test_validation.py::test_val_accuracy"
OTHER_DIGEST = "sha256:" + "0" * 64


def _judged(record: RunRecord) -> RunRecord:
    gates = GatesConfig(
        source="gates.toml",
        min_samples=1000,  # no significance tests: effect thresholds only
        gates=(
            Gate(name="softmax budget", metric="wall_time", tests=(SOFTMAX,), maximum=1e-9),
            Gate(name="softmax memory", metric="peak_memory", tests=(SOFTMAX,), maximum=2**30),
            Gate(
                name="accuracy",
                metric="val_accuracy",
                tests=(ACCURACY,),
                minimum=0.90,
                max_regression=0.02,
            ),
            Gate(name="data", metric="dataset_digest", fixtures=("dataset",), exact=True),
            Gate(
                name="training loss",
                metric="train_loss",
                fixtures=("trained_model",),
                max_regression_pct=25,
            ),
        ),
    )
    baseline = BaselineView(
        measurements={},
        metrics={
            ACCURACY: {"val_accuracy": [0.97]},
            "fixture:dataset": {"dataset_digest": [OTHER_DIGEST]},
        },
    )
    results, empty = evaluate_gates(gates, record, baseline)
    assert not empty
    breaches = sum(r.breached for r in results)
    return dataclasses.replace(
        record,
        mode="gate",
        exit_status=6,
        environment={**record.environment, "git.commit": "ab" * 20},
        gate_results=tuple(r.to_dict() for r in results),
        verdict={
            "status": "breached",
            "exit_status": 6,
            "breaches": breaches,
            "unconfirmed": 0,
            "gates_evaluated": len(results),
            "notes": [],
            "baseline_action": None,
        },
    )


@pytest.fixture(scope="module")
def record() -> RunRecord:
    return _judged(RunRecord.from_dict(json.loads(FIXTURE.read_text()), source=str(FIXTURE)))


def _result(record: RunRecord, gate: str) -> dict:
    return next(dict(g) for g in record.gate_results if g["gate"] == gate)


# -- thresholds ------------------------------------------------------------------------


def test_the_judged_record_has_breaches_passes_and_thresholds(record):
    assert _result(record, "softmax budget")["status"] == "breach"
    assert _result(record, "softmax budget")["threshold"] == 1e-9
    assert _result(record, "data")["status"] == "breach"
    assert _result(record, "data")["threshold"] is None  # exact: no number
    accuracy = _result(record, "accuracy")
    assert accuracy["status"] == "pass"
    # min 0.90 and baseline 0.97 - 0.02: the tighter lower bound
    assert accuracy["threshold"] == pytest.approx(0.95)
    assert _result(record, "training loss")["threshold"] is None  # no baseline yet


@pytest.mark.parametrize(
    ("gate", "current", "reference", "higher_is_better", "expected"),
    [
        (Gate(name="g", metric="wall_time", maximum=2.0), 1.0, None, False, 2.0),
        (Gate(name="g", metric="m", minimum=0.5), 1.0, None, True, 0.5),
        (Gate(name="g", metric="wall_time", max_regression_pct=10), 1.0, 2.0, False, 2.2),
        (Gate(name="g", metric="m", max_regression_pct=10), 1.0, -2.0, False, -1.8),
        (Gate(name="g", metric="m", max_regression_pct=10), 1.0, 2.0, True, 1.8),
        (Gate(name="g", metric="m", max_regression=0.25), 1.0, 2.0, True, 1.75),
        # both regression rules: the tighter one
        (Gate(name="g", metric="m", max_regression_pct=50, max_regression=0.5), 1, 2.0, False, 2.5),
        (Gate(name="g", metric="m", max_regression_pct=10, maximum=2.1), 1, 2.0, False, 2.1),
        # both sides: the breached one, else the nearer one
        (Gate(name="g", metric="m", minimum=0.0, maximum=1.0), 0.9, None, None, 1.0),
        (Gate(name="g", metric="m", minimum=0.0, maximum=1.0), 0.1, None, None, 0.0),
        (Gate(name="g", metric="m", minimum=0.0, maximum=1.0), -5.0, None, None, 0.0),
        (Gate(name="g", metric="m", minimum=0.0, maximum=1.0), None, None, None, 1.0),
        # no number applies
        (Gate(name="g", metric="m", max_regression_pct=10), 1.0, None, False, None),
        (Gate(name="g", metric="m", max_regression_pct=10), 1.0, 2.0, None, None),
        (Gate(name="g", metric="m", exact=True), "sha256:a", "sha256:b", None, None),
        (Gate(name="g", metric="wall_time", max_regression_pct=5, ab=True), 1.0, 1.0, False, None),
    ],
)
def test_gate_threshold(gate, current, reference, higher_is_better, expected):
    got = gate_threshold(gate, current, reference, higher_is_better)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_records_without_thresholds_still_export(record):
    old = dataclasses.replace(
        record,
        gate_results=tuple(
            {k: v for k, v in g.items() if k != "threshold"} for g in record.gate_results
        ),
    )
    rows = metrics_of(old)
    assert {r.verdict for r in rows} >= {"breach", "pass"}
    assert all(r.threshold is None for r in rows)
    for fmt in FORMATS:
        assert export(old, fmt)


# -- rows --------------------------------------------------------------------------


def test_every_judged_metric_carries_its_gate_threshold_and_verdict(record):
    rows = metrics_of(record)
    by_gate = {r.gate: r for r in rows if r.gate}
    assert set(by_gate) == {g["gate"] for g in record.gate_results}
    for g in record.gate_results:
        row = by_gate[g["gate"]]
        assert (row.subject, row.metric, row.verdict) == (g["subject"], g["metric"], g["status"])
        assert row.threshold == g["threshold"]
        assert row.rule == g["rule"]
    softmax = by_gate["softmax budget"]
    assert softmax.unit == "s" and softmax.backend == "numpy"
    test = next(t for t in record.tests if t.nodeid == SOFTMAX)
    measured = [s.wall_ns * 1e-9 for s in test.samples if not s.warmup and s.completed]
    assert softmax.value == pytest.approx(statistics.median(measured))
    assert by_gate["data"].text.startswith("sha256:") and by_gate["data"].value is None
    # ungated observations are exported too, without a verdict
    assert any(r.metric == "cpu_time" and not r.gate and r.value for r in rows)


def test_a_missing_metric_keeps_its_row(record):
    missing = {
        "gate": "gone",
        "subject": SOFTMAX,
        "metric": "not_recorded",
        "status": "missing",
        "rule": "<= 1",
        "threshold": 1.0,
    }
    changed = dataclasses.replace(record, gate_results=(*record.gate_results, missing))
    row = next(r for r in metrics_of(changed) if r.gate == "gone")
    assert (row.value, row.verdict, row.threshold) == (None, "missing", 1.0)


# -- formats -------------------------------------------------------------------------


def test_json(record):
    data = export(record, "json")
    doc = json.loads(data)
    assert (
        data
        == json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        + b"\n"
    )
    assert doc["run_id"] == record.run_id
    assert doc["verdict"]["status"] == "breached" and doc["exit_status"] == 6
    budget = next(m for m in doc["metrics"] if m["gate"] == "softmax budget")
    assert budget["verdict"] == "breach" and budget["threshold"] == 1e-9
    assert budget["subject"] == SOFTMAX and budget["unit"] == "s" and budget["value"] > 0
    for m in doc["metrics"]:
        assert {
            "subject",
            "metric",
            "value",
            "text",
            "unit",
            "backend",
            "gate",
            "threshold",
            "verdict",
            "rule",
        } <= set(m)


def test_prometheus_parses_and_holds_values_thresholds_and_verdicts(record):
    from prometheus_client.parser import text_string_to_metric_families

    text = export(record, "prometheus").decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge"
        for s in family.samples:
            samples.setdefault(s.name, []).append(s)

    def one(name, **labels):
        found = [s for s in samples[name] if labels.items() <= s.labels.items()]
        assert len(found) == 1, (name, labels, found)
        return found[0]

    wall = one("rtgov_wall_time_seconds", subject=SOFTMAX)
    assert wall.labels["backend"] == "numpy"
    row = next(r for r in metrics_of(record) if r.gate == "softmax budget")
    assert wall.value == pytest.approx(row.value)
    assert one("rtgov_gate_threshold", gate="softmax budget").value == pytest.approx(1e-9)
    assert one("rtgov_gate_verdict", gate="softmax budget", verdict="breach").value == 1
    assert one("rtgov_gate_verdict", gate="softmax budget", verdict="pass").value == 0
    assert one("rtgov_gate_verdict", gate="accuracy", verdict="pass").value == 1
    assert one("rtgov_metric_value", metric="val_accuracy").value == pytest.approx(0.958)
    assert one("rtgov_gate_threshold", gate="accuracy").value == pytest.approx(0.95)
    assert one("rtgov_peak_memory_bytes", subject=SOFTMAX).value > 0
    digest = one("rtgov_digest_info", subject="fixture:dataset", metric="dataset_digest")
    assert digest.labels["digest"].startswith("sha256:") and digest.value == 1
    assert one("rtgov_run_exit_status").value == 6
    assert one("rtgov_run_gate_breaches").value == 2
    # every gated numeric metric has a threshold series unless no number applies
    gated = {(r.subject, r.metric, r.gate) for r in metrics_of(record) if r.threshold is not None}
    thresholds = {
        (s.labels["subject"], s.labels["metric"], s.labels["gate"])
        for s in samples["rtgov_gate_threshold"]
    }
    assert thresholds == gated


def _series(text: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, tuple(sorted(s.labels.items())))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_prometheus_series_do_not_grow_with_runs(record):
    """The run's id and commit label the info metric only: a second run exports the
    same series as the first, but for ``rtgov_run_info``."""
    first = _series(export(record, "prometheus").decode())
    later = dataclasses.replace(
        record,
        run_id="20261130T120000Z-abcdef",
        environment={**record.environment, "git.commit": "cd" * 20},
    )
    second = _series(export(later, "prometheus").decode())
    assert {s for s in first if s[0] != "rtgov_run_info"} == {
        s for s in second if s[0] != "rtgov_run_info"
    }
    labelled_by_run = {name for name, labels in first | second if "run_id" in dict(labels)}
    assert labelled_by_run == {"rtgov_run_info"}
    (info,) = [dict(labels) for name, labels in second if name == "rtgov_run_info"]
    assert info["run_id"] == later.run_id and info["commit"] == "cd" * 20
    assert info["verdict"] == "breached" and info["mode"] == "gate"


def test_otlp_json_parses_back_into_the_request(record):
    from google.protobuf import json_format
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    text = export(record, "otlp").decode()
    assert '"resourceMetrics"' in text and '"timeUnixNano"' in text  # lowerCamelCase
    request = json_format.Parse(text, ExportMetricsServiceRequest())
    (resource_metrics,) = request.resource_metrics
    resource = {a.key: a.value for a in resource_metrics.resource.attributes}
    assert resource["service.name"].string_value == "pytest-rtgov"
    assert resource["rtgov.run_id"].string_value == record.run_id
    assert resource["vcs.ref.head.revision"].string_value == "ab" * 20
    metrics = {m.name: m for m in resource_metrics.scope_metrics[0].metrics}
    assert metrics["rtgov.wall_time"].unit == "s"
    assert metrics["rtgov.peak_memory"].unit == "By"

    def attrs(point):
        out = {}
        for a in point.attributes:
            kind = a.value.WhichOneof("value")
            out[a.key] = getattr(a.value, kind)
        return out

    points = [(p, attrs(p)) for p in metrics["rtgov.wall_time"].gauge.data_points]
    point, labels = next((p, a) for p, a in points if a.get("gate") == "softmax budget")
    assert labels["subject"] == SOFTMAX and labels["verdict"] == "breach"
    assert labels["threshold"] == pytest.approx(1e-9) and labels["backend"] == "numpy"
    assert point.as_double > 0
    # 2026-11-22T17:17:05.844Z
    assert point.time_unix_nano == 1795367825844000000
    accuracy = [attrs(p) for p in metrics["rtgov.metric"].gauge.data_points]
    assert any(
        a["metric"] == "val_accuracy" and a["threshold"] == pytest.approx(0.95) for a in accuracy
    )
    digests = [attrs(p) for p in metrics["rtgov.digest"].gauge.data_points]
    assert any(a.get("gate") == "data" and a["verdict"] == "breach" for a in digests)
    (exit_point,) = metrics["rtgov.run.exit_status"].gauge.data_points
    assert exit_point.as_int == 6
    # every gated data point carries a verdict, and a threshold where a number applies
    for metric in metrics.values():
        for p in metric.gauge.data_points:
            a = attrs(p)
            if "gate" in a:
                assert a["verdict"]
                row = next(
                    r
                    for r in metrics_of(record)
                    if (r.subject, r.metric, r.gate) == (a["subject"], a["metric"], a["gate"])
                )
                assert ("threshold" in a) == (row.threshold is not None)


def test_junit_xml(record):
    root = ET.fromstring(export(record, "junit"))
    (suite,) = root.findall("testsuite")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["rtgov.run_id"] == record.run_id
    assert props["rtgov.verdict"] == "breached" and props["rtgov.backend"] == "numpy"
    cases = {(c.get("classname"), c.get("name")): c for c in suite.findall("testcase")}
    softmax = cases[("tests.workload.test_kernel_perf", "test_softmax")]
    row = next(r for r in metrics_of(record) if r.gate == "softmax budget")
    assert float(softmax.get("time")) == pytest.approx(row.value, abs=1e-6)
    failure = softmax.find("failure")
    assert "softmax budget" in failure.get("message") and "<= 1 ns" in failure.text
    case_props = {p.get("name"): p.get("value") for p in softmax.find("properties")}
    assert float(case_props["rtgov.wall_time[softmax budget].threshold"]) == 1e-9
    assert case_props["rtgov.wall_time[softmax budget].verdict"] == "breach"
    assert float(case_props["rtgov.wall_time"]) == pytest.approx(row.value)
    accuracy = cases[("tests.workload.test_validation", "test_val_accuracy")]
    assert accuracy.find("failure") is None
    acc_props = {p.get("name"): p.get("value") for p in accuracy.find("properties")}
    assert acc_props["rtgov.val_accuracy"] == "0.958"
    assert acc_props["rtgov.val_accuracy[accuracy].verdict"] == "pass"
    # a breached fixture gets its own case
    dataset = cases[("rtgov.session", "fixture:dataset")]
    assert "digest differs" in dataset.find("failure").text
    assert suite.get("failures") == "2" and suite.get("tests") == str(len(cases))


def test_markdown_lists_breaches_first(record):
    text = export(record, "markdown").decode()
    lines = text.splitlines()
    assert "BREACHED" in lines[0] and "exit status 6" in lines[0]
    table = [line for line in lines if line.startswith("| **")]
    assert len(table) == 2 and all("breach" in line for line in table)
    assert any(SOFTMAX in line and "1 ns" in line for line in table)
    assert "gate checks" in text
    assert len(lines) < 20


def test_unknown_format():
    with pytest.raises(ExportError, match="expected one of json, prometheus"):
        export(None, "yaml")  # type: ignore[arg-type]


# -- GitHub Actions ------------------------------------------------------------------


def test_github_escaping():
    assert escape_data("100%\r\nx: y, z") == "100%25%0D%0Ax: y, z"
    assert escape_property("a.py::t[1,2]") == "a.py%3A%3At[1%2C2]"


def test_github_actions_summary_and_annotations(record, tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    out = io.StringIO()
    github_actions(
        record,
        environ={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)},
        locations={SOFTMAX: ("tests/workload/test_kernel_perf.py", 57)},
        out=out,
    )
    written = summary.read_text()
    assert written.startswith("earlier step\n") and "BREACHED" in written
    assert out.getvalue().startswith("\n")  # pytest's progress line may not have ended
    lines = out.getvalue().splitlines()[1:]
    assert len(lines) == 2
    softmax = next(line for line in lines if "softmax budget" in line)
    assert softmax.startswith(
        "::error file=tests/workload/test_kernel_perf.py,line=57,title=rtgov gate breached::"
    )
    # the session fixture has no location: the file of the first test that requested it
    dataset = next(line for line in lines if "'data'" in line)
    assert dataset.startswith("::error file=tests/workload/test_validation.py,title=")
    assert "\n" not in softmax and "threshold 1 ns" in softmax


def test_github_actions_without_a_location_or_a_requester(record):
    lonely = dataclasses.replace(record, fixtures=())
    lines = annotations(lonely, {})
    dataset = next(line for line in lines if "'data'" in line)
    assert dataset.startswith("::error title=rtgov gate breached::")
    softmax = next(line for line in lines if "softmax budget" in line)
    assert softmax.startswith("::error file=tests/workload/test_kernel_perf.py,title=")


def test_unconfirmed_gates_are_warnings(record):
    result = {**_result(record, "accuracy"), "status": "unconfirmed"}
    lines = annotations(dataclasses.replace(record, gate_results=(result,)), {})
    assert len(lines) == 1 and lines[0].startswith("::warning ")


@pytest.mark.parametrize("environ", [{}, {"GITHUB_ACTIONS": "false", "GITHUB_STEP_SUMMARY": "x"}])
def test_nothing_off_github_actions(record, tmp_path, environ):
    environ = {
        k: str(tmp_path / v) if k == "GITHUB_STEP_SUMMARY" else v for k, v in environ.items()
    }
    out = io.StringIO()
    github_actions(record, environ=environ, locations={}, out=out)
    assert out.getvalue() == "" and not list(tmp_path.iterdir())


def test_unwritable_step_summary(record, tmp_path):
    environ = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(tmp_path / "no" / "such")}
    with pytest.raises(ExportError, match="GITHUB_STEP_SUMMARY"):
        github_actions(record, environ=environ, locations={}, out=io.StringIO())


# -- rtgov export --------------------------------------------------------------------


def _cli(state: Path, *argv: str) -> int:
    from pytest_rtgov.cli import main

    return main(["--dir", str(state), *argv])


def _write_covered(state: Path, record: RunRecord) -> None:
    """Write the record and log it in the ledger, as a session does: export uses only
    records a verdict leaf covers."""
    from pytest_rtgov.core.ledger_records import run_leaves
    from pytest_rtgov.store.keys import load_signing_key
    from pytest_rtgov.store.ledger import Ledger, append_session

    RunStore(state).write(record)
    signer = load_signing_key(key_file=None, state_dir=state).signer
    append_session(
        Ledger(state / "ledger"),
        run_leaves(record),
        signer=signer,
        origin="pytest-rtgov.local/t",
        created_at=record.ended_at,
    )


def test_cli_export_latest_to_stdout_and_a_file(record, tmp_path, capsysbinary):
    _write_covered(tmp_path, record)
    assert _cli(tmp_path, "export", "--format", "prometheus") == 0
    assert capsysbinary.readouterr().out == export(record, "prometheus")
    out = tmp_path / "out" / "junit.xml"
    assert _cli(tmp_path, "export", "--format", "junit", record.run_id[:10], "-o", str(out)) == 0
    assert out.read_bytes() == export(record, "junit")
    assert _cli(tmp_path, "export") == 0  # json by default
    assert json.loads(capsysbinary.readouterr().out)["run_id"] == record.run_id


def test_cli_export_errors(record, tmp_path, capsys):
    assert _cli(tmp_path, "export", "--format", "json") == 3
    assert "no run records" in capsys.readouterr().err
    RunStore(tmp_path).write(record)
    path = RunStore(tmp_path).path_for(record.run_id)
    path.write_text(json.dumps({**record.to_dict(), "tests": "nope"}))
    assert _cli(tmp_path, "export", "--format", "otlp") == 4
    assert "invalid file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _cli(tmp_path, "export", "--format", "yaml")


def test_otlp_refuses_a_bad_timestamp(record):
    with pytest.raises(ExportError, match="ended_at"):
        export(dataclasses.replace(record, ended_at="yesterday"), "otlp")


def test_every_format_is_deterministic(record):
    for fmt in FORMATS:
        assert export(record, fmt) == export(record, fmt)
    assert not math.isnan(sum(r.value or 0 for r in metrics_of(record)))
