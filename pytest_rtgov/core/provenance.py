"""Where a run came from, and whether two runs may be compared at all.

A run's provenance is read off its record: the code (git commit, branch, dirty flag,
hash of the uncommitted diff), the machine and array stack (the environment and its
fingerprint), the result-changing environment variables, the seeds and dataset
digests its fixtures recorded, and how pytest was invoked.

Two runs are *comparable* when their fingerprint, backend, seeds and dataset digests
agree. Timings across fingerprints compare different machines; metrics across
datasets or seeds compare different experiments. :func:`comparability` lists exactly
what differs; an empty list means comparable.

>>> a = {"fingerprint": "f1", "backend": "numpy", "seeds": {"data_seed": 1.0},
...      "dataset_digests": {"dataset_digest": "sha256:aa"}, "environment": {}}
>>> b = dict(a, seeds={"data_seed": 2.0})
>>> comparability(a, b)
['seed data_seed: 1.0 vs 2.0']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytest_rtgov.core.fingerprint import FINGERPRINT_KEYS, fingerprint
from pytest_rtgov.core.records import FixtureSetup, RunRecord, TestEntry

__all__ = [
    "baseline_comparability_notes",
    "comparability",
    "inputs_of_baseline",
    "is_dataset_digest",
    "is_seed",
    "provenance",
]

SEED_UNIT = "seed"


def is_dataset_digest(name: str, value: object) -> bool:
    """The naming convention for dataset digests: a digest metric whose name mentions
    ``dataset`` (``rtgov.record_digest("dataset_digest", data)``)."""
    return isinstance(value, str) and value.startswith("sha256:") and "dataset" in name


def is_seed(name: str, unit: str = "") -> bool:
    """Seeds: metrics recorded with ``unit="seed"`` (or, where units are not kept, as
    in baseline files, named ``...seed``)."""
    return unit == SEED_UNIT or name.endswith("seed")


def provenance(record: RunRecord) -> dict[str, Any]:
    """Everything that says where ``record`` came from, as builtin types."""
    env = dict(record.environment)
    seeds: dict[str, float | str] = {}
    datasets: dict[str, str] = {}
    entries: list[TestEntry | FixtureSetup] = [*record.tests]
    entries.extend(s for f in record.fixtures for s in f.setups)
    for entry in entries:
        for metric in entry.metrics:
            if is_seed(metric.name, metric.unit) and not isinstance(metric.value, str):
                seeds.setdefault(metric.name, metric.value)
            elif is_dataset_digest(metric.name, metric.value):
                datasets.setdefault(metric.name, str(metric.value))
    return {
        "run_id": record.run_id,
        "started_at": record.started_at,
        "git": {
            "commit": env.get("git.commit", ""),
            "branch": env.get("git.branch", ""),
            "dirty": env.get("git.dirty", "") == "true",
            "diff_sha256": env.get("git.diff_sha256", ""),
        },
        "fingerprint": fingerprint(env),
        "backend": record.backend,
        "environment": {k: v for k, v in sorted(env.items()) if not k.startswith("git.")},
        "seeds": dict(sorted(seeds.items())),
        "dataset_digests": dict(sorted(datasets.items())),
        "pytest_args": list(record.pytest_args),
    }


def inputs_of_baseline(
    metrics: Mapping[str, Mapping[str, Any]],
) -> tuple[dict[str, float], dict[str, str]]:
    """Seeds and dataset digests among a baseline's recorded metrics (first values)."""
    seeds: dict[str, float] = {}
    datasets: dict[str, str] = {}
    for subject in sorted(metrics):
        for name, recorded in sorted(metrics[subject].items()):
            if not recorded:
                continue
            first = recorded[0]
            if isinstance(first, str):
                if is_dataset_digest(name, first):
                    datasets.setdefault(name, first)
            elif is_seed(name) and "@" not in name:
                seeds.setdefault(name, float(first))
    return seeds, datasets


def comparability(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """What differs between two provenances that makes their results incomparable."""
    reasons = []
    if a.get("fingerprint") != b.get("fingerprint"):
        env_a, env_b = a.get("environment", {}), b.get("environment", {})
        fields = [
            f"{key}: {env_a.get(key, '')!r} vs {env_b.get(key, '')!r}"
            for key in FINGERPRINT_KEYS
            if env_a.get(key, "") != env_b.get(key, "")
        ]
        detail = "; ".join(fields) if fields else "fields unknown"
        reasons.append(
            f"environment fingerprint {a.get('fingerprint')} vs {b.get('fingerprint')} ({detail})"
        )
    if a.get("backend") != b.get("backend"):
        reasons.append(f"backend {a.get('backend')} vs {b.get('backend')}")
    for kind, key in (("seed", "seeds"), ("dataset", "dataset_digests")):
        left, right = a.get(key) or {}, b.get(key) or {}
        for name in sorted(set(left) | set(right)):
            if left.get(name) != right.get(name):
                reasons.append(f"{kind} {name}: {left.get(name, '-')} vs {right.get(name, '-')}")
    return reasons


def baseline_comparability_notes(
    record: RunRecord, baseline_metrics: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """The gate's fairness check: the run's seeds and dataset digests against those the
    baseline recorded (the fingerprint already chose the baseline file)."""
    if not baseline_metrics:
        return []
    run = provenance(record)
    seeds, datasets = inputs_of_baseline(baseline_metrics)
    reasons = comparability(run, {**run, "seeds": seeds, "dataset_digests": datasets})
    return [f"NOT COMPARABLE with the baseline: {reason}" for reason in reasons]
