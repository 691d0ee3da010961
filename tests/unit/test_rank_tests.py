"""The gates' rank tests (core/rank_tests.py) give scipy's p-values, branch for branch.

scipy is a dev dependency only: these tests compare against it where it is installed.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_rtgov.core.gate_rules import mann_whitney_worse_p, wilcoxon_worse_p
from pytest_rtgov.core.rank_tests import mann_whitney_greater_p, wilcoxon_greater_p

stats = pytest.importorskip("scipy.stats")

# Few distinct values make ties and zeros likely; continuous values make them rare.
tied = st.integers(-4, 4).map(float)
spread = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
values = st.one_of(
    st.lists(tied, min_size=1, max_size=30), st.lists(spread, min_size=1, max_size=30)
)


def close(ours: float, theirs: float) -> bool:
    return math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-14)


@settings(max_examples=200, deadline=None)
@given(x=values, y=values)
def test_mann_whitney_matches_scipy(x, y):
    if len(set(x) | set(y)) == 1:
        return  # scipy divides by zero; the gate answers 1.0 before asking
    theirs = float(stats.mannwhitneyu(x, y, alternative="greater").pvalue)
    assert close(mann_whitney_greater_p(x, y), theirs)


@settings(max_examples=200, deadline=None)
@given(
    d=st.one_of(
        st.lists(tied, min_size=1, max_size=60),
        st.lists(spread, min_size=1, max_size=60),
        st.lists(st.sampled_from([0.0, 0.5, -0.5, 1.25, -2.0]), min_size=1, max_size=15),
    )
)
def test_wilcoxon_matches_scipy(d):
    if all(v == 0 for v in d):
        return  # the gate answers 1.0 before asking
    theirs = float(stats.wilcoxon(d, alternative="greater", zero_method="zsplit").pvalue)
    assert close(wilcoxon_greater_p(d), theirs)


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([2, 3, 4, 5, 6], [1, 1.1, 1.2, 1.3, 1.4]),  # exact
        ([1.0] * 3 + [2.0] * 4, [1.0, 2.0, 3.0]),  # ties: normal approximation
        (list(range(9, 30)), list(range(0, 20))),  # both samples over 8
        ([5.0, 7.0], [float(i) for i in range(200)]),  # a short run against a long history
    ],
)
def test_the_gate_p_values_are_scipys(x, y):
    theirs = float(stats.mannwhitneyu(x, y, alternative="greater").pvalue)
    assert close(mann_whitney_worse_p(x, y), theirs)


@pytest.mark.parametrize("n", [5, 13, 14, 50, 51, 120])
def test_the_ab_p_values_are_scipys_across_the_branches(n):
    pairs = [(1.0 + 0.01 * ((i * 7) % 11 - 4), 1.0) for i in range(n)]  # ties and zeros
    logs = [math.log(c / b) for c, b in pairs]
    theirs = float(stats.wilcoxon(logs, alternative="greater", zero_method="zsplit").pvalue)
    assert close(wilcoxon_worse_p(pairs), theirs)


def test_gating_statistics_need_no_scipy():
    """The core install has no scipy: the gates' p-values come without it."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['scipy'] = None\n"
        "from pytest_rtgov.core.gate_rules import mann_whitney_worse_p, wilcoxon_worse_p\n"
        "print(mann_whitney_worse_p([4, 5, 6], [1, 2, 3]), wilcoxon_worse_p([(2, 1)] * 5))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0.05", "0.03125"]
