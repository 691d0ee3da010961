"""The published JSON Schema of gates.toml: generated from the Structs, and it agrees
with the checks ``rtgov`` itself makes on the cases JSON Schema can express."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from pytest_rtgov.core.gates_config import GatesConfigError, parse_gates
from pytest_rtgov.core.gates_schema import json_schema_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "gates.schema.json"
REGENERATE = (
    "python -c 'from pytest_rtgov.core.gates_schema import json_schema_text; "
    "print(json_schema_text(), end=\"\")' > docs/gates.schema.json"
)


def test_the_committed_schema_is_the_generated_one():
    assert COMMITTED.read_text(encoding="utf-8") == json_schema_text(), (
        f"docs/gates.schema.json is stale: regenerate it with {REGENERATE}"
    )


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(COMMITTED.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _toml_blocks(markdown: str) -> list[str]:
    return re.findall(r"```toml\n(.*?)```", markdown, re.S)


def test_the_reference_gates_file_and_the_editor_example_validate(validator):
    """docs/gates.md's example with the ``#:schema`` line is a whole, valid file (the
    schema overview above it lists every key at once, which no gate may)."""
    files = [(ROOT / "gates.toml").read_text(encoding="utf-8")]
    blocks = _toml_blocks((ROOT / "docs" / "gates.md").read_text(encoding="utf-8"))
    files += [block for block in blocks if block.startswith("#:schema")]
    assert len(files) == 2
    for text in files:
        data = tomllib.loads(text)
        assert list(validator.iter_errors(data)) == []
        parse_gates(data, source="gates.toml")


def _gate(**keys):
    gate = {"name": "g", "metric": "wall_time", "tests": ["t.py::*"]}
    gate.update(keys)
    return {"gates": [gate]}


GOOD = [
    _gate(max="250 ms"),
    _gate(max=0.25, min=0),
    _gate(metric="peak_memory", max="512 MiB", max_regression="1 MiB"),
    _gate(metric="val_accuracy", min=0.9, max_regression=0.02),
    _gate(metric="weights", exact=True),
    _gate(ab=True, max_regression_pct=10),
    _gate(calibrated=True, max=3),
    _gate(tests="t.py::*", max=1),
    {"defaults": {"ab_ref": "accepted", "confirm": 0, "rounds": 7}},
]

BAD = [
    {"gate": []},
    {"defaults": {"confidence": 1.5}},
    {"defaults": {"min_samples": 1}},
    {"defaults": {"ab_ref": "-h"}},
    {"defaults": {"ab_ref": "main HEAD"}},
    {"defaults": {"rounds": 0}},
    _gate(maxx=3),
    _gate(name=""),
    _gate(metric="wall time", max=1),
    {"gates": [{"name": "g", "metric": "x", "max": 1}]},  # no selector
    _gate(),  # no rule
    _gate(tests=[1], max=1),
    _gate(max="fast"),
    _gate(max=True),
    _gate(max_regression_pct=-5),
    _gate(max_regression_pct="5%"),
    _gate(metric="d", exact=True, max=1),
    _gate(exact="yes"),
    _gate(metric="peak_memory", ab=True, max_regression_pct=5),
    _gate(ab=True, max=1),
    _gate(calibrated=True, max="1 s"),
    _gate(metric="peak_memory", calibrated=True, max=1),
    _gate(calibrated=True, ab=True, max_regression_pct=5),
]


@pytest.mark.parametrize("data", GOOD)
def test_what_rtgov_accepts_the_schema_accepts(validator, data):
    parse_gates(data, source="gates.toml")
    assert list(validator.iter_errors(data)) == []


@pytest.mark.parametrize("data", BAD)
def test_what_the_schema_refuses_rtgov_refuses(validator, data):
    assert list(validator.iter_errors(data)) != []
    with pytest.raises(GatesConfigError):
        parse_gates(data, source="gates.toml")


def test_the_schema_offers_the_builtin_metrics_and_documents_each_key():
    schema = json.loads(json_schema_text())
    gate = schema["$defs"]["GateTable"]["properties"]
    assert "wall_time" in gate["metric"]["examples"]
    defaults = schema["$defs"]["Defaults"]["properties"]
    for properties in (gate, defaults):
        for key, prop in properties.items():
            assert prop.get("title") or prop.get("description"), key
