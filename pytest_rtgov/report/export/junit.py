"""The JUnit XML export: a testcase per test and gated fixture, breaches as failures. Pure."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.core.subjects import subject_id
from pytest_rtgov.core.verdict import GateResult, Verdict
from pytest_rtgov.report.export.common import ExportedMetric, describe_result, metrics_of
from pytest_rtgov.report.quarantine import QuarantineView, quarantine_view

__all__ = ["to_junit"]


def _junit_names(nodeid: str) -> tuple[str, str]:
    """pytest's own mangling: ``a/b.py::C::t[x]`` -> ``("a.b.C", "t[x]")``."""
    parts = nodeid.split("::")
    path = parts[0].replace("/", ".")
    parts[0] = path[: -len(".py")] if path.endswith(".py") else path
    if len(parts) == 1:
        return parts[0], parts[0]
    return ".".join(parts[:-1]), parts[-1]


def _outcome_element(case: ET.Element, outcome: str, counts: dict[str, int]) -> None:
    """A skipped or errored testcase's own element (failures are written by the caller)."""
    if outcome == "skipped":
        counts["skipped"] += 1
        ET.SubElement(case, "skipped", message="skipped")
    elif outcome == "error":
        counts["errors"] += 1
        ET.SubElement(case, "error", message="setup or teardown failed")


def _quarantine_properties(
    props: ET.Element, view: QuarantineView | None, subject: str
) -> None:
    """``rtgov.quarantine`` (the entry id) with ``.outcome``, ``.owner``, ``.issue``,
    ``.expires`` and ``.state`` for a quarantined test; ``rtgov.quarantine[<gate>]...``
    for each quarantined gate result of the subject."""
    if view is None:
        return
    rows = [(r, "rtgov.quarantine") for r in view.tests if r.subject == subject]
    rows += [(r, f"rtgov.quarantine[{r.gate}]") for r in view.gates if r.subject == subject]
    for row, name in rows:
        ET.SubElement(props, "property", name=name, value=row.entry)
        for key in ("outcome", "owner", "issue", "expires", "state"):
            ET.SubElement(props, "property", name=f"{name}.{key}", value=getattr(row, key))


def to_junit(record: RunRecord) -> bytes:
    """JUnit XML: a testcase per test (and per gated fixture), time = median wall time.

    Failed tests and gate breaches are ``<failure>`` elements (the breach's rule and
    values in the text); every metric's value, threshold and verdict are testcase
    properties named ``rtgov.<metric>``, ``rtgov.<metric>[<gate>].threshold`` and
    ``rtgov.<metric>[<gate>].verdict``.

    A quarantined failure whose entry is valid (docs/quarantine.md) is written as Maven
    Surefire writes a flaky one: a ``<flakyFailure message type>`` (``<flakyError>`` for
    a setup or teardown error) with the failure text in its ``<stackTrace>``, and no
    ``<failure>``, so the case does not count as failed; a failure whose entry is not
    valid stays a ``<failure>`` naming the entry. Either way the case's properties
    name the entry: ``rtgov.quarantine`` (its id), ``rtgov.quarantine.outcome``,
    ``.owner``, ``.issue``, ``.expires`` and ``.state`` (``rtgov.quarantine[<gate>]...``
    for a quarantined gate).
    """
    verdict = Verdict.of_record(record)
    view = quarantine_view(record)
    rows: dict[str, list[ExportedMetric]] = {}
    for row in metrics_of(record, verdict):
        rows.setdefault(row.subject, []).append(row)
    breaches: dict[str, list[GateResult]] = {}
    for result in verdict.results:  # quarantined breaches too: they show as flaky
        if result.breached:
            breaches.setdefault(result.subject, []).append(result)

    cases: list[tuple[str, str, str, str]] = []  # subject, classname, name, outcome
    for test in record.tests:
        cases.append((test.nodeid, *_junit_names(test.nodeid), test.outcome))
    fixtures = {subject_id(f): f for f in record.fixtures}
    for subject in sorted({r.subject for r in verdict.results} & set(fixtures)):
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
        ("rtgov.verdict", verdict.status),
        ("rtgov.exit_status", str(verdict.exit_status)),
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
        _quarantine_properties(props, view, subject)
        if not len(props):
            case.remove(props)
        counts["tests"] += 1
        own = view.for_test(subject) if view else None
        texts: list[str] = []
        flaky: list[tuple[str, str, str, str]] = []  # element, message, type, text
        for b in breaches.get(subject, ()):
            gated = view.for_gate(b.gate, b.subject, b.metric) if view else None
            text = describe_result(b) + (f"; {gated.describe()}" if gated else "")
            if gated is not None and gated.excused:
                flaky.append(("flakyFailure", "rtgov gate breached (quarantined)", "rtgov", text))
            else:
                texts.append(text)
        if own is not None and own.excused and outcome in ("failed", "error"):
            element = "flakyError" if outcome == "error" else "flakyFailure"
            flaky.append((element, f"test {outcome} (quarantined)", outcome, own.describe()))
            outcome = "passed"
        elif own is not None and outcome == "failed":
            texts.insert(0, own.describe())
        if outcome == "failed" or (texts and outcome not in ("skipped", "error")):
            counts["failures"] += 1
            message = "test failed" if outcome == "failed" else texts[0]
            if outcome != "failed" and len(texts) > 1:
                message = f"{len(texts)} rtgov gates breached"
            failure = ET.SubElement(
                case, "failure", message=message, type="failed" if outcome == "failed" else "rtgov"
            )
            failure.text = "\n".join(texts) or None
        # Surefire's order: failure, flakyFailure, skipped, error, flakyError (a flakyError
        # is an excused error: the case then has no skipped or error element)
        for element, message, kind, text in sorted(flaky, key=lambda f: f[0] == "flakyError"):
            flaky_element = ET.SubElement(case, element, message=message, type=kind)
            ET.SubElement(flaky_element, "stackTrace").text = text
        _outcome_element(case, outcome, counts)
    for key, count in counts.items():
        suite.set(key, str(count))
    suite.set("time", f"{total:.6f}")
    root = ET.Element("testsuites", name="pytest-rtgov")
    for key, value in suite.attrib.items():
        if key in counts or key == "time":
            root.set(key, value)
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
