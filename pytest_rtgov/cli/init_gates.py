"""The ``gates.toml`` that ``rtgov init`` writes: what a project has (the metrics its
tests record, the tests marked ``rtgov``), found in its test files or in a recorded run,
rendered as commented TOML that gates it."""

from __future__ import annotations

import ast
import json
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from pytest_rtgov.cli.project import GitState
from pytest_rtgov.core.format import format_quantity
from pytest_rtgov.core.records import RunRecord

__all__ = ["Findings", "MetricFound", "from_record", "render", "scan_tests"]

# pytest's default norecursedirs, and __pycache__; virtual environments (pyvenv.cfg) too
_SKIP_DIRS = {"_darcs", "build", "CVS", "dist", "node_modules", "venv", "{arch}", "__pycache__"}
_MAX_FILES = 5000
BUDGET_FACTOR = 3  # a budget from a recorded run: this times the slowest median


@dataclass
class MetricFound:
    """A metric tests record: its direction, and who records it (node-id globs, fixtures)."""

    name: str
    higher_is_better: bool | None = None
    digest: bool = False
    tests: set[str] = field(default_factory=set)
    fixtures: set[str] = field(default_factory=set)


@dataclass
class Findings:
    """What ``rtgov init`` found, and where (``source``, for the file's first line)."""

    source: str
    metrics: dict[str, MetricFound] = field(default_factory=dict)
    marked: set[str] = field(default_factory=set)  # "file::name" of tests marked rtgov
    slowest_cpu: float | None = None  # from a run: the slowest marked test's median CPU time

    def metric(self, name: str) -> MetricFound:
        return self.metrics.setdefault(name, MetricFound(name))


def _test_files(root: Path) -> list[Path]:
    """pytest's default test files (``test_*.py``, ``*_test.py``) and ``conftest.py``."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".")
            and d not in _SKIP_DIRS
            and not d.endswith(".egg")
            and not (Path(folder) / d / "pyvenv.cfg").exists()
        )
        for name in sorted(files):
            if name == "conftest.py" or (
                name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))
            ):
                found.append(Path(folder) / name)
                if len(found) >= _MAX_FILES:
                    return found
    return found


def _fixture_name(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
    for decorator in node.decorator_list:
        call = decorator if isinstance(decorator, ast.Call) else None
        text = ast.unparse(call.func if call else decorator)
        if text == "fixture" or text.endswith(".fixture"):  # pytest's, pytest_asyncio's
            for keyword in call.keywords if call else ():
                if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                    return str(keyword.value.value)
            return node.name
    return None


def _marked(decorators: list[ast.expr]) -> bool:
    return any(ast.unparse(d).split("(")[0].endswith("mark.rtgov") for d in decorators)


def _scan_file(path: Path, relative: str, findings: Findings) -> None:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return  # not ours to judge: pytest reports it
    test_file = path.name != "conftest.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and test_file and _marked(node.decorator_list):
            findings.marked.add(f"{relative}::{node.name}")
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        fixture = _fixture_name(node)
        is_test = fixture is None and test_file and node.name.startswith("test")
        if is_test and _marked(node.decorator_list):
            findings.marked.add(f"{relative}::{node.name}")
        for call in ast.walk(node):
            if not (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr in ("record", "record_digest")
                and isinstance(call.func.value, ast.Name)
                and call.func.value.id == "rtgov"
                and call.args
                and isinstance(call.args[0], ast.Constant)
                and isinstance(call.args[0].value, str)
            ):
                continue
            found = findings.metric(call.args[0].value)
            found.digest = call.func.attr == "record_digest"
            for keyword in call.keywords:
                if keyword.arg == "higher_is_better" and isinstance(keyword.value, ast.Constant):
                    found.higher_is_better = keyword.value.value is True
            if fixture is not None:
                found.fixtures.add(fixture)
            elif is_test:
                found.tests.add(f"{relative}::*")


def scan_tests(root: Path) -> Findings:
    """The ``rtgov.record`` calls and ``rtgov`` marks in the project's test files (read
    with :mod:`ast`; a metric named by a variable is not found)."""
    findings = Findings(source="the project's test files")
    for path in _test_files(root):
        _scan_file(path, path.relative_to(root).as_posix(), findings)
    return findings


def from_record(record: RunRecord, scanned: Findings) -> Findings:
    """What a recorded run measured: its metrics and directions, and the CPU time of its
    tests marked ``rtgov`` (as the run says in a gated session, else as ``scanned``, the
    test files, say: a recording session keeps no markers)."""
    from pytest_rtgov.core.subjects import subjects_of

    findings = Findings(source=f"run {record.run_id}", marked=set(scanned.marked))
    medians: list[float] = []
    for subject in subjects_of(record):
        for name, value, higher in subject.metrics:
            found = findings.metric(name)
            found.digest = isinstance(value, str)
            found.higher_is_better = higher if higher is not None else found.higher_is_better
            if subject.kind == "fixture":
                found.fixtures.add(subject.name)
            else:
                found.tests.add(f"{subject.name.split('::')[0]}::*")
        node = subject.name.split("[")[0]
        if subject.kind == "test" and (
            "rtgov" in subject.markers
            or any(node == m or node.startswith(f"{m}::") for m in scanned.marked)
        ):
            findings.marked.add(node)
            cpu = subject.measurement("cpu_time")
            if cpu:
                medians.append(statistics.median(cpu))
    findings.slowest_cpu = max(medians) if medians else None
    return findings


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a TOML basic string


def _list(items: set[str]) -> str:
    return "[" + ", ".join(_q(i) for i in sorted(items)) + "]"


def _metric_gate(found: MetricFound) -> list[str]:
    selectors = [f"tests = {_list(found.tests)}"] if found.tests else []
    selectors += [f"fixtures = {_list(found.fixtures)}"] if found.fixtures else []
    head = ["[[gates]]", f"name = {_q(found.name)}", f"metric = {_q(found.name)}", *selectors]
    if not selectors:
        return [
            "# Recorded outside a test or fixture (a helper): name the tests that call it.",
            *(f"# {line}" for line in head),
            '# tests = ["tests/test_model.py::*"]',
            f"# {_rule(found)}" if found.higher_is_better is not None else "# max = 1.0",
        ]
    if found.digest:
        return [
            "# A digest: `exact = true` demands the same bytes as the baseline. Digests of",
            "# trained weights often differ between machines (BLAS rounding): gate them only",
            "# where they are deterministic, e.g. a data set drawn from a seeded generator.",
            *(f"# {line}" for line in head),
            "# exact = true",
        ]
    if found.higher_is_better is None:
        return [
            "# No direction: record it with higher_is_better=True or False to gate its",
            "# regressions, or give it bounds (min, max).",
            *(f"# {line}" for line in head),
            "# max_regression_pct = 5",
        ]
    return [*head, _rule(found)]


def _rule(found: MetricFound) -> str:
    if found.higher_is_better:
        return "max_regression_pct = 2        # higher is better: at most 2% below the baseline"
    return "max_regression_pct = 10       # lower is better: at most 10% above the baseline"


def _timing_gate(findings: Findings, git: GitState) -> list[str]:
    if not findings.marked:
        return [
            "# No test is marked @pytest.mark.rtgov yet. Mark the kernels worth timing",
            "# (`@pytest.mark.rtgov(rounds=7, warmup=1)`: the body runs 8 times, each timed)",
            "# and gate them, e.g.:",
            "# [[gates]]",
            '# name = "kernel time"',
            '# metric = "cpu_time"',
            '# markers = ["rtgov"]',
            "# max_regression_pct = 100",
        ]
    lines = ["[[gates]]", 'name = "kernel time"']
    if git.has_commit:
        lines += [
            'metric = "wall_time"          # judged on CPU time where the code is single-threaded',
            'markers = ["rtgov"]           # the tests marked @pytest.mark.rtgov',
            "ab = true                     # A/B: older code runs interleaved with yours, in the",
            "max_regression_pct = 10       # same process: the code the last baseline update",
            "                              # accepted, in a pull request its merge base, else HEAD",
        ]
    else:
        lines += [
            'metric = "cpu_time"           # a loaded machine stretches wall time, not CPU time',
            'markers = ["rtgov"]           # the tests marked @pytest.mark.rtgov',
            "max_regression_pct = 100      # a coarse guard against the stored baseline: twice",
            "                              # its CPU time (sessions differ by tens of percent)",
        ]
    if findings.slowest_cpu is not None:
        budget = format_quantity("cpu_time", BUDGET_FACTOR * findings.slowest_cpu)
        note = f"{BUDGET_FACTOR}x the slowest median CPU time in {findings.source}"
        if git.has_commit:
            lines.append(f'# A budget too: metric = "cpu_time", max = "{budget}" ({note})')
        else:
            lines.append(f'max = "{budget}"  # a budget: {note}')
    if not git.has_commit:
        lines += [
            "# Finer timing gates (about 10%) are A/B: the committed code runs interleaved",
            "# with yours in the same process, so load slows both alike. They need a git",
            f"# repository with a commit ({git.describe} now); after the first commit use",
            '#   metric = "wall_time", ab = true, max_regression_pct = 10',
        ]
    return lines


def render(findings: Findings, git: GitState, baseline: str) -> str:
    """The commented ``gates.toml`` for ``findings`` (docs/usage.md, ``rtgov init``)."""
    lines = [
        "# gates.toml: what `pytest --rtgov-gate` judges; written by `rtgov init` from",
        f"# {findings.source}. Each gate names a metric, what it selects (tests: node-id",
        "# globs; fixtures: fixture names; markers) and its rules. Every key: docs/gates.md",
        "# of pytest-rtgov. Edit freely; the next gated run reads it.",
        "",
        "[defaults]",
        f"baseline = {_q(baseline)}{' ' * max(1, 19 - len(_q(baseline)))}# commit it: the reviewed "
        "values the rules compare with",
        "confidence = 0.99             # statistical rules: one-sided tests at 1% (Bonferroni)",
        "",
        "# --- metrics your tests record (rtgov.record) -------------------------------------",
    ]
    gated = [m for _, m in sorted(findings.metrics.items())]
    for found in gated:
        lines += ["", *_metric_gate(found)]
    if not gated:
        lines += [
            "# None found. Record them from tests and fixtures, e.g.",
            '#   rtgov.record("val_accuracy", accuracy, higher_is_better=True)',
            "# and gate them:",
            "# [[gates]]",
            '# name = "accuracy"',
            '# metric = "val_accuracy"',
            '# tests = ["tests/test_model.py::*"]',
            "# min = 0.90",
            "# max_regression = 0.02        # at most 2 points below the baseline",
        ]
    lines += ["", "# --- time of the tests marked rtgov " + "-" * 46, ""]
    lines += _timing_gate(findings, git)
    lines += [
        "",
        "# Memory, e.g. a budget on a fixture that trains (tracemalloc, measured precisely",
        "# where such a gate asks):",
        "# [[gates]]",
        '# name = "training memory"',
        '# metric = "peak_memory"',
        '# fixtures = ["trained_model"]',
        '# max = "512 MiB"',
        "",
    ]
    return "\n".join(lines)
