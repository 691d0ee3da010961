"""The environment fingerprint: which machine-dependent baseline applies to a run."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from pytest_rtgov.core.canonical import canonical_json

__all__ = ["FINGERPRINT_KEYS", "describe_difference", "fingerprint", "fingerprint_fields"]

# Facts that change timings and memory. Versions of pytest or of this plugin do not.
FINGERPRINT_KEYS = (
    "cpu_model",
    "cpu_count",
    "machine",
    "python",
    "implementation",
    "numpy",
    "blas",
    "gpu",
    "backend",
    "env.OMP_NUM_THREADS",
    "env.OPENBLAS_NUM_THREADS",
    "env.MKL_NUM_THREADS",
    "env.OPENBLAS_CORETYPE",
)


def fingerprint_fields(environment: Mapping[str, str]) -> dict[str, str]:
    return {key: environment.get(key, "") for key in FINGERPRINT_KEYS}


def fingerprint(environment: Mapping[str, str]) -> str:
    """16 hex digits of sha256 over the canonical JSON of the fingerprint fields."""
    return hashlib.sha256(canonical_json(fingerprint_fields(environment))).hexdigest()[:16]


def describe_difference(a: Mapping[str, str], b: Mapping[str, str]) -> str:
    """``"cpu_model: 'X' vs 'Y'; numpy: ..."`` for the fields that differ."""
    fa, fb = fingerprint_fields(a), fingerprint_fields(b)
    diffs = [f"{k}: {fa[k]!r} vs {fb[k]!r}" for k in FINGERPRINT_KEYS if fa[k] != fb[k]]
    return "; ".join(diffs) or "no difference"
