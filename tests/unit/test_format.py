"""One set of formatters: durations, sizes, integers, digests, metric values, node ids."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_rtgov.core.format import (
    common_prefix,
    format_bytes,
    format_digest,
    format_ns,
    format_number,
    format_quantity,
    format_value,
    shorten_ids,
)


@pytest.mark.parametrize("seed", [20261122, 20261122.0, 2**52, -7, 0])
def test_integers_and_integral_floats_print_exactly(seed):
    assert format_number(seed) == str(int(seed))
    assert format_value("seed", seed) == str(int(seed))


def test_fractions_keep_six_significant_digits():
    assert format_number(0.123456789) == "0.123457"
    assert format_value("val_accuracy", 0.93) == "0.93"


@pytest.mark.parametrize(
    ("metric", "value", "shown"),
    [
        ("wall_time", 0.25, "250 ms"),
        ("wall_time", 1.5e-3, "1.5 ms"),
        ("cpu_time", 2.0, "2 s"),
        ("gpu_time", 3e-9, "3 ns"),
        ("peak_memory", 3 * 2**20, "3 MiB"),
        ("gpu_memory", 100, "100 B"),
        ("wall_time@calibrated", 1.23456, "1.23x"),
        ("loss", None, "-"),
    ],
)
def test_metric_values_in_units(metric, value, shown):
    assert format_value(metric, value) == shown


def test_quantities_for_gate_rules():
    assert format_quantity("wall_time", 0.1) == "100 ms"
    assert format_quantity("peak_memory", 512 * 2**20) == "512 MiB"
    assert format_quantity("seed", 20261122) == "20261122"
    assert format_quantity("wall_time", 0) == "0"


def test_table_columns():
    assert format_ns(1_500_000) == "1.50 ms"
    assert format_ns(None) == format_bytes(None) == "-"
    assert format_bytes(3 * 2**20) == "3.0 MiB"


def test_digests_keep_the_algorithm_and_a_prefix():
    digest = "sha256:" + "0123456789abcdef" * 4
    assert format_digest(digest) == "sha256:0123456789ab…"
    assert format_value("output_digest", digest) == "sha256:0123456789ab…"
    assert format_digest("a plain note: kept") == "a plain note: kept"


@pytest.mark.parametrize(
    ("ids", "prefix"),
    [
        (
            [
                "tests/workload/test_validation.py::test_accuracy",
                "tests/workload/test_validation.py::test_loss[2]",
            ],
            "tests/workload/test_validation.py::",
        ),
        (["tests/a.py::t", "tests/b.py::t"], "tests/"),
        (["tests/test_v.py::t", "tests/test_v2.py::t"], "tests/"),
        (["t.py::test[a/b]", "t.py::test[a/c]"], "t.py::"),
        (["t.py::C::test_a", "t.py::C::test_b"], "t.py::C::"),
        (["tests/only.py::one"], "tests/only.py::"),
        (["t.py::test[a::b]"], ""),
        ([], ""),
        (["a.py::t", "b.py::t"], ""),
    ],
)
def test_common_prefix_ends_at_a_module_or_directory(ids, prefix):
    assert common_prefix(ids) == prefix


node = st.text(alphabet="ab/:._[]1", min_size=1, max_size=30)


@given(st.lists(node, min_size=1, max_size=6))
def test_shortening_only_drops_a_shared_prefix(ids):
    prefix, short = shorten_ids(ids)
    for original, shown in zip(ids, short, strict=True):
        assert shown == (original[len(prefix) :] if "::" in original else original)
        assert "::" not in original or original == prefix + shown
    assert all(short)  # nothing shortened to nothing


def test_names_that_are_not_node_ids_are_kept_whole():
    ids = ["tests/w/m.py::test_a", "pytestconfig [main]", "tests/w/m.py::model [gw0]"]
    assert shorten_ids(ids) == ("tests/w/m.py::", ["test_a", "pytestconfig [main]", "model [gw0]"])


def test_gate_reasons_print_integers_exactly():
    from pytest_rtgov.core.gate_rules import budget_reasons

    assert budget_reasons(None, 20261121, 20261122.0) == ["20261122 > max 20261121"]
    assert budget_reasons(0.9, None, 0.85) == ["0.85 < min 0.9"]


@pytest.mark.parametrize(
    ("args", "kwargs", "shown"),
    [
        # an accuracy drop judged by a gate (relative: positive is worse)
        (("val_accuracy", 0.97, 0.942), {"worse_relative": 0.0289}, "-2.9% (worse)"),
        (("val_accuracy", 0.97, 0.99), {"worse_relative": -0.0206}, "+2.1% (better)"),
        (("val_accuracy", 0.97, 0.942), {"direction": True}, "-2.9% (worse)"),
        # built-in metrics: lower is better, from the catalogue
        (("wall_time", 0.1, 0.112), {}, "+12.0% (worse)"),
        (("peak_memory", 2.0**20, 2.0**19), {}, "-50.0% (better)"),
        (("cpu_time@calibrated", 2.0, 3.0), {}, "+50.0% (worse)"),
        # an A/B gate: the percentage is the gate's (median paired ratio), not the medians'
        (("wall_time", 1.0, 1.2), {"worse_relative": 0.25}, "+25.0% (worse)"),
        # no direction known: signed as the value moved, no word
        (("loss", 1.0, 0.5), {}, "-50.0%"),
        (("loss", 1.0, 1.0), {"direction": False}, "0.0% (unchanged)"),
        (
            ("val_accuracy", 0.9, 0.85),
            {"absolute": True, "direction": True},
            "-0.05, -5.6% (worse)",
        ),
        (("wall_time", "sha256:ab", 1.0), {}, ""),
    ],
)
def test_changes_are_signed_as_the_value_moved_and_say_better_or_worse(args, kwargs, shown):
    from pytest_rtgov.core.format import format_change

    assert format_change(*args, **kwargs) == shown
