"""Shared helpers for pytest-rtgov's own tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy  # noqa: F401  (pytester's in-process runs must not re-import numpy)
import pytest


def latest_record(root: Path, state_dir: str = ".rtgov") -> dict[str, Any]:
    base = root / state_dir
    run_id = (base / "latest").read_text().strip()
    return json.loads((base / "runs" / f"{run_id}.json").read_text())


@pytest.fixture
def read_latest():
    return latest_record
