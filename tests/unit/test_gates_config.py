"""gates.toml validation: each malformed case names the file, the key path and the expectation."""

from __future__ import annotations

import pytest

from pytest_rtgov.core.gates_config import GatesConfigError, parse_gates, parse_quantity

GOOD = {
    "defaults": {"confidence": 0.99, "min_samples": 5, "baseline": "fixtures/baseline"},
    "gates": [
        {"name": "acc", "metric": "val_accuracy", "tests": ["t.py::*"], "min": 0.9},
        {"name": "mem", "metric": "peak_memory", "fixtures": ["model"], "max": "512 MiB"},
        {"name": "time", "metric": "wall_time", "tests": ["t.py::*"], "max_regression_pct": 10},
        {"name": "digest", "metric": "weights", "fixtures": ["model"], "exact": True},
    ],
}


def test_good_config_parses_with_units():
    config = parse_gates(GOOD, source="gates.toml")
    assert [g.name for g in config.gates] == ["acc", "mem", "time", "digest"]
    assert config.gates[1].maximum == 512 * 1024 * 1024
    assert config.gates[2].machine_dependent and not config.gates[0].machine_dependent
    assert config.confidence == 0.99 and config.baseline == "fixtures/baseline"


@pytest.mark.parametrize(
    ("raw", "value", "expected"),
    [
        ("wall_time", "250 ms", 0.25),
        ("wall_time", "2 s", 2.0),
        ("peak_memory", "1 KiB", 1024.0),
        ("peak_memory", "1 GB", 1e9),
        ("val_loss", 0.5, 0.5),
    ],
)
def test_quantities(raw, value, expected):
    assert parse_quantity(value, metric=raw, source="g", place="p") == pytest.approx(expected)


def _with_gate(**gate):
    base = {"name": "g", "metric": "wall_time", "tests": ["t.py::*"]}
    base.update(gate)
    return {"gates": [base]}


@pytest.mark.parametrize(
    ("data", "place", "expected"),
    [
        ({"gate": []}, "gate", "unknown key 'gate'"),
        ({"defaults": {"repeat": 3}}, "defaults.repeat", "unknown key 'repeat'"),
        ({"defaults": {"confidence": 1.5}}, "defaults.confidence", "from 0.5 to below 1"),
        ({"defaults": {"min_samples": 1}}, "defaults.min_samples", "an integer from 2 to 10000"),
        ({"gates": {"name": "x"}}, "gates", "an array of tables"),
        (_with_gate(maxx=3), "gates[0].maxx", "unknown key 'maxx'"),
        (_with_gate(name=""), "gates[0].name", "a non-empty string"),
        (
            _with_gate(metric="wall time", max=1),
            "gates[0].metric",
            "a builtin metric or a metric name",
        ),
        ({"gates": [{"name": "g", "metric": "x", "max": 1}]}, "gates[0]", "at least one selector"),
        (_with_gate(tests="t.py::*"), "gates[0]", "a rule"),
        (_with_gate(tests=[1], max=1), "gates[0].tests", "a list of non-empty strings"),
        (_with_gate(max="fast"), "gates[0].max", 'a quantity like "250 ms"'),
        (_with_gate(max="3 MiB"), "gates[0].max", "a number of s"),
        (_with_gate(max=True), "gates[0].max", "a number"),
        (_with_gate(min=2, max=1), "gates[0].min", "min <= max"),
        (_with_gate(max_regression_pct=-5), "gates[0].max_regression_pct", "a number >= 0"),
        (_with_gate(max_regression_pct="5%"), "gates[0].max_regression_pct", "a percentage"),
        (_with_gate(exact=True), "gates[0].exact", "a digest metric"),
        (_with_gate(metric="d", exact=True, max=1), "gates[0].exact", "exact alone"),
        (_with_gate(exact="yes"), "gates[0].exact", "true or false"),
        (
            _with_gate(metric="peak_memory", ab=True, max_regression_pct=5),
            "gates[0].ab",
            "a timing metric",
        ),
        (_with_gate(ab=True, max=1), "gates[0].ab", "a regression rule"),
        (_with_gate(ab=1, max_regression_pct=5), "gates[0].ab", "true or false"),
        ({"defaults": {"ab_pairs": 2}}, "defaults.ab_pairs", "an integer from 5 to 1000"),
        ({"defaults": {"ab_ref": ""}}, "defaults.ab_ref", "a git ref"),
        ({"defaults": {"confirm": 9}}, "defaults.confirm", "an integer from 0 to 5"),
        ({"defaults": {"rounds": 0}}, "defaults.rounds", "an integer from 1 to 10000"),
        (_with_gate(calibrated=True, max="1 s"), "gates[0].max", "calibration units"),
        (
            _with_gate(metric="peak_memory", calibrated=True, max=1),
            "gates[0].calibrated",
            "wall_time or cpu_time",
        ),
        (
            _with_gate(calibrated=True, ab=True, max_regression_pct=5),
            "gates[0].calibrated",
            "ab or calibrated",
        ),
        (
            {"gates": [{"name": "a", "metric": "x", "tests": ["t"], "max": 1}] * 2},
            "gates[1].name",
            "a unique gate name",
        ),
    ],
)
def test_malformed_configs(data, place, expected):
    with pytest.raises(GatesConfigError) as info:
        parse_gates(data, source="gates.toml")
    assert info.value.source == "gates.toml"
    assert info.value.place == place
    assert expected in info.value.expected
    assert str(info.value).startswith(f"gates.toml: at {place}: expected")


HUGE = 10**400  # what TOML gives for a 400-digit integer


@pytest.mark.parametrize(
    ("data", "place", "expected"),
    [
        (_with_gate(max=HUGE), "gates[0].max", "a finite number"),
        (_with_gate(min=-HUGE), "gates[0].min", "a finite number"),
        (_with_gate(max=float("inf")), "gates[0].max", "a finite number"),  # max = 1e400
        (_with_gate(max="1e400 ms"), "gates[0].max", "a finite number"),
        (_with_gate(max_regression=HUGE), "gates[0].max_regression", "a finite number"),
        (_with_gate(max_regression_pct=HUGE), "gates[0].max_regression_pct", "a percentage"),
        (_with_gate(max_regression_pct=-HUGE), "gates[0].max_regression_pct", "a percentage"),
        ({"defaults": {"confidence": HUGE}}, "defaults.confidence", "from 0.5 to below 1"),
        ({"defaults": {"min_samples": HUGE}}, "defaults.min_samples", "an integer from 2 to"),
        ({"defaults": {"rounds": HUGE}}, "defaults.rounds", "an integer from 1 to 10000"),
    ],
)
def test_overflowing_numbers_are_config_errors(data, place, expected):
    """A 400-digit threshold overflowed float() (OverflowError) or became inf."""
    with pytest.raises(GatesConfigError) as info:
        parse_gates(data, source="gates.toml")
    assert info.value.place == place
    assert expected in info.value.expected


@pytest.mark.parametrize(
    "selectors",
    [
        {"tests": []},
        {"tests": [], "fixtures": []},
        {"tests": [], "fixtures": [], "markers": []},
        {"markers": []},
    ],
)
def test_a_gate_that_selects_nothing_is_an_error(selectors):
    gate = {"name": "empty one", "metric": "wall_time", "max": 1, **selectors}
    with pytest.raises(GatesConfigError) as info:
        parse_gates({"gates": [gate]}, source="gates.toml")
    assert info.value.place == "gates[0]"
    assert "gate 'empty one' must select at least one test, fixture or marker" in str(info.value)


def test_an_empty_selector_beside_a_real_one_is_fine():
    gate = {"name": "g", "metric": "wall_time", "max": 1, "tests": [], "markers": ["slow"]}
    assert parse_gates({"gates": [gate]}, source="gates.toml").gates[0].markers == ("slow",)


@pytest.mark.parametrize("ref", ["--output=/tmp/x", "-h", "main\nHEAD", "a b"])
def test_ab_ref_cannot_be_a_git_option_or_hold_whitespace(ref):
    """``ab_ref`` goes to git as an argument: a leading '-' would be read as an option."""
    with pytest.raises(GatesConfigError) as info:
        parse_gates({"defaults": {"ab_ref": ref}}, source="gates.toml")
    assert info.value.place == "defaults.ab_ref" and "a git ref" in info.value.expected


@pytest.mark.parametrize("ref", ["HEAD", "accepted", "origin/main", "HEAD~1", "v1.2^{commit}"])
def test_ab_ref_takes_revisions(ref):
    assert parse_gates({"defaults": {"ab_ref": ref}}, source="gates.toml").ab_ref == ref


def test_an_unknown_key_suggests_the_nearest_known_one():
    with pytest.raises(GatesConfigError) as info:
        parse_gates(_with_gate(mx=1, max=1), source="gates.toml")
    assert info.value.place == "gates[0].mx"
    assert "(unknown key 'mx'; did you mean 'max'?)" in info.value.expected
    with pytest.raises(GatesConfigError) as info:
        parse_gates({"defaults": {"zzz": 1}}, source="gates.toml")
    assert "(unknown key 'zzz')" in info.value.expected  # nothing near: no guess


@pytest.mark.parametrize(
    ("data", "place", "expected"),
    [
        (
            {"gates": [{"metric": "x", "tests": ["t"], "max": 1}]},
            "gates[0].name",
            "a non-empty string (got '<missing>')",
        ),
        ({"defaults": 3}, "defaults", "a table ([defaults]) (got 3)"),
        ({"gates": [3]}, "gates[0]", "a table ([[gates]]) (got 3)"),
        ({"defaults": {"min_samples": 2.0}}, "defaults.min_samples", "an integer from 2 to 10000"),
        ({"defaults": {"ab_ref": "main\n"}}, "defaults.ab_ref", "a git ref"),
        (_with_gate(max_regression=-1), "gates[0].max_regression", "a number >= 0 (got -1)"),
        (_with_gate(max_regression_pct=float("inf")), "gates[0].max_regression_pct", "finite"),
    ],
)
def test_shape_errors_name_the_place_and_what_was_there(data, place, expected):
    with pytest.raises(GatesConfigError) as info:
        parse_gates(data, source="gates.toml")
    assert info.value.place == place
    assert expected in info.value.expected


def test_a_toml_syntax_error_names_the_line_and_column(tmp_path):
    from pytest_rtgov.store.gates_file import load_gates

    path = tmp_path / "gates.toml"
    path.write_text('[[gates]]\nname = "x"\nname = "y"\n')
    with pytest.raises(GatesConfigError) as caught:
        load_gates(path)
    assert str(caught.value) == (
        f"{path}: at line 3, column 11: expected valid TOML (cannot overwrite a value)"
    )
    path.write_text("x = [\n")
    with pytest.raises(GatesConfigError, match="at end of document: expected valid TOML"):
        load_gates(path)
