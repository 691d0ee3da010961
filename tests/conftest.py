"""Shared helpers for pytest-rtgov's own tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# pytester's in-process runs drop modules they imported; numpy and scipy cannot be
# imported twice in one process, so load them here, before any inner run. Nor can
# cryptography's exceptions: re-imported, ``except InvalidSignature`` no longer catches
# what the Rust binding raises (a bad signature then escaped as a traceback).
import cryptography.exceptions  # noqa: F401
import numpy  # noqa: F401
import pytest
import scipy.stats  # noqa: F401
from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: F401


@pytest.fixture
def clean_signing_env(monkeypatch):
    """Inner sessions must not inherit CI=true or a signing key from the outer shell:
    tests that need them set them explicitly. Autouse in tests/plugin and tests/unit
    (not here: the workload's records must list only its own fixtures)."""
    for name in (
        "CI",
        "RTGOV_SIGNING_KEY",
        "GITHUB_ACTIONS",
        "RTGOV_TRUSTED_KEYS",
        "RTGOV_KEYRING_SHA256",
        # a pull-request CI job's target branch: A/B gates would compare with its merge base
        "GITHUB_BASE_REF",
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME",
        "CI_MERGE_REQUEST_DIFF_BASE_SHA",
    ):
        monkeypatch.delenv(name, raising=False)


def latest_record(root: Path, state_dir: str = ".rtgov") -> dict[str, Any]:
    base = root / state_dir
    run_id = (base / "latest").read_text().strip()
    return json.loads((base / "runs" / f"{run_id}.json").read_text())


@pytest.fixture
def read_latest():
    return latest_record
