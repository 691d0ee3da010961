"""`pip install .` into a fresh venv: no top-level kernels, no memray, and a tiny project
gated twice there (tests/install_check.py, also `make install-check`). Slow: it
installs the dependencies from PyPI (or the configured index)."""

from __future__ import annotations

import pytest

from tests.install_check import check


@pytest.mark.slow
def test_a_fresh_install_is_light_and_gates(tmp_path):
    result = check(tmp_path)
    names = {str(n).lower() for n in result["names"]}  # type: ignore[union-attr]
    assert "pytest-rtgov" in names
    assert not names & {"memray", "scipy", "prometheus-client", "opentelemetry-proto", "networkx"}
