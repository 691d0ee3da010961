"""``[[replay]]`` rules in gates.toml: parsed with the gates (core/gates_config.py,
core/replay_rules.py), bad rules refused naming the file and the place, the published
JSON Schema agreeing, and a rule that selects nothing an error at replay time."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from pytest_rtgov.core.array_checkpoints import ArrayCheckpoint
from pytest_rtgov.core.gates_config import GatesConfigError, parse_gates
from pytest_rtgov.core.gates_schema import json_schema_text
from pytest_rtgov.core.replay import CheckpointRef
from pytest_rtgov.core.replay_rules import (
    ReplayRule,
    bitwise_mismatch,
    check_rules_used,
    mismatch_mask,
    rule_for,
    unused_rules,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _parse(text: str):
    return parse_gates(tomllib.loads(text), source="ci/gates.toml")


def test_rules_parse_in_file_order_with_defaults():
    config = _parse(
        """
[[replay]]
name = "logits"
checkpoint = "logits"
tests = "tests/test_val.py::*"
max_ulp = 2

[[replay]]
checkpoint = "output:*"
fixtures = ["finetune"]
rtol = 1e-6
"""
    )
    first, second = config.replay_rules
    assert (first.label, first.tests, first.max_ulp, first.rtol) == (
        "logits", ("tests/test_val.py::*",), 2, None
    )
    assert (second.label, second.fixtures, second.rtol, second.atol) == (
        "replay[1]", ("finetune",), 1e-6, 0.0
    )
    assert second.tolerance() == "rtol 1e-06, atol 0"
    assert f"rule {first} and rule {second}" == "rule logits and rule replay[1]"
    assert json.loads(json.dumps(first.to_dict()))["max_ulp"] == 2
    assert config.gates == ()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            'checkpoint = "x"\nmax_ulp = -1',
            "ci/gates.toml: at replay[1].max_ulp: expected an integer >= 0 (got -1)",
        ),
        (
            'checkpoint = "x"\natol = -0.5',
            "ci/gates.toml: at replay[1].atol: expected a number >= 0 (got -0.5)",
        ),
        (
            'checkpoint = "x"\nrtol = nan',
            "ci/gates.toml: at replay[1].rtol: expected a number >= 0",
        ),
        (
            'checkpoint = "x"\nrtol = inf',
            "ci/gates.toml: at replay[1].rtol: expected a finite number >= 0 (got inf)",
        ),
        (
            'checkpoint = "x"\nmax_ulp = 2\nrtol = 1e-6',
            "ci/gates.toml: at replay[1].rtol: expected max_ulp or rtol/atol, not both",
        ),
        (
            'checkpoint = "x"\nmax_ulp = 2\natol = 0.0',
            "ci/gates.toml: at replay[1].atol: expected max_ulp or rtol/atol, not both",
        ),
        ('checkpoint = "x"', "ci/gates.toml: at replay[1]: expected a tolerance"),
        (
            'checkpoint = "x"\nmax_ulps = 2',
            "ci/gates.toml: at replay[1].max_ulps: expected one of the keys atol, checkpoint, "
            "fixtures, markers, max_ulp, name, rtol, tests (unknown key 'max_ulps'; did you "
            "mean 'max_ulp'?)",
        ),
        (
            "max_ulp = 2",
            "ci/gates.toml: at replay[1].checkpoint: expected a checkpoint name or glob "
            "(got '<missing>')",
        ),
        (
            'checkpoint = "x"\nmax_ulp = 1.5',
            "ci/gates.toml: at replay[1].max_ulp: expected an integer >= 0",
        ),
        (
            'checkpoint = "x"\nmax_ulp = 1\ntests = []\nfixtures = []',
            "ci/gates.toml: at replay[1]: expected a selector that names something",
        ),
        (
            'name = "a"\ncheckpoint = "x"\nmax_ulp = 1',
            "ci/gates.toml: at replay[1].name: expected a unique rule name ('a' repeats)",
        ),
    ],
)
def test_bad_rules_name_the_file_and_the_place(table, message):
    text = f'[[replay]]\nname = "a"\ncheckpoint = "y"\nmax_ulp = 0\n\n[[replay]]\n{table}\n'
    with pytest.raises(GatesConfigError) as caught:
        _parse(text)
    assert str(caught.value).startswith(message), str(caught.value)


jsonschema = pytest.importorskip("jsonschema")


def test_the_json_schema_agrees_on_replay_tables():
    validator = jsonschema.Draft202012Validator(json.loads(json_schema_text()))
    good = [{"checkpoint": "x", "max_ulp": 0}, {"checkpoint": "x", "rtol": 1, "atol": 0}]
    bad = [
        {"checkpoint": "x"},
        {"checkpoint": "x", "max_ulp": 1, "atol": 0},
        {"checkpoint": "x", "max_ulp": -1},
        {"checkpoint": "", "max_ulp": 1},
        {"checkpoint": "x", "rtol": 1, "tol": 0},
    ]
    for table in good:
        assert list(validator.iter_errors({"replay": [table]})) == []
        parse_gates({"replay": [table]}, source="gates.toml")
    for table in bad:
        assert list(validator.iter_errors({"replay": [table]})) != [], table
        with pytest.raises(GatesConfigError):
            parse_gates({"replay": [table]}, source="gates.toml")
    properties = json.loads(json_schema_text())["$defs"]["ReplayTable"]["properties"]
    assert all(p.get("title") for p in properties.values())


def _ref(owner_kind, owner, name, *, fixture="", markers=()):
    checkpoint = ArrayCheckpoint(name=name, seq=0, kind="array", sha256="sha256:" + "0" * 64)
    return CheckpointRef(owner_kind, owner, checkpoint, "main", 0, markers, fixture)


REFS = [
    _ref("test", "tests/test_val.py::test_loss", "logits", markers=("slow",)),
    _ref("fixture", "tests/test_val.py::model", "output:w", fixture="model"),
]


def test_selection_is_the_gates_selection_and_the_first_rule_applies():
    by_test = ReplayRule(checkpoint="logits", tests=("tests/test_val.py::*",), max_ulp=1)
    by_marker = ReplayRule(checkpoint="log*", markers=("slow",), max_ulp=2)
    by_fixture = ReplayRule(checkpoint="output:*", fixtures=("mod*",), max_ulp=3)
    # a tests selector does not select a fixture's checkpoints, as for a gate
    wrong_kind = ReplayRule(checkpoint="output:*", tests=("tests/*",), max_ulp=4)
    anywhere = ReplayRule(checkpoint="*", max_ulp=5)
    rules = [wrong_kind, by_test, by_marker, by_fixture, anywhere]
    assert rule_for(rules, REFS[0]) is by_test
    assert rule_for(rules[2:], REFS[0]) is by_marker
    assert rule_for(rules, REFS[1]) is by_fixture
    assert rule_for([wrong_kind, anywhere], REFS[1]) is anywhere
    assert unused_rules(rules, REFS) == [wrong_kind]


def test_a_rule_that_selects_nothing_is_an_error_naming_it():
    rules = _parse(
        '[[replay]]\ncheckpoint = "logits"\nmax_ulp = 1\n\n'
        '[[replay]]\ncheckpoint = "logitz"\nmax_ulp = 1\n'
    ).replay_rules
    with pytest.raises(GatesConfigError) as caught:
        check_rules_used(rules, REFS, source="ci/gates.toml", error=GatesConfigError)
    assert str(caught.value) == (
        "ci/gates.toml: at replay[1]: expected a rule that selects a recorded checkpoint "
        "(checkpoint 'logitz' selects none of the run's 2 checkpoints: logits, output:w)"
    )
    check_rules_used(rules[:1], REFS, source="ci/gates.toml", error=GatesConfigError)


def test_mismatch_masks():
    a = np.array([1.0, np.nan, 0.0, 1e-3], dtype=np.float32)
    b = np.array([np.nextafter(np.float32(1), np.float32(2)), np.nan, -0.0, 2e-3], np.float32)
    assert mismatch_mask(a, b, None)[0].tolist() == [True, False, True, True]
    ulp = ReplayRule(checkpoint="x", max_ulp=1)
    assert mismatch_mask(a, b, ulp)[0].tolist() == [False, False, False, True]
    close = ReplayRule(checkpoint="x", rtol=0.0, atol=1e-3)
    assert mismatch_mask(a, b, close)[0].tolist() == [False, False, False, False]
    words = np.array(["a", "b"]), np.array(["a", "c"])
    mask, why = mismatch_mask(*words, ulp)
    assert mask.tolist() == [False, True] and why == "max_ulp does not apply to dtype <U1"
    flags = np.array([True, False]), np.array([False, False])
    assert mismatch_mask(*flags, ulp)[0].tolist() == [False, False]
    assert mismatch_mask(*flags, ReplayRule(checkpoint="x", max_ulp=0))[0].tolist() == [
        True, False
    ]


def test_the_docs_example_parses():
    text = (Path(__file__).resolve().parents[2] / "docs" / "gates.md").read_text()
    section = text.split("## Replay tolerances: `[[replay]]`", 1)[1]
    block = section.split("```toml\n", 1)[1].split("```", 1)[0]
    rules = _parse(block).replay_rules
    assert [r.label for r in rules] == ["logits", "replay[1]"]


def test_bitwise_mismatch_for_wide_and_foreign_dtypes():
    wide = np.array([1 + 2j, 3 + 4j, np.nan]), np.array([1 + 2j, 3 - 4j, np.nan])
    assert bitwise_mismatch(*wide).tolist() == [False, True, False]
    strided = np.arange(12.0).reshape(3, 4).astype(np.complex128)[:, ::2]
    assert bitwise_mismatch(strided, strided.copy()).tolist() == [[False, False]] * 3
    big = np.array([1.0, 2.0], dtype=">f8")
    flipped = (big * np.array([1.0, -1.0])).astype(">f8")
    assert bitwise_mismatch(big, flipped).tolist() == [False, True]
