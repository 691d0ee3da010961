"""The end-of-session tables at 80 columns: node ids readable, numbers exact."""

from __future__ import annotations

import pytest

# Tests like those of the issue (at 80 columns they read as four rows of
# "tests/workload/test_validati…"); five, so that all are in the top five.
SUITE = """
import pytest

@pytest.fixture(scope="module")
def trained_model():
    return 1

def test_val_accuracy(rtgov, trained_model):
    rtgov.record("seed", 20261122)
    rtgov.record("val_accuracy", 0.93125, higher_is_better=True)

def test_predictions_are_deterministic(trained_model):
    pass

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_checkpoint_round_trip(rtgov, dtype):
    rtgov.record_digest("weights", dtype.encode())

def test_a_name_much_longer_than_any_column_of_an_eighty_column_table_leaves():
    pass
"""

NAMES = [
    "test_val_accuracy",
    "test_predictions_are_deterministic",
    "test_checkpoint_round_trip[float32]",
    "test_checkpoint_round_trip[float64]",
]
LONG = "test_a_name_much_longer_than_any_column_of_an_eighty_column_table_leaves"


@pytest.fixture
def suite(pytester, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    workload = pytester.mkpydir("tests") / "workload"
    workload.mkdir()
    (workload / "__init__.py").write_text("")
    (workload / "test_validation.py").write_text(SUITE)
    return pytester


def _tables(out: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if "pytest-rtgov" in line)
    return [line for line in lines[start:] if not line.startswith("rtgov:")]


def test_every_node_id_is_readable_at_80_columns(suite):
    result = suite.runpytest_subprocess("--rtgov", "-p", "no:cacheprovider", "-p", "no:randomly")
    assert result.ret == 0, result.stdout.str()
    out = result.stdout.str()
    tables = _tables(out)
    assert max(len(line) for line in tables) <= 80, out
    # the module they share is named once, as the heading
    assert "slowest tests (medians) in tests/workload/test_validation.py::" in out
    for name in NAMES:  # each test's own part whole, on one line
        assert any(name in line for line in tables), f"{name} not whole in:\n{out}"
    # a name wider than the column folds onto the next lines: nothing is cut off
    assert all("sha256:" in line for line in tables if "…" in line)  # only digests are cut
    folded = "".join(
        cell.strip()
        for line in tables
        if "│" in line
        for cell in line.split("│")[1:2]
        if cell.strip() and not cell.strip().startswith(tuple(NAMES))
    )
    assert LONG in folded, out


def test_integers_print_exactly(suite):
    result = suite.runpytest_subprocess("--rtgov", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    out = result.stdout.str()
    assert "20261122" in out
    assert "2.02611e+07" not in out
    assert "0.93125" in out
